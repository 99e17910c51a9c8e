/* The loops of a decode step, compiled once per CPU variant (core/_kernels_portable.c, _avx2.c,
_avx512.c include this file after choosing their instruction set; DS_AVX2 / DS_AVX512 say which
vector code to compile, DS_TABLE names the variant's table of entry points).

Matrix products from compact weights (fp16, bf16, int8 or int4 rows, fp32 activations):

    y[t, r] = sum_j w[r, j] * x[t, j]    for t < n (at most MAX_ROWS), r < out

with w[r, j] = q[r, j] * scale[r] for int8 and q[r, j] * scale[r, j / BLOCK] for int4. A decode
step multiplies a few rows of activations by every weight matrix, so its time is the time to
stream the weights from memory: 16 bits halve those bytes, int8 quarters them, int4 (4.5 bits with
its fp16 block scales) an eighth and a bit. Layout: rows in groups of four. fp16 and
bf16 rows lie whole, one after another: the plain (out, in) matrix, so PyTorch's GEMMs (prefill)
read the very bytes a decode step reads and no second copy is kept; a group's four rows are four
streams, each prefetched ahead. int8 and int4 rows are interleaved in blocks of BLOCK columns
(block b of row 4g + k starts at weight 4g * in + (4b + k) * BLOCK), so each thread reads one
sequential stream (``block_of`` says where a block lies in either layout).
An int4 block is 16 bytes: byte i holds weight i (low nibble) and weight i + 16 (high nibble),
each stored as q + 8 for q in [-8, 7], as in llama.cpp's Q4_0. core/compact_weights.py lays the
weights out so; out must be a multiple of 4 and in of BLOCK.

How each variant sums:
- portable: plain C, weights widened to fp32 one at a time (any CPU; slower, same results up to
  the order of sums).
- avx2: weights widened to fp32 in registers (F16C for fp16, a shift for bf16), FMA in fp32.
- avx512: as avx2, except that bf16 weights meet activations rounded to bf16 once per product
  (AVX512-BF16 dot products, as llama.cpp does on such CPUs: results differ from the widening
  variants within bf16 rounding of the activations, about 2^-9 relative), and one int8 or int4
  row uses VNNI byte dot products.
- every variant: one int8 or int4 row (a decode step) also rounds x to int8 in blocks of 32, as
  llama.cpp's Q8_0 does, to multiply bytes by bytes; int4 bytes (q + 8, unsigned) meet them
  without unpacking to signed values, the 8 * sum(x) they add taken off once a block (the sums
  are integers, so this is exact).
Output rows are shared among threads with OpenMP where the compiler has it. */

#ifndef PREFETCH_BYTES
/* A core keeps only so many cache misses in flight; asking for lines this far ahead lets a
   compact stream keep up with fp32's (the hardware prefetcher alone fell behind for int8). */
#define PREFETCH_BYTES 1024
#endif

static inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
    uint32_t bits;
    if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;
    } else { /* subnormal: normalize */
        exponent = 113;
        while (!(mantissa & 0x400)) {
            mantissa <<= 1;
            exponent--;
        }
        bits = sign | (exponent << 23) | ((mantissa & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Weight e (< BLOCK) of a row's block at ``block`` as fp32, before any scale. */
static inline float weight_at(const char *block, int kind, ptrdiff_t e) {
    if (kind == KIND_F16) return f16_to_f32(((const uint16_t *)block)[e]);
    if (kind == KIND_BF16) return bf16_to_f32(((const uint16_t *)block)[e]);
    if (kind == KIND_I8) return (float)((const int8_t *)block)[e];
    const uint8_t byte = ((const uint8_t *)block)[e % (BLOCK / 2)];
    return (float)((e < BLOCK / 2 ? byte & 0x0f : byte >> 4) - 8);
}

/* Where block b of row k of the group at g starts: 16-bit rows whole (row-major), quantized rows
   interleaved by blocks. ``kind`` is a constant wherever this inlines, so the branch folds away. */
static inline const char *block_of(const char *g, int kind, ptrdiff_t in, ptrdiff_t b, int k) {
    if (kind == KIND_F16 || kind == KIND_BF16) return g + weight_bytes(kind, k * in + b * BLOCK);
    return g + (4 * b + k) * weight_bytes(kind, BLOCK);
}

/* x (in) rounded to int8 in blocks of BLOCK, each with its scale dx[b] (Q8_0's rounding), and
   where ``offsets`` is not NULL, minus twice each block's sum of the rounded values (int4's
   correction: an int4 byte holds q + 8, so a block's byte dot product is 8 * sum(x) too large,
   and the int4 loops start each of a row's four 32-bit lanes at -2 * sum(x) to take it off
   exactly). A decode step rounds every product's input, one thread while the others wait, so
   the SIMD variants round a block in registers (the plain loop took 5.6 us for 2048 values,
   lrintf and fmaxf calls each): the same arithmetic (|x| max, d = max / 127, x * (1 / d)
   rounded to nearest even), the same bytes. */
static void quantize_blocks(const float *x, ptrdiff_t in, int8_t *xq, float *dx, int32_t *offsets) {
    for (ptrdiff_t b = 0; b < in / BLOCK; b++) {
        const float *xb = x + b * BLOCK;
        int8_t *qb = xq + b * BLOCK;
#if defined(DS_AVX512)
        const __m512 low = _mm512_loadu_ps(xb), high = _mm512_loadu_ps(xb + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(low), _mm512_abs_ps(high)));
        const float d = amax / 127.0f, inverse = d > 0.0f ? 1.0f / d : 0.0f;
        const __m512 by = _mm512_set1_ps(inverse);
        const __m512i q_low = _mm512_cvtps_epi32(_mm512_mul_ps(low, by));
        const __m512i q_high = _mm512_cvtps_epi32(_mm512_mul_ps(high, by));
        _mm_storeu_si128((__m128i *)qb, _mm512_cvtepi32_epi8(q_low)); /* |q| <= 127: no truncation */
        _mm_storeu_si128((__m128i *)(qb + 16), _mm512_cvtepi32_epi8(q_high));
        dx[b] = d;
        if (offsets != NULL) offsets[b] = -2 * _mm512_reduce_add_epi32(_mm512_add_epi32(q_low, q_high));
#elif defined(DS_AVX2)
        const __m256 sign = _mm256_set1_ps(-0.0f);
        __m256 v[4], peak = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(xb + 8 * i);
            peak = _mm256_max_ps(peak, _mm256_andnot_ps(sign, v[i]));
        }
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(peak), _mm256_extractf128_ps(peak, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        const float amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
        const float d = amax / 127.0f, inverse = d > 0.0f ? 1.0f / d : 0.0f;
        const __m256 by = _mm256_set1_ps(inverse);
        __m256i q[4];
        for (int i = 0; i < 4; i++) q[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], by));
        /* packs work within 128-bit lanes: dwords come out as q0[0:4] q1[0:4] q2[0:4] q3[0:4]
           q0[4:8] ..., put back in order */
        const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        _mm256_storeu_si256((__m256i *)qb, _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
        dx[b] = d;
        if (offsets != NULL) {
            const __m256i sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
            __m128i s = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
            s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
            s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
            offsets[b] = -2 * _mm_cvtsi128_si32(s);
        }
#else
        float amax = 0.0f;
        for (int i = 0; i < BLOCK; i++) amax = fmaxf(amax, fabsf(xb[i]));
        const float d = amax / 127.0f, inverse = d > 0.0f ? 1.0f / d : 0.0f;
        dx[b] = d;
        int32_t total = 0;
        for (int i = 0; i < BLOCK; i++) {
            qb[i] = (int8_t)lrintf(xb[i] * inverse);
            total += qb[i];
        }
        if (offsets != NULL) offsets[b] = -2 * total;
#endif
    }
}

/* A row's scale for the block b (int4), its row scale (int8), or 1. */
static inline float row_scale(int kind, const void *scales, ptrdiff_t g, ptrdiff_t blocks, ptrdiff_t b, int k) {
    if (kind == KIND_I8) return ((const float *)scales)[4 * g + k];
    if (kind == KIND_I4) return f16_to_f32(((const uint16_t *)scales)[(g * blocks + b) * 4 + k]);
    return 1.0f;
}

#ifndef DS_AVX2
/* Quantized group of four rows against one quantized activation row, in plain C. */
static void group_dot_quantized_portable(int kind, const char *g, const void *scales, ptrdiff_t gi, const int8_t *xq,
                                         const float *dx, ptrdiff_t in, float *totals) {
    const ptrdiff_t blocks = in / BLOCK;
    for (int k = 0; k < 4; k++) totals[k] = 0.0f;
    for (ptrdiff_t b = 0; b < blocks; b++) {
        for (int k = 0; k < 4; k++) {
            const char *wb = block_of(g, kind, in, b, k);
            int32_t sum = 0;
            for (int e = 0; e < BLOCK; e++) sum += (int32_t)weight_at(wb, kind, e) * xq[b * BLOCK + e];
            const float d = kind == KIND_I4 ? row_scale(kind, scales, gi, blocks, b, k) : 1.0f;
            totals[k] += (float)sum * dx[b] * d;
        }
    }
    if (kind == KIND_I8)
        for (int k = 0; k < 4; k++) totals[k] *= row_scale(kind, scales, gi, blocks, 0, k);
}
#endif

#ifdef DS_AVX2
/* Eight weights from ``p`` widened to fp32 (16-bit and int8 kinds). */
static inline __m256 load8(const char *p, int kind) {
    if (kind == KIND_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    if (kind == KIND_BF16)
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

static inline float sum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The 32 int4 weights of a block (16 bytes) as signed bytes in [-8, 7], in order. */
static inline __m256i unpack_i4(const char *p) {
    const __m128i packed = _mm_loadu_si128((const __m128i *)p);
    const __m256i both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
    return _mm256_sub_epi8(_mm256_and_si256(both, _mm256_set1_epi8(0x0f)), _mm256_set1_epi8(8));
}

/* A group of four 16-bit rows against one activation row. */
static inline __attribute__((always_inline)) void group_dot16(const char *g, int kind, const float *x, ptrdiff_t in,
                                                              float *totals) {
    const ptrdiff_t block_bytes = BLOCK * 2, row_bytes = 2 * in;
    __m256 acc[8];
    for (int a = 0; a < 8; a++) acc[a] = _mm256_setzero_ps();
    for (ptrdiff_t b = 0; b < in / BLOCK; b++) {
        const char *wb = g + b * block_bytes; /* row k's block: wb + k * row_bytes */
        for (int k = 0; k < 4; k++) _mm_prefetch(wb + k * row_bytes + PREFETCH_BYTES, _MM_HINT_T0);
        for (int v = 0; v < BLOCK / 8; v++) {
            const __m256 xv = _mm256_loadu_ps(x + b * BLOCK + v * 8);
            for (int k = 0; k < 4; k++) {  /* two accumulators a row: alternate vectors */
                const int a = 2 * k + (v & 1);
                acc[a] = _mm256_fmadd_ps(load8(wb + k * row_bytes + v * 16, kind), xv, acc[a]);
            }
        }
    }
    for (int k = 0; k < 4; k++) totals[k] = sum8(_mm256_add_ps(acc[2 * k], acc[2 * k + 1]));
}

/* 32 signed-byte weights against 32 int8 activations: eight lanes of partial sums, as fp32. */
static inline __m256 block_dot_bytes(__m256i wv, __m256i xq) {
    /* maddubs multiplies unsigned by signed bytes: move w's sign onto x (|w| <= 127: no overflow) */
    const __m256i pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(wv), _mm256_sign_epi8(xq, wv));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

/* A group of four int8 rows against one activation row quantized by quantize_blocks. */
static inline void group_dot_q8(const int8_t *g, const int8_t *xq, const float *dx, ptrdiff_t in, float *totals) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    for (ptrdiff_t b = 0; b < in / BLOCK; b++) {
        const __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + b * BLOCK));
        const __m256 d = _mm256_set1_ps(dx[b]);
        const int8_t *wb = g + 4 * b * BLOCK;
        _mm_prefetch((const char *)wb + PREFETCH_BYTES, _MM_HINT_T0);
        _mm_prefetch((const char *)wb + PREFETCH_BYTES + 64, _MM_HINT_T0);
        a0 = _mm256_fmadd_ps(block_dot_bytes(_mm256_loadu_si256((const __m256i *)wb), xv), d, a0);
        a1 = _mm256_fmadd_ps(block_dot_bytes(_mm256_loadu_si256((const __m256i *)(wb + BLOCK)), xv), d, a1);
        a2 = _mm256_fmadd_ps(block_dot_bytes(_mm256_loadu_si256((const __m256i *)(wb + 2 * BLOCK)), xv), d, a2);
        a3 = _mm256_fmadd_ps(block_dot_bytes(_mm256_loadu_si256((const __m256i *)(wb + 3 * BLOCK)), xv), d, a3);
    }
    totals[0] = sum8(a0), totals[1] = sum8(a1), totals[2] = sum8(a2), totals[3] = sum8(a3);
}

/* A group of four int4 rows (fp16 block scales ``d``, 4 a block) against a quantized activation
   row: the block b of the four rows is 64 bytes, two registers of two rows each. Their low
   nibbles (weights 0-15 + 8 of each row) meet x's first 16 values, their high nibbles x's last
   16, as unsigned-by-signed byte products (maddubs: at most 2 * 15 * 127 a pair, no overflow);
   ``offsets`` (quantize_blocks) removes the + 8. Four 32-bit lanes a row, scaled once a block. */
static inline void group_dot_q4(const char *g, const uint16_t *d, const int8_t *xq, const float *dx,
                                const int32_t *offsets, ptrdiff_t in, float *totals) {
    const __m256i low = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    const __m256i lanes01 = _mm256_set_epi32(1, 1, 1, 1, 0, 0, 0, 0), lanes23 = _mm256_set_epi32(3, 3, 3, 3, 2, 2, 2, 2);
    __m256 a01 = _mm256_setzero_ps(), a23 = _mm256_setzero_ps();
    for (ptrdiff_t b = 0; b < in / BLOCK; b++) {
        const char *wb = g + 4 * b * (BLOCK / 2);
        _mm_prefetch(wb + PREFETCH_BYTES, _MM_HINT_T0);
        const __m256i x_low = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(xq + b * BLOCK)));
        const __m256i x_high = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(xq + b * BLOCK + 16)));
        const __m256i w01 = _mm256_loadu_si256((const __m256i *)wb), w23 = _mm256_loadu_si256((const __m256i *)(wb + 32));
        const __m256i offset = _mm256_set1_epi32(offsets[b]);
        const __m256i p01 = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_and_si256(w01, low), x_low),
                                             _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(w01, 4), low), x_high));
        const __m256i p23 = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_and_si256(w23, low), x_low),
                                             _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(w23, 4), low), x_high));
        /* the four rows' scales times the activations' scale, each spread over its row's lanes */
        const __m256 s = _mm256_castps128_ps256(
            _mm_mul_ps(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(d + 4 * b))), _mm_set1_ps(dx[b])));
        a01 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_madd_epi16(p01, ones), offset)),
                              _mm256_permutevar8x32_ps(s, lanes01), a01);
        a23 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_madd_epi16(p23, ones), offset)),
                              _mm256_permutevar8x32_ps(s, lanes23), a23);
    }
    float lanes[16];
    _mm256_storeu_ps(lanes, a01), _mm256_storeu_ps(lanes + 8, a23);
    for (int k = 0; k < 4; k++) totals[k] = (lanes[4 * k] + lanes[4 * k + 1]) + (lanes[4 * k + 2] + lanes[4 * k + 3]);
}
#endif

