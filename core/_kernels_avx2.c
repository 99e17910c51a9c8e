/* The AVX2 variant (AVX2, FMA, F16C: x86-64 CPUs since 2013), compiled for those instructions
   whatever the build's -march; core/_kernels.c runs it only where the CPU reports them. */
#include "_kernels.h"
#ifdef DS_X86_VARIANTS
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c")
#endif
#include <immintrin.h>
#define DS_AVX2 1
#define DS_TABLE KERNELS_AVX2
#define DS_NAME "avx2"
#include "_kernels_body.h"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
