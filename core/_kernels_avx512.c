/* The AVX512 variant (AVX512 F/BW/VL/DQ with BF16 dot products and VNNI: AMD Zen 4, Intel Cooper
   Lake, Sapphire Rapids and later): the AVX2 loops plus bf16 weights against bf16-rounded
   activations (vdpbf16ps) and int8 and int4 rows with vpdpbusd. core/_kernels.c runs it only where the CPU
   reports every one of those instruction sets. */
#include "_kernels.h"
#ifdef DS_X86_VARIANTS
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx512vnni"))), apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx512vnni")
#endif
#include <immintrin.h>
#define DS_AVX2 1
#define DS_AVX512 1
#define DS_TABLE KERNELS_AVX512
#define DS_NAME "avx512bf16"
#include "_kernels_body.h"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