#ifdef DS_AVX512
/* x (n rows of in) rounded to bf16 (nearest even), BLOCK values a vector. */
static void round_to_bf16(const float *x, ptrdiff_t count, __m512bh *out) {
    for (ptrdiff_t b = 0; b < count / BLOCK; b++)
        out[b] = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + b * BLOCK + 16), _mm512_loadu_ps(x + b * BLOCK));
}

static inline __m512bh load_bf16(const char *p) {
    return (__m512bh)_mm512_loadu_si512((const void *)p);
}

/* A group of four bf16 rows against one activation row already in bf16: 32 products a row a block. */
static inline void group_dot_bf16(const char *g, const __m512bh *xb, ptrdiff_t blocks, float *totals) {
    const ptrdiff_t row_bytes = blocks * (BLOCK * 2);
    __m512 acc[8];
    for (int a = 0; a < 8; a++) acc[a] = _mm512_setzero_ps();
    ptrdiff_t b = 0;
    for (; b + 2 <= blocks; b += 2) { /* two blocks a pass: two accumulators a row */
        const char *wb = g + b * (BLOCK * 2); /* row k's blocks: wb + k * row_bytes */
        for (int k = 0; k < 4; k++) {
            _mm_prefetch(wb + k * row_bytes + PREFETCH_BYTES, _MM_HINT_T0);
            _mm_prefetch(wb + k * row_bytes + PREFETCH_BYTES + 64, _MM_HINT_T0);
        }
        for (int k = 0; k < 4; k++) {
            acc[k] = _mm512_dpbf16_ps(acc[k], load_bf16(wb + k * row_bytes), xb[b]);
            acc[4 + k] = _mm512_dpbf16_ps(acc[4 + k], load_bf16(wb + k * row_bytes + 64), xb[b + 1]);
        }
    }
    for (; b < blocks; b++) {
        const char *wb = g + b * (BLOCK * 2);
        for (int k = 0; k < 4; k++) acc[k] = _mm512_dpbf16_ps(acc[k], load_bf16(wb + k * row_bytes), xb[b]);
    }
    for (int k = 0; k < 4; k++) totals[k] = _mm512_reduce_add_ps(_mm512_add_ps(acc[k], acc[4 + k]));
}

/* Row k of a bf16 group against n activation rows in bf16 (``blocks`` vectors a row). */
static inline void row_dot_many_bf16(const char *g, int k, const __m512bh *xb, ptrdiff_t blocks, ptrdiff_t n,
                                     float *totals) {
    __m512 acc[MAX_ROWS];
    for (ptrdiff_t t = 0; t < n; t++) acc[t] = _mm512_setzero_ps();
    for (ptrdiff_t b = 0; b < blocks; b++) {
        const __m512bh wv = load_bf16(block_of(g, KIND_BF16, blocks * BLOCK, b, k));
        for (ptrdiff_t t = 0; t < n; t++) acc[t] = _mm512_dpbf16_ps(acc[t], wv, xb[t * blocks + b]);
    }
    for (ptrdiff_t t = 0; t < n; t++) totals[t] = _mm512_reduce_add_ps(acc[t]);
}

/* A group of four int8 rows against one quantized activation row, with VNNI: the block b of the
   four rows is 128 bytes, two registers of two rows each, against x's block in both halves. */
static inline void group_dot_q8_vnni(const int8_t *g, const int8_t *xq, const float *dx, ptrdiff_t in,
                                     float *totals) {
    __m512 a01 = _mm512_setzero_ps(), a23 = _mm512_setzero_ps();
    const __m512i zero = _mm512_setzero_si512();
    for (ptrdiff_t b = 0; b < in / BLOCK; b++) {
        const __m512i xv = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(xq + b * BLOCK)));
        const int8_t *wb = g + 4 * b * BLOCK;
        _mm_prefetch((const char *)wb + PREFETCH_BYTES, _MM_HINT_T0);
        _mm_prefetch((const char *)wb + PREFETCH_BYTES + 64, _MM_HINT_T0);
        const __m512i w01 = _mm512_loadu_si512((const void *)wb), w23 = _mm512_loadu_si512((const void *)(wb + 64));
        /* dpbusd multiplies unsigned by signed bytes: |w| against x with w's sign */
        const __m512i x01 = _mm512_mask_sub_epi8(xv, _mm512_movepi8_mask(w01), zero, xv);
        const __m512i x23 = _mm512_mask_sub_epi8(xv, _mm512_movepi8_mask(w23), zero, xv);
        const __m512 d = _mm512_set1_ps(dx[b]);
        a01 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, _mm512_abs_epi8(w01), x01)), d, a01);
        a23 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, _mm512_abs_epi8(w23), x23)), d, a23);
    }
    totals[0] = sum8(_mm512_castps512_ps256(a01)), totals[1] = sum8(_mm512_extractf32x8_ps(a01, 1));
    totals[2] = sum8(_mm512_castps512_ps256(a23)), totals[3] = sum8(_mm512_extractf32x8_ps(a23, 1));
}

/* A group of four int4 rows against one quantized activation row, with VNNI: the block b of the
   four rows is 64 bytes, one register (16 bytes a row). Its low nibbles (each row's weights 0-15,
   stored + 8) meet x's first 16 values broadcast to every row's lane, its high nibbles x's last
   16, in unsigned-by-signed byte dot products (dpbusd), starting from ``offsets`` (quantize_blocks)
   to take the + 8 off; four 32-bit lanes a row, scaled once a block. Four blocks a pass. */
static inline void group_dot_q4_vnni(const char *g, const uint16_t *d, const int8_t *xq, const float *dx,
                                     const int32_t *offsets, ptrdiff_t in, float *totals) {
    const __m512i low = _mm512_set1_epi8(0x0f);
    __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    const ptrdiff_t blocks = in / BLOCK;
    ptrdiff_t b = 0;
#define DS_Q4_BLOCK(j, scale)                                                                                         \
    do {                                                                                                              \
        const char *wb = g + 4 * (b + (j)) * (BLOCK / 2);                                                             \
        _mm_prefetch(wb + PREFETCH_BYTES, _MM_HINT_T0);                                                               \
        const __m512i w = _mm512_loadu_si512((const void *)wb);                                                       \
        const int8_t *xb = xq + (b + (j)) * BLOCK;                                                                    \
        __m512i sum = _mm512_dpbusd_epi32(_mm512_set1_epi32(offsets[b + (j)]), _mm512_and_si512(w, low),              \
                                          _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)xb)));              \
        sum = _mm512_dpbusd_epi32(sum, _mm512_and_si512(_mm512_srli_epi16(w, 4), low),                                \
                                  _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(xb + 16))));               \
        acc[(j) & 1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), (scale), acc[(j) & 1]);                               \
    } while (0)
    /* four blocks' 16 scales (weights' times activations') at once, each spread over its row's lanes */
    const __m512i spread[4] = {
        _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0),
        _mm512_set_epi32(7, 7, 7, 7, 6, 6, 6, 6, 5, 5, 5, 5, 4, 4, 4, 4),
        _mm512_set_epi32(11, 11, 11, 11, 10, 10, 10, 10, 9, 9, 9, 9, 8, 8, 8, 8),
        _mm512_set_epi32(15, 15, 15, 15, 14, 14, 14, 14, 13, 13, 13, 13, 12, 12, 12, 12)};
    const __m512i dx_index = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    for (; b + 4 <= blocks; b += 4) {
        const __m512 dx4 = _mm512_permutexvar_ps(dx_index, _mm512_castps128_ps512(_mm_loadu_ps(dx + b)));
        const __m512 s = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(d + 4 * b))), dx4);
        DS_Q4_BLOCK(0, _mm512_permutexvar_ps(spread[0], s));
        DS_Q4_BLOCK(1, _mm512_permutexvar_ps(spread[1], s));
        DS_Q4_BLOCK(2, _mm512_permutexvar_ps(spread[2], s));
        DS_Q4_BLOCK(3, _mm512_permutexvar_ps(spread[3], s));
    }
    for (; b < blocks; b++) {
        const __m128 s = _mm_mul_ps(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(d + 4 * b))), _mm_set1_ps(dx[b]));
        DS_Q4_BLOCK(0, _mm512_permutexvar_ps(spread[0], _mm512_castps128_ps512(s)));
    }
