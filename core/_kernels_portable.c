/* The portable variant: plain C for any CPU (core/_kernels_body.h), built with the package's
   baseline flags (no -march): slower than the SIMD variants, the same sums up to their order. */
#include "_kernels.h"
#define DS_TABLE KERNELS_PORTABLE
#define DS_NAME "portable"
#include "_kernels_body.h"
