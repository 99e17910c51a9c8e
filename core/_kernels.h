/* What the C kernels' translation units share: the weight kinds, the layout constants, the shapes
a decode step passes, and the table of entry points that each CPU variant fills.

One build holds every variant: core/_kernels_portable.c (plain C, any CPU), core/_kernels_avx2.c
(AVX2/FMA/F16C) and core/_kernels_avx512.c (AVX512 with BF16 dot products and VNNI) compile the
same loops (core/_kernels_body.h) for their instruction sets, and core/_kernels.c picks one at
run time from what the CPU reports (``set_variant`` overrides it). See core/_kernels_body.h for
the arithmetic and the weights' layout. */
#ifndef DS_KERNELS_H
#define DS_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROWS 8
#define BLOCK 32
/* int4 weights: one scale per BLOCK weights of a row (llama.cpp's Q4_0 groups) */
enum { KIND_F16 = 0, KIND_BF16 = 1, KIND_I8 = 2, KIND_I4 = 3, KIND_COUNT = 4 };

/* The KV cache's elements: fp32, or 16-bit (core/_kernels_body.h rounds writes to nearest even), or
   int8 rows: a position's ``dim`` int8 values of a head, then their fp32 scale (max |x| / 127). */
enum { KV_F32 = 0, KV_BF16 = 1, KV_F16 = 2, KV_I8 = 3 };

/* Bytes of one head's row (one position) in a cache of kind kv_kind. */
static inline ptrdiff_t kv_row_bytes(int kv_kind, ptrdiff_t dim) {
    return kv_kind == KV_I8 ? dim + 4 : kv_kind == KV_F32 ? 4 * dim : 2 * dim;
}

/* Bytes of weights for ``elements`` weights of a kind (int4: two a byte). */
static inline ptrdiff_t weight_bytes(int kind, ptrdiff_t elements) {
    return kind == KIND_I4 ? elements / 2 : kind == KIND_I8 ? elements : 2 * elements;
}

/* Bytes of scales for an (out, in) matrix: int8 one fp32 a row, int4 one fp16 a row's block of
   BLOCK (stored in the weights' order: group, block, row of the group), 16-bit kinds none. */
static inline ptrdiff_t scale_bytes(int kind, ptrdiff_t out, ptrdiff_t in) {
    return kind == KIND_I8 ? 4 * out : kind == KIND_I4 ? 2 * out * (in / BLOCK) : 0;
}

/* One layer's weights for the fused step, as raw pointers (norms fp32, products of one kind). A
   bias (fp32, the width of what it is added to) is NULL where the family has none. */
typedef struct {
    const float *input_norm, *post_norm;
    const char *qkv, *o, *gate_up, *down;
    const void *qkv_scales, *o_scales, *gate_up_scales, *down_scales;
    const float *input_norm_bias, *post_norm_bias, *qkv_bias, *o_bias, *gate_up_bias, *down_bias;
} LayerPointers;

/* The ops a family's layer names (core/backends/families.py): the norm, the MLP's activation and
   whether it is gated, how many of a head's dims RoPE turns, the sliding window. */
enum { NORM_RMS = 0, NORM_LAYER = 1 };
enum { ACT_SILU = 0, ACT_GELU_TANH = 1, ACT_GELU = 2 };

typedef struct {
    int kind, threads;
    ptrdiff_t hidden, heads, kv_heads, dim, mlp, capacity, start;
    float eps, scale;
    int norm, activation, gated;
    ptrdiff_t rotary_dims, window; /* window 0: every cached key */
    int kv_kind;                   /* the KV cache's elements (KV_F32, KV_BF16, KV_F16, KV_I8) */
} StepShape;

/* Each returns 0, or -1 when a working buffer could not be allocated. */
typedef struct {
    const char *name;
    int (*matmul)(int kind, const char *w, const void *scales, const float *x, float *y, ptrdiff_t out,
                  ptrdiff_t in, ptrdiff_t n, int threads);
    int (*attend)(const float *q, const void *k, const void *v, int kv_kind, float *out, ptrdiff_t count,
                  ptrdiff_t heads, ptrdiff_t kv_heads, ptrdiff_t dim, ptrdiff_t capacity, ptrdiff_t start, float scale,
                  int threads);
    int (*decode_layers)(const StepShape *s, const LayerPointers *layers, ptrdiff_t count, float *x,
                         const float *rope, void *k_cache, void *v_cache);
} KernelTable;

/* The x86-64 SIMD variants need a compiler that compiles functions for a chosen instruction set
   (GCC or Clang); elsewhere, or with -DDS_PORTABLE_ONLY, the build holds the portable loops only. */
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && !defined(DS_PORTABLE_ONLY)
#define DS_X86_VARIANTS 1
#endif

extern const KernelTable KERNELS_PORTABLE;
#ifdef DS_X86_VARIANTS
extern const KernelTable KERNELS_AVX2, KERNELS_AVX512;
#endif

#endif