#undef DS_Q4_BLOCK
    float all[16];
    _mm512_storeu_ps(all, _mm512_add_ps(acc[0], acc[1]));
    for (int k = 0; k < 4; k++) totals[k] = (all[4 * k] + all[4 * k + 1]) + (all[4 * k + 2] + all[4 * k + 3]);
}
#endif

/* Row k of a group against n fp32 activation rows, weights widened to fp32 (draft checks, and
   every pass of the portable variant). */
static inline __attribute__((always_inline)) void row_dot_many(const char *g, int kind, const void *scales,
                                                               ptrdiff_t gi, int k, const float *x, ptrdiff_t in,
                                                               ptrdiff_t n, float *totals) {
    const ptrdiff_t blocks = in / BLOCK;
    ptrdiff_t b = 0;
    for (ptrdiff_t t = 0; t < n; t++) totals[t] = 0.0f;
#ifdef DS_AVX2
    __m256 acc[MAX_ROWS];
    for (ptrdiff_t t = 0; t < n; t++) acc[t] = _mm256_setzero_ps();
    for (; b < blocks; b++) {
        const char *wb = block_of(g, kind, in, b, k);
        if (kind == KIND_I4) {
            const __m256i bytes = unpack_i4(wb);
            const __m256 d = _mm256_set1_ps(row_scale(kind, scales, gi, blocks, b, k));
            for (int v = 0; v < BLOCK / 8; v++) {
                const __m128i eight = v & 2 ? _mm256_extracti128_si256(bytes, 1) : _mm256_castsi256_si128(bytes);
                const __m256 wv = _mm256_mul_ps(
                    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v & 1 ? _mm_srli_si128(eight, 8) : eight)), d);
                for (ptrdiff_t t = 0; t < n; t++)
                    acc[t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + t * in + b * BLOCK + v * 8), acc[t]);
            }
            continue;
        }
        for (int v = 0; v < BLOCK / 8; v++) {
            const __m256 wv = load8(wb + weight_bytes(kind, v * 8), kind);
            for (ptrdiff_t t = 0; t < n; t++)
                acc[t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + t * in + b * BLOCK + v * 8), acc[t]);
        }
    }
    for (ptrdiff_t t = 0; t < n; t++) totals[t] = sum8(acc[t]);
#endif
    for (; b < blocks; b++) {
        const char *wb = block_of(g, kind, in, b, k);
        const float d = kind == KIND_I4 ? row_scale(kind, scales, gi, blocks, b, k) : 1.0f;
        for (int e = 0; e < BLOCK; e++) {
            const float we = weight_at(wb, kind, e) * d;
            for (ptrdiff_t t = 0; t < n; t++) totals[t] += we * x[t * in + b * BLOCK + e];
        }
    }
    if (kind == KIND_I8) {
        const float scale = row_scale(kind, scales, gi, blocks, 0, k);
        for (ptrdiff_t t = 0; t < n; t++) totals[t] *= scale;
    }
}

static inline __attribute__((always_inline)) int matmul_kind(int kind, const char *w, const void *scales,
                                                             const float *x, float *y, ptrdiff_t out, ptrdiff_t in,
                                                             ptrdiff_t n, int threads) {
    const ptrdiff_t group_bytes = weight_bytes(kind, 4 * in), groups = out / 4, blocks = in / BLOCK;
    (void)threads;
    if (n == 1 && (kind == KIND_I8 || kind == KIND_I4)) {
        /* one buffer: the rounded activations, their block scales, int4's block offsets */
        char *work = malloc((size_t)in + (sizeof(float) + sizeof(int32_t)) * (size_t)blocks);
        if (work == NULL) return -1;
        float *dx = (float *)work;
        int32_t *offsets = (int32_t *)(dx + blocks);
        int8_t *xq = (int8_t *)(offsets + blocks);
#ifdef DS_AVX2
        quantize_blocks(x, in, xq, dx, kind == KIND_I4 ? offsets : NULL);
#else
        quantize_blocks(x, in, xq, dx, NULL); /* the plain loop takes the + 8 off weight by weight */
#endif
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
        for (ptrdiff_t g = 0; g < groups; g++) {
            float totals[4];
#if defined(DS_AVX512)
            if (kind == KIND_I8) {
                group_dot_q8_vnni((const int8_t *)w + g * group_bytes, xq, dx, in, totals);
                for (int k = 0; k < 4; k++) totals[k] *= ((const float *)scales)[4 * g + k];
            } else
                group_dot_q4_vnni(w + g * group_bytes, (const uint16_t *)scales + 4 * g * blocks, xq, dx, offsets, in,
                                  totals);
#elif defined(DS_AVX2)
            if (kind == KIND_I8) {
                group_dot_q8((const int8_t *)w + g * group_bytes, xq, dx, in, totals);
                for (int k = 0; k < 4; k++) totals[k] *= ((const float *)scales)[4 * g + k];
            } else
                group_dot_q4(w + g * group_bytes, (const uint16_t *)scales + 4 * g * blocks, xq, dx, offsets, in, totals);
#else
            group_dot_quantized_portable(kind, w + g * group_bytes, scales, g, xq, dx, in, totals);
#endif
            for (int k = 0; k < 4; k++) y[4 * g + k] = totals[k];
        }
        free(work);
        return 0;
    }
#ifdef DS_AVX512
    if (kind == KIND_BF16) {
        __m512bh *xb = _mm_malloc(sizeof(__m512bh) * (size_t)(n * blocks), 64);
        if (xb == NULL) return -1;
        round_to_bf16(x, n * in, xb);
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
        for (ptrdiff_t g = 0; g < groups; g++) {
            if (n == 1) {
                group_dot_bf16(w + g * group_bytes, xb, blocks, y + 4 * g);
            } else {
                for (int k = 0; k < 4; k++) {
                    float totals[MAX_ROWS];
                    row_dot_many_bf16(w + g * group_bytes, k, xb, blocks, n, totals);
                    for (ptrdiff_t t = 0; t < n; t++) y[t * out + 4 * g + k] = totals[t];
                }
            }
        }
        _mm_free(xb);
        return 0;
    }
#endif
#ifdef DS_AVX2
    if (n == 1) {
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
        for (ptrdiff_t g = 0; g < groups; g++) group_dot16(w + g * group_bytes, kind, x, in, y + 4 * g);
        return 0;
    }
#endif
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
    for (ptrdiff_t g = 0; g < groups; g++) {
        for (int k = 0; k < 4; k++) {
            float totals[MAX_ROWS];
            row_dot_many(w + g * group_bytes, kind, scales, g, k, x, in, n, totals);
            for (ptrdiff_t t = 0; t < n; t++) y[t * out + 4 * g + k] = totals[t];
        }
    }
    return 0;
}

/* Separate instances so the element kind is a constant inside each loop. */
static int matmul_any(int kind, const char *w, const void *scales, const float *x, float *y, ptrdiff_t out,
                      ptrdiff_t in, ptrdiff_t n, int threads) {
    switch (kind) {
    case KIND_F16: return matmul_kind(KIND_F16, w, scales, x, y, out, in, n, threads);
    case KIND_BF16: return matmul_kind(KIND_BF16, w, scales, x, y, out, in, n, threads);
    case KIND_I8: return matmul_kind(KIND_I8, w, scales, x, y, out, in, n, threads);
    default: return matmul_kind(KIND_I4, w, scales, x, y, out, in, n, threads);
    }
}

/* ---- Attention of a decode step over the KV cache (fp32, bf16 or fp16 elements) ----

   out[r, h] = softmax_t(scale * q[r, h] . k[h / group, t]) @ v[h / group, t],  t <= start + r

q and out are (count, heads, dim); k and v are one layer's cache, (kv_heads, capacity, dim). Query
row r sits at position start + r and sees every key up to its own (the causal mask). Each
(row, head) pair is a task: scores, a max, exponentials and a weighted sum of value rows, with
the keys and values of a head read from cache by the query heads that share them. NumPy took
about 0.43 ms a layer for this on the 1B shape at 1024 cached tokens: a dozen passes over
(heads, keys) arrays with a temporary each. */

#ifdef DS_AVX2
/* e^x for x <= 0, eight lanes: 2^n * e^r with |r| <= ln2 / 2, a degree-6 Taylor polynomial
   (relative error about 1e-7); below -87 the result is flushed to 0's neighbourhood (e^-87). */
static inline __m256 exp8_nonpositive(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145752f), x); /* ln 2, high bits */
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860677e-6f), r);       /* and the rest */
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i two_n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(two_n));
}
#endif

/* ---- The KV cache's elements: fp32, or 16 bits (bf16 or fp16) rounded to nearest even ----

   Keys and values are written once a token and read by every later token's attention, so at a
   long context a decode step streams the whole cache: 16 bits halve those bytes. They are widened
   to fp32 as they are read and every sum stays fp32; only the stored values are rounded, the way
   PyTorch rounds them (prefill writes the same cache through PyTorch). An int8 cache quarters
   fp32's bytes: each head's row at a position is dim int8 values (x / scale rounded to nearest
   even) and its fp32 scale max |x| / 127; the loops widen the int8 values to fp32 and apply the
   row's scale to the score (keys) or to the softmax weight (values), every sum in fp32. */

/* Elements from one position's row of a head to the next's (int8 rows end with their scale). */
static inline ptrdiff_t kv_stride(int kv_kind, ptrdiff_t dim) {
    return kv_kind == KV_I8 ? dim + 4 : dim;
}

/* The scale of row ``row`` of an int8 head (its fp32 after the row's dim int8 values). */
static inline float kv_row_scale(const void *base, ptrdiff_t row, ptrdiff_t dim) {
    float scale;
    memcpy(&scale, (const char *)base + row * (dim + 4) + dim, sizeof scale);
    return scale;
}

/* Round to nearest even, as PyTorch's bfloat16 does (a NaN stays a quiet NaN). */
static inline uint16_t f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

/* Round to nearest even fp16 (IEEE binary16): past 65504 to infinity, small values to subnormals. */
static inline uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    const uint32_t magnitude = x & 0x7fffffffu;
    if (magnitude > 0x7f800000u) return sign | 0x7e00;  /* NaN */
    if (magnitude >= 0x477ff000u) return sign | 0x7c00; /* 65520 and up (and infinity) */
    if (magnitude >= 0x38800000u)                       /* a normal fp16: rebias, round the 13 bits off */
        return sign | (uint16_t)((magnitude + 0xfffu + ((magnitude >> 13) & 1) - 0x38000000u) >> 13);
    float a; /* a subnormal fp16 (or zero): a multiple of 2^-24, rounded in the current (even) mode */
    memcpy(&a, &magnitude, sizeof a);
    return sign | (uint16_t)lrintf(a * 16777216.0f);
}

/* Element i of a cache of kind kv_kind as fp32. */
static inline float kv_at(const void *base, int kv_kind, ptrdiff_t i) {
    if (kv_kind == KV_F32) return ((const float *)base)[i];
    if (kv_kind == KV_BF16) return bf16_to_f32(((const uint16_t *)base)[i]);
    if (kv_kind == KV_I8) return (float)((const int8_t *)base)[i];
    return f16_to_f32(((const uint16_t *)base)[i]);
}

/* One int8 row: dim values x / scale rounded to nearest even, then scale = max |x| / 127 (all zero
   with scale 0 for a zero row). core/kv_int8.py quantizes prefill's rows the same way. */
static void store_int8_row(char *dst, const float *src, ptrdiff_t n) {
    float peak = 0.0f;
    for (ptrdiff_t i = 0; i < n; i++) peak = fmaxf(peak, fabsf(src[i]));
    const float scale = peak / 127.0f, inverse = scale > 0.0f ? 1.0f / scale : 0.0f;
    for (ptrdiff_t i = 0; i < n; i++) {
        const float q = fminf(fmaxf(nearbyintf(src[i] * inverse), -127.0f), 127.0f);
        ((int8_t *)dst)[i] = (int8_t)q;
    }
    memcpy(dst + n, &scale, sizeof scale);
}

/* dst[0..n) <- src rounded to the cache's kind (int8: one row, n values and their scale). */
static void store_kv(void *dst, int kv_kind, const float *src, ptrdiff_t n) {
    if (kv_kind == KV_F32) {
        memcpy(dst, src, sizeof(float) * (size_t)n);
    } else if (kv_kind == KV_BF16) {
        for (ptrdiff_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = f32_to_bf16(src[i]);
    } else if (kv_kind == KV_I8) {
        store_int8_row(dst, src, n);
    } else {
        for (ptrdiff_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = f32_to_f16(src[i]);
    }
}

#ifdef DS_AVX2
/* Elements i..i+7 of a cache as fp32 (bf16: a shift; fp16: F16C; int8: widened, unscaled). */
static inline __m256 kv_load8(const void *base, int kv_kind, ptrdiff_t i) {
    if (kv_kind == KV_F32) return _mm256_loadu_ps((const float *)base + i);
    if (kv_kind == KV_I8)
        return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)((const int8_t *)base + i))));
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)base + i));
    if (kv_kind == KV_BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}
#endif

#ifdef DS_AVX512
/* Elements i..i+15 of a cache as fp32: the AVX512 loops take a head's row 16 values at a time,
   half the instructions of the AVX2 ones (which kept a 1024-key head of 80 dims from reading
   its 16-bit cache at the memory's pace). */
static inline __m512 kv_load16(const void *base, int kv_kind, ptrdiff_t i) {
    if (kv_kind == KV_F32) return _mm512_loadu_ps((const float *)base + i);
    if (kv_kind == KV_I8)
        return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)((const int8_t *)base + i))));
    const __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)base + i));
    if (kv_kind == KV_BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}
#endif

/* The fp32 query a (dim) against row ``row`` of a cache of kind kv_kind (int8: times the row's scale). */
static inline float dot_kv(const float *a, const void *keys, int kv_kind, ptrdiff_t row, ptrdiff_t dim) {
    const ptrdiff_t base = row * kv_stride(kv_kind, dim);
    const float row_scale = kv_kind == KV_I8 ? kv_row_scale(keys, row, dim) : 1.0f;
#ifdef DS_AVX2
    if (dim % 8 == 0) {
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        ptrdiff_t i = 0;
        for (; i + 16 <= dim; i += 16) {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), kv_load8(keys, kv_kind, base + i), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), kv_load8(keys, kv_kind, base + i + 8), acc1);
        }
        if (i < dim) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), kv_load8(keys, kv_kind, base + i), acc0);
        if (kv_kind == KV_I8) return sum8(_mm256_add_ps(acc0, acc1)) * row_scale;
        return sum8(_mm256_add_ps(acc0, acc1));
    }
#endif
    float total = 0.0f;
    for (ptrdiff_t i = 0; i < dim; i++) total += a[i] * kv_at(keys, kv_kind, base + i);
    if (kv_kind == KV_I8) total *= row_scale;
    return total;
}

/* scores[t] <- exp(scores[t] - peak) for t < keys; returns their sum. */
static float exponentiate(float *scores, ptrdiff_t keys, float peak) {
    ptrdiff_t t = 0;
    float total = 0.0f;
#ifdef DS_AVX2
    __m256 sums = _mm256_setzero_ps();
    const __m256 shift = _mm256_set1_ps(peak);
    for (; t + 8 <= keys; t += 8) {
        const __m256 e = exp8_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(scores + t), shift));
        _mm256_storeu_ps(scores + t, e);
        sums = _mm256_add_ps(sums, e);
    }
    total = sum8(sums);
#endif
    for (; t < keys; t++) {
        scores[t] = expf(scores[t] - peak);
        total += scores[t];
    }
    return total;
}

#ifdef DS_AVX2
/* out[d0, d0 + 8 * vectors) <- sum_t weights[t] * values[t, that range] * inverse, in one pass
   over the value rows (``vectors`` a constant wherever this inlines: the sums stay in registers;
   10 covers a head of 80 dims, StableLM's and Phi's, in one pass). */
static inline __attribute__((always_inline)) void weigh_range(const float *weights, const void *values, int kv_kind,
                                                               ptrdiff_t keys, ptrdiff_t dim, ptrdiff_t d0,
                                                               const int vectors, float inverse, float *out) {
    __m256 a[10];
    const ptrdiff_t stride = kv_stride(kv_kind, dim);
    for (int j = 0; j < vectors; j++) a[j] = _mm256_setzero_ps();
    for (ptrdiff_t t = 0; t < keys; t++) {
        const __m256 w = _mm256_set1_ps(kv_kind == KV_I8 ? weights[t] * kv_row_scale(values, t, dim) : weights[t]);
        for (int j = 0; j < vectors; j++) a[j] = _mm256_fmadd_ps(w, kv_load8(values, kv_kind, t * stride + d0 + 8 * j), a[j]);
    }
    const __m256 scale = _mm256_set1_ps(inverse);
    for (int j = 0; j < vectors; j++) _mm256_storeu_ps(out + d0 + 8 * j, _mm256_mul_ps(a[j], scale));
}
#endif

#ifdef DS_AVX512
/* weigh_range with 16 values a vector (8 vectors cover a head of 128 dims, 5 one of 80). */
static inline __attribute__((always_inline)) void weigh_range16(const float *weights, const void *values, int kv_kind,
                                                                 ptrdiff_t keys, ptrdiff_t dim, ptrdiff_t d0,
                                                                 const int vectors, float inverse, float *out) {
    __m512 a[8];
    const ptrdiff_t stride = kv_stride(kv_kind, dim);
    for (int j = 0; j < vectors; j++) a[j] = _mm512_setzero_ps();
    for (ptrdiff_t t = 0; t < keys; t++) {
        const __m512 w = _mm512_set1_ps(kv_kind == KV_I8 ? weights[t] * kv_row_scale(values, t, dim) : weights[t]);
        for (int j = 0; j < vectors; j++)
            a[j] = _mm512_fmadd_ps(w, kv_load16(values, kv_kind, t * stride + d0 + 16 * j), a[j]);
    }
    const __m512 scale = _mm512_set1_ps(inverse);
    for (int j = 0; j < vectors; j++) _mm512_storeu_ps(out + d0 + 16 * j, _mm512_mul_ps(a[j], scale));
}
#endif

/* out (dim) <- sum_t weights[t] * values[t] / total (values: rows of a cache of kind kv_kind). */
static inline __attribute__((always_inline)) void weigh_values(const float *weights, const void *values, int kv_kind,
                                                                ptrdiff_t keys, ptrdiff_t dim, float total,
                                                                float *out) {
    const float inverse = 1.0f / total;
    ptrdiff_t d0 = 0;
#ifdef DS_AVX512
    while (d0 + 16 <= dim) {
        const ptrdiff_t left = (dim - d0) / 16;
        const int vectors = left >= 8 ? 8 : left == 5 ? 5 : left >= 4 ? 4 : left >= 2 ? 2 : 1;
        switch (vectors) {
        case 8: weigh_range16(weights, values, kv_kind, keys, dim, d0, 8, inverse, out); break;
        case 5: weigh_range16(weights, values, kv_kind, keys, dim, d0, 5, inverse, out); break;
        case 4: weigh_range16(weights, values, kv_kind, keys, dim, d0, 4, inverse, out); break;
        case 2: weigh_range16(weights, values, kv_kind, keys, dim, d0, 2, inverse, out); break;
        default: weigh_range16(weights, values, kv_kind, keys, dim, d0, 1, inverse, out); break;
        }
        d0 += 16 * vectors;
    }
#endif
#ifdef DS_AVX2
    while (d0 + 8 <= dim) {
        const ptrdiff_t left = (dim - d0) / 8;
        const int vectors = left == 10 ? 10 : left >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1;
        switch (vectors) {
        case 10: weigh_range(weights, values, kv_kind, keys, dim, d0, 10, inverse, out); break;
        case 8: weigh_range(weights, values, kv_kind, keys, dim, d0, 8, inverse, out); break;
        case 4: weigh_range(weights, values, kv_kind, keys, dim, d0, 4, inverse, out); break;
        case 2: weigh_range(weights, values, kv_kind, keys, dim, d0, 2, inverse, out); break;
        default: weigh_range(weights, values, kv_kind, keys, dim, d0, 1, inverse, out); break;
        }
        d0 += 8 * vectors;
    }
#endif
    /* the rest (every dim in the portable loops): value rows in order, sums in ``out`` */
    const ptrdiff_t stride = kv_stride(kv_kind, dim);
    for (ptrdiff_t d = d0; d < dim; d++) out[d] = 0.0f;
    for (ptrdiff_t t = 0; t < keys && d0 < dim; t++) {
        const float w = kv_kind == KV_I8 ? weights[t] * kv_row_scale(values, t, dim) : weights[t];
        for (ptrdiff_t d = d0; d < dim; d++) out[d] += w * kv_at(values, kv_kind, t * stride + d);
    }
    for (ptrdiff_t d = d0; d < dim; d++) out[d] *= inverse;
}

#ifdef DS_AVX2
/* The eight sums of a0..a7's lanes, in order, as one vector. */
static inline __m256 sums_of_eight(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5, __m256 a6,
                                   __m256 a7) {
    const __m256 s0123 = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    const __m256 s4567 = _mm256_hadd_ps(_mm256_hadd_ps(a4, a5), _mm256_hadd_ps(a6, a7));
    return _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20), _mm256_permute2f128_ps(s0123, s4567, 0x31));
}

/* The scales of int8 rows t..t+7 of a head, as one vector. */
static inline __m256 row_scales8(const void *base, ptrdiff_t t, ptrdiff_t dim) {
    return _mm256_setr_ps(kv_row_scale(base, t, dim), kv_row_scale(base, t + 1, dim), kv_row_scale(base, t + 2, dim),
                          kv_row_scale(base, t + 3, dim), kv_row_scale(base, t + 4, dim),
                          kv_row_scale(base, t + 5, dim), kv_row_scale(base, t + 6, dim),
                          kv_row_scale(base, t + 7, dim));
}

/* The largest of v's eight lanes. */
static inline float largest_of_eight(__m256 v) {
    float lanes[8], peak = -INFINITY;
    _mm256_storeu_ps(lanes, v);
    for (int j = 0; j < 8; j++) peak = fmaxf(peak, lanes[j]);
    return peak;
}

/* scores[t] = scale * query . keys[t] for the keys of whole groups of eight (dim a multiple of 8),
   so the reduction across lanes is shared by eight dot products; the caller scores the rest.
   Returns how many keys it scored, and their largest score in *peak. */
static inline __attribute__((always_inline)) ptrdiff_t score_keys(const float *query, const void *keys_base,
                                                                  int kv_kind, ptrdiff_t keys, ptrdiff_t dim,
                                                                  float scale, float *scores, float *peak) {
    __m256 peak8 = _mm256_set1_ps(-INFINITY);
    const __m256 scale8 = _mm256_set1_ps(scale);
    const ptrdiff_t stride = kv_stride(kv_kind, dim);
    ptrdiff_t t = 0;
    for (; t + 8 <= keys; t += 8) {
        __m256 a[8];
        for (int j = 0; j < 8; j++) a[j] = _mm256_setzero_ps();
        for (ptrdiff_t i = 0; i < dim; i += 8) {
            const __m256 qv = _mm256_loadu_ps(query + i);
            for (int j = 0; j < 8; j++) a[j] = _mm256_fmadd_ps(qv, kv_load8(keys_base, kv_kind, (t + j) * stride + i), a[j]);
        }
        __m256 dots = sums_of_eight(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
        if (kv_kind == KV_I8) dots = _mm256_mul_ps(dots, row_scales8(keys_base, t, dim));
        const __m256 s = _mm256_mul_ps(dots, scale8);
        _mm256_storeu_ps(scores + t, s);
        peak8 = _mm256_max_ps(peak8, s);
    }
    *peak = largest_of_eight(peak8);
    return t;
}
#endif

#ifdef DS_AVX512
/* score_keys with 16 values a vector (dim a multiple of 16). */
static inline __attribute__((always_inline)) ptrdiff_t score_keys16(const float *query, const void *keys_base,
                                                                    int kv_kind, ptrdiff_t keys, ptrdiff_t dim,
                                                                    float scale, float *scores, float *peak) {
    __m256 peak8 = _mm256_set1_ps(-INFINITY);
    const __m256 scale8 = _mm256_set1_ps(scale);
    const ptrdiff_t stride = kv_stride(kv_kind, dim);
    ptrdiff_t t = 0;
    for (; t + 8 <= keys; t += 8) {
        __m512 a[8];
        for (int j = 0; j < 8; j++) a[j] = _mm512_setzero_ps();
        for (ptrdiff_t i = 0; i < dim; i += 16) {
            const __m512 qv = _mm512_loadu_ps(query + i);
            for (int j = 0; j < 8; j++) a[j] = _mm512_fmadd_ps(qv, kv_load16(keys_base, kv_kind, (t + j) * stride + i), a[j]);
        }
        __m256 h[8];
        for (int j = 0; j < 8; j++) h[j] = _mm256_add_ps(_mm512_castps512_ps256(a[j]), _mm512_extractf32x8_ps(a[j], 1));
        __m256 dots = sums_of_eight(h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]);
        if (kv_kind == KV_I8) dots = _mm256_mul_ps(dots, row_scales8(keys_base, t, dim));
        const __m256 s = _mm256_mul_ps(dots, scale8);
        _mm256_storeu_ps(scores + t, s);
        peak8 = _mm256_max_ps(peak8, s);
    }
    *peak = largest_of_eight(peak8);
    return t;
}
#endif

/* One (row, head) task: scores over ``keys`` keys, softmax, weighted values into out (dim). */
static inline __attribute__((always_inline)) void attend_head(const float *query, const void *head_k,
                                                              const void *head_v, int kv_kind, ptrdiff_t keys,
                                                              ptrdiff_t dim, float scale, float *scores, float *out) {
    float peak = -INFINITY;
    ptrdiff_t scored = 0;
#ifdef DS_AVX512
    if (dim % 16 == 0)
        scored = score_keys16(query, head_k, kv_kind, keys, dim, scale, scores, &peak);
    else
#endif
    {
#ifdef DS_AVX2
        if (dim % 8 == 0) scored = score_keys(query, head_k, kv_kind, keys, dim, scale, scores, &peak);
#endif
    }
    for (ptrdiff_t t = scored; t < keys; t++) {  /* the keys no vector loop took */
        scores[t] = scale * dot_kv(query, head_k, kv_kind, t, dim);
        peak = fmaxf(peak, scores[t]);
    }
    const float total = exponentiate(scores, keys, peak);
    weigh_values(scores, head_v, kv_kind, keys, dim, total, out);
}

/* Separate instances so the cache's kind is a constant inside each loop. */
static void attend_head_any(const float *query, const void *head_k, const void *head_v, int kv_kind, ptrdiff_t keys,
                            ptrdiff_t dim, float scale, float *scores, float *out) {
    switch (kv_kind) {
    case KV_F32: attend_head(query, head_k, head_v, KV_F32, keys, dim, scale, scores, out); break;
    case KV_BF16: attend_head(query, head_k, head_v, KV_BF16, keys, dim, scale, scores, out); break;
    case KV_I8: attend_head(query, head_k, head_v, KV_I8, keys, dim, scale, scores, out); break;
    default: attend_head(query, head_k, head_v, KV_F16, keys, dim, scale, scores, out); break;
    }
}

static int attend(const float *q, const void *k, const void *v, int kv_kind, float *out, ptrdiff_t count,
                  ptrdiff_t heads, ptrdiff_t kv_heads, ptrdiff_t dim, ptrdiff_t capacity, ptrdiff_t start, float scale,
                  int threads) {
    const ptrdiff_t group = heads / kv_heads, tasks = count * heads;
    const size_t head_bytes = (size_t)(capacity * kv_row_bytes(kv_kind, dim));
    int failed = 0;
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel num_threads(tasks < threads ? (int)tasks : threads) reduction(| : failed)
#endif
    {
        float *scores = malloc(sizeof(float) * (size_t)(start + count));
        if (scores == NULL) {
            failed = 1;
        } else {
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
            for (ptrdiff_t task = 0; task < tasks; task++) {
                const ptrdiff_t r = task / heads, h = task % heads;
                const char *head_k = (const char *)k + (size_t)(h / group) * head_bytes;
                const char *head_v = (const char *)v + (size_t)(h / group) * head_bytes;
                attend_head_any(q + task * dim, head_k, head_v, kv_kind, start + r + 1, dim, scale, scores,
                                out + task * dim);
            }
            free(scores);
        }
    }
    return failed ? -1 : 0;
}

/* ---- A whole decode step's layers in one call ----

   For one token, each layer is: the input norm, the fused q/k/v product (plus its bias), RoPE on
   q and k, the new key and value written to the cache, attention (over the sliding window where
   the family has one), the output product added to the residual, the post-attention norm, the
   MLP's input product (gate and up side by side, or one matrix for a plain MLP), the activation
   (times up where gated), the down product added to the residual. What differs between the
   families (RMSNorm or LayerNorm with bias, SiLU or GELU, gated or not, partial RoPE, biases, a
   window) is named by the StepShape and the layer's pointers, not another loop. Called op by op
   from NumPy that is about twenty calls a layer of a few microseconds each, as much time as the
   products themselves on a model as small as the shipped one. Here it is one call for every
   layer; the arithmetic is the same as core/blas_decode.py's, in the same order per value except
   for sums (and GELU's tanh, computed from e^x in the SIMD variants). */

#ifdef DS_AVX2
/* e^x in eight lanes for any x (clamped to [-87, 88], where 2^n stays a normal float). */
static inline __m256 exp8(__m256 x) {
    return exp8_nonpositive(_mm256_min_ps(x, _mm256_set1_ps(88.0f)));
}
#endif

/* out = x / rms(x) * weight, over n values. */
static void rms_norm(const float *x, const float *weight, ptrdiff_t n, float eps, float *out) {
    double squares = 0.0;
    for (ptrdiff_t i = 0; i < n; i++) squares += (double)x[i] * x[i];
    const float inverse = 1.0f / sqrtf((float)(squares / n) + eps);
    for (ptrdiff_t i = 0; i < n; i++) out[i] = x[i] * inverse * weight[i];
}

/* out = (x - mean) / sqrt(var + eps) * weight + bias (LayerNorm; bias may be NULL). */
static void layer_norm(const float *x, const float *weight, const float *bias, ptrdiff_t n, float eps, float *out) {
    double sum = 0.0;
    for (ptrdiff_t i = 0; i < n; i++) sum += x[i];
    const float mean = (float)(sum / n);
    double squares = 0.0;
    for (ptrdiff_t i = 0; i < n; i++) squares += (double)(x[i] - mean) * (x[i] - mean);
    const float inverse = 1.0f / sqrtf((float)(squares / n) + eps);
    for (ptrdiff_t i = 0; i < n; i++) out[i] = (x[i] - mean) * inverse * weight[i] + (bias ? bias[i] : 0.0f);
}

static void family_norm(const StepShape *s, const float *x, const float *weight, const float *bias, float *out) {
    if (s->norm == NORM_LAYER) layer_norm(x, weight, bias, s->hidden, s->eps, out);
    else rms_norm(x, weight, s->hidden, s->eps, out);
}

static void add_bias(float *y, const float *bias, ptrdiff_t n) {
    if (bias != NULL)
        for (ptrdiff_t i = 0; i < n; i++) y[i] += bias[i];
}

static inline float gelu_tanh(float x) {
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

/* act[i] = activation(gate[i]) * up[i], or activation(gate[i]) where up is NULL (a plain MLP). */
static void activate(int activation, const float *gate, const float *up, ptrdiff_t n, float *act) {
    ptrdiff_t i = 0;
#ifdef DS_AVX2
    const __m256 one = _mm256_set1_ps(1.0f), two = _mm256_set1_ps(2.0f), half = _mm256_set1_ps(0.5f);
    if (activation == ACT_SILU) {
        for (; i + 8 <= n; i += 8) {
            const __m256 g = _mm256_loadu_ps(gate + i);
            const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
            __m256 a = _mm256_div_ps(g, _mm256_add_ps(one, e));
            if (up != NULL) a = _mm256_mul_ps(a, _mm256_loadu_ps(up + i));
            _mm256_storeu_ps(act + i, a);
        }
    } else if (activation == ACT_GELU_TANH) { /* tanh(u) = 1 - 2 / (e^2u + 1) */
        for (; i + 8 <= n; i += 8) {
            const __m256 g = _mm256_loadu_ps(gate + i);
            const __m256 cube = _mm256_mul_ps(_mm256_mul_ps(g, g), g);
            const __m256 u = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f),
                                           _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), cube, g));
            const __m256 e = exp8(_mm256_mul_ps(two, u));
            const __m256 t = _mm256_sub_ps(one, _mm256_div_ps(two, _mm256_add_ps(e, one)));
            __m256 a = _mm256_mul_ps(_mm256_mul_ps(half, g), _mm256_add_ps(one, t));
            if (up != NULL) a = _mm256_mul_ps(a, _mm256_loadu_ps(up + i));
            _mm256_storeu_ps(act + i, a);
        }
    }
#endif
    for (; i < n; i++) {
        const float g = gate[i];
        const float a = activation == ACT_SILU        ? g / (1.0f + expf(-g))
                        : activation == ACT_GELU_TANH ? gelu_tanh(g)
                                                      : 0.5f * g * (1.0f + erff(g * 0.7071067811865476f));
        act[i] = up != NULL ? a * up[i] : a;
    }
}

/* Rotate the first ``rotary`` dims of each head, as (re, im) pairs, by the position's (cos, sin)
   pairs (``rotary`` / 2 of them); the head's other dims stay. */
static void rotate_pairs(float *qk, ptrdiff_t heads, ptrdiff_t dim, ptrdiff_t rotary, const float *rope) {
    for (ptrdiff_t h = 0; h < heads; h++) {
        float *row = qk + h * dim;
        for (ptrdiff_t i = 0; i < rotary; i += 2) {
            const float a = row[i], b = row[i + 1], c = rope[i], s = rope[i + 1];
            row[i] = a * c - b * s;
            row[i + 1] = a * s + b * c;
        }
    }
}

/* One layer for one token: x (hidden) is the residual stream, updated in place. */
static int decode_layer(const StepShape *s, const LayerPointers *b, float *x, const float *rope, char *k_layer,
                        char *v_layer, float *scratch) {
    const ptrdiff_t q_size = s->heads * s->dim, kv_size = s->kv_heads * s->dim;
    const ptrdiff_t qkv_size = q_size + 2 * kv_size, mlp_in = s->gated ? 2 * s->mlp : s->mlp;
    float *h = scratch, *qkv = h + s->hidden, *attn = qkv + qkv_size, *gate_up = attn + q_size,
          *act = gate_up + 2 * s->mlp, *delta = act + s->mlp;
    int failed = 0;
    family_norm(s, x, b->input_norm, b->input_norm_bias, h);
    failed |= matmul_any(s->kind, b->qkv, b->qkv_scales, h, qkv, qkv_size, s->hidden, 1, s->threads);
    add_bias(qkv, b->qkv_bias, qkv_size);
    rotate_pairs(qkv, s->heads + s->kv_heads, s->dim, s->rotary_dims, rope);
    const size_t row = (size_t)kv_row_bytes(s->kv_kind, s->dim);
    for (ptrdiff_t kh = 0; kh < s->kv_heads; kh++) {
        const size_t at = (size_t)(kh * s->capacity + s->start) * row;
        store_kv(k_layer + at, s->kv_kind, qkv + q_size + kh * s->dim, s->dim);
        store_kv(v_layer + at, s->kv_kind, qkv + q_size + kv_size + kh * s->dim, s->dim);
    }
    /* A sliding window hides keys at or before start - window: attention starts past them. */
    const ptrdiff_t first = s->window > 0 && s->start >= s->window ? s->start - s->window + 1 : 0;
    const size_t skipped = (size_t)first * row;
    failed |= attend(qkv, k_layer + skipped, v_layer + skipped, s->kv_kind, attn, 1, s->heads, s->kv_heads, s->dim,
                     s->capacity, s->start - first, s->scale, s->threads);
    failed |= matmul_any(s->kind, b->o, b->o_scales, attn, delta, s->hidden, q_size, 1, s->threads);
    add_bias(delta, b->o_bias, s->hidden);
    for (ptrdiff_t i = 0; i < s->hidden; i++) x[i] += delta[i];
    family_norm(s, x, b->post_norm, b->post_norm_bias, h);
    failed |= matmul_any(s->kind, b->gate_up, b->gate_up_scales, h, gate_up, mlp_in, s->hidden, 1, s->threads);
    add_bias(gate_up, b->gate_up_bias, mlp_in);
    activate(s->activation, gate_up, s->gated ? gate_up + s->mlp : NULL, s->mlp, act);
    failed |= matmul_any(s->kind, b->down, b->down_scales, act, delta, s->hidden, s->mlp, 1, s->threads);
    add_bias(delta, b->down_bias, s->hidden);
    for (ptrdiff_t i = 0; i < s->hidden; i++) x[i] += delta[i];
    return failed ? -1 : 0;
}

static int decode_layers(const StepShape *s, const LayerPointers *layers, ptrdiff_t count, float *x,
                         const float *rope, void *k_cache, void *v_cache) {
    const ptrdiff_t q_size = s->heads * s->dim, qkv_size = q_size + 2 * s->kv_heads * s->dim;
    float *scratch = malloc(sizeof(float) * (size_t)(2 * s->hidden + qkv_size + q_size + 3 * s->mlp));
    if (scratch == NULL) return -1;
    const size_t stride = (size_t)(s->kv_heads * s->capacity) * (size_t)kv_row_bytes(s->kv_kind, s->dim);
    int failed = 0;
    for (ptrdiff_t i = 0; i < count && !failed; i++)
        failed = decode_layer(s, &layers[i], x, rope, (char *)k_cache + i * stride, (char *)v_cache + i * stride,
                              scratch);
    free(scratch);
    return failed;
}

const KernelTable DS_TABLE = {DS_NAME, matmul_any, attend, decode_layers};
