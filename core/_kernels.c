/* CPU loops of a decode step: matrix products from compact weights (fp16, bf16 or int8 rows, fp32
activations) and, further down, attention over the fp32 KV cache and a whole one-token step.

A decode step multiplies a few rows of activations by every weight matrix, so its time is the time
to stream the weights from memory. Storing them in 16 bits halves those bytes and int8 quarters
them, but NumPy has no fast 16-bit product and PyTorch's CPU kernels lose that gain to dispatch
and emulation on CPUs without native bf16. These loops widen each weight to fp32 in registers
as they stream it (F16C for fp16, a shift for bf16) and accumulate in fp32.

    y[t, r] = scale[r] * sum_j w[r, j] * x[t, j]    for t < n (at most MAX_ROWS), r < out

scale is 1 for 16-bit weights. Layout: rows in groups of four, interleaved in blocks of BLOCK
columns (block b of row 4g + k starts at element (4g * in) + (4b + k) * BLOCK), so each thread
reads one sequential stream; a core streamed four separate rows at 60-70% of that speed. The
Python side (core/compact_weights.py) lays the weights out so; out must be a multiple of 4 and
in of BLOCK.

An int8 decode step (one row) also rounds x to int8 in blocks of 32, as llama.cpp's Q8_0 does,
to multiply bytes by bytes (32 products per multiply-add instead of 8). Output rows are shared
among threads with OpenMP where the compiler has it. Without AVX2/FMA/F16C the same sums run in
portable C (correct, slower); Python only picks these kernels where ``simd()`` is "avx2".
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define DS_AVX2 1
#endif

#define MAX_ROWS 8
#define BLOCK 32
/* A core keeps only so many cache misses in flight; asking for lines this far ahead lets a
   compact stream keep up with fp32's (the hardware prefetcher alone fell behind for int8). */
#ifndef PREFETCH_BYTES
#define PREFETCH_BYTES 1024
#endif
enum { KIND_F16 = 0, KIND_BF16 = 1, KIND_I8 = 2 };
static const Py_ssize_t ELEMENT_BYTES[] = {2, 2, 1};

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

/* Element e of a block (at ``block``, in elements of ``kind``) as fp32. */
static inline float weight_at(const char *block, int kind, Py_ssize_t e) {
    if (kind == KIND_F16) return f16_to_f32(((const uint16_t *)block)[e]);
    if (kind == KIND_BF16) return bf16_to_f32(((const uint16_t *)block)[e]);
    return (float)((const int8_t *)block)[e];
}

#ifdef DS_AVX2
/* Eight weights from ``p`` widened to fp32. */
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

/* A group of four 16-bit rows against one activation row. */
static inline __attribute__((always_inline)) void group_dot16(const char *g, int kind, const float *x, Py_ssize_t in,
                                                              float *totals) {
    const Py_ssize_t block_bytes = BLOCK * 2;
    __m256 acc[8];
    for (int a = 0; a < 8; a++) acc[a] = _mm256_setzero_ps();
    for (Py_ssize_t b = 0; b < in / BLOCK; b++) {
        const char *wb = g + 4 * b * block_bytes;
        for (int line = 0; line < 4; line++) _mm_prefetch(wb + PREFETCH_BYTES + 64 * line, _MM_HINT_T0);
        for (int v = 0; v < BLOCK / 8; v++) {
            const __m256 xv = _mm256_loadu_ps(x + b * BLOCK + v * 8);
            for (int k = 0; k < 4; k++) {  /* two accumulators a row: alternate vectors */
                const int a = 2 * k + (v & 1);
                acc[a] = _mm256_fmadd_ps(load8(wb + k * block_bytes + v * 16, kind), xv, acc[a]);
            }
        }
    }
    for (int k = 0; k < 4; k++) totals[k] = sum8(_mm256_add_ps(acc[2 * k], acc[2 * k + 1]));
}

static void quantize_blocks(const float *x, Py_ssize_t in, int8_t *xq, float *dx) {
    for (Py_ssize_t b = 0; b < in / BLOCK; b++) {
        const float *xb = x + b * BLOCK;
        float amax = 0.0f;
        for (int i = 0; i < BLOCK; i++) amax = fmaxf(amax, fabsf(xb[i]));
        const float d = amax / 127.0f, inverse = d > 0.0f ? 1.0f / d : 0.0f;
        dx[b] = d;
        for (int i = 0; i < BLOCK; i++) xq[b * BLOCK + i] = (int8_t)lrintf(xb[i] * inverse);
    }
}

/* 32 int8 weights against 32 int8 activations, as fp32 lanes scaled by the activations' scale. */
static inline __m256 block_dot_q8(const int8_t *w, __m256i xq, __m256 dx) {
    const __m256i wv = _mm256_loadu_si256((const __m256i *)w);
    /* maddubs multiplies unsigned by signed bytes: move w's sign onto x (|w| <= 127: no overflow) */
    const __m256i pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(wv), _mm256_sign_epi8(xq, wv));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1))), dx);
}

/* A group of four int8 rows against one activation row quantized by quantize_blocks. */
static inline void group_dot_q8(const int8_t *g, const int8_t *xq, const float *dx, Py_ssize_t in, float *totals) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    for (Py_ssize_t b = 0; b < in / BLOCK; b++) {
        const __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + b * BLOCK));
        const __m256 d = _mm256_set1_ps(dx[b]);
        const int8_t *wb = g + 4 * b * BLOCK;
        _mm_prefetch((const char *)wb + PREFETCH_BYTES, _MM_HINT_T0);
        _mm_prefetch((const char *)wb + PREFETCH_BYTES + 64, _MM_HINT_T0);
        a0 = _mm256_add_ps(a0, block_dot_q8(wb, xv, d));
        a1 = _mm256_add_ps(a1, block_dot_q8(wb + BLOCK, xv, d));
        a2 = _mm256_add_ps(a2, block_dot_q8(wb + 2 * BLOCK, xv, d));
        a3 = _mm256_add_ps(a3, block_dot_q8(wb + 3 * BLOCK, xv, d));
    }
    totals[0] = sum8(a0), totals[1] = sum8(a1), totals[2] = sum8(a2), totals[3] = sum8(a3);
}
#endif

/* Row k of a group against n activation rows (draft checks, and every pass without AVX2). */
static inline __attribute__((always_inline)) void row_dot_many(const char *g, int kind, int k, const float *x,
                                                               Py_ssize_t in, Py_ssize_t n, float *totals) {
    const Py_ssize_t block_bytes = BLOCK * ELEMENT_BYTES[kind];
    Py_ssize_t b = 0;
    for (Py_ssize_t t = 0; t < n; t++) totals[t] = 0.0f;
#ifdef DS_AVX2
    __m256 acc[MAX_ROWS];
    for (Py_ssize_t t = 0; t < n; t++) acc[t] = _mm256_setzero_ps();
    for (; b < in / BLOCK; b++) {
        const char *wb = g + (4 * b + k) * block_bytes;
        for (int v = 0; v < BLOCK / 8; v++) {
            const __m256 wv = load8(wb + v * 8 * ELEMENT_BYTES[kind], kind);
            for (Py_ssize_t t = 0; t < n; t++)
                acc[t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + t * in + b * BLOCK + v * 8), acc[t]);
        }
    }
    for (Py_ssize_t t = 0; t < n; t++) totals[t] = sum8(acc[t]);
#endif
    for (; b < in / BLOCK; b++) {
        const char *wb = g + (4 * b + k) * block_bytes;
        for (int e = 0; e < BLOCK; e++) {
            const float we = weight_at(wb, kind, e);
            for (Py_ssize_t t = 0; t < n; t++) totals[t] += we * x[t * in + b * BLOCK + e];
        }
    }
}

static inline __attribute__((always_inline)) void matmul_kind(int kind, const char *w, const float *scales,
                                                              const float *x, float *y, Py_ssize_t out,
                                                              Py_ssize_t in, Py_ssize_t n, int threads) {
    const Py_ssize_t group_bytes = 4 * in * ELEMENT_BYTES[kind], groups = out / 4;
    (void)threads;
#ifdef DS_AVX2
    if (n == 1 && kind == KIND_I8) {
        int8_t *xq = PyMem_RawMalloc(in);
        float *dx = PyMem_RawMalloc(sizeof(float) * (in / BLOCK));
        if (xq != NULL && dx != NULL) {
            quantize_blocks(x, in, xq, dx);
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
            for (Py_ssize_t g = 0; g < groups; g++) {
                float totals[4];
                group_dot_q8((const int8_t *)w + g * group_bytes, xq, dx, in, totals);
                for (int k = 0; k < 4; k++) y[4 * g + k] = scales[4 * g + k] * totals[k];
            }
        }
        PyMem_RawFree(xq);
        PyMem_RawFree(dx);
        if (xq != NULL && dx != NULL) return;
    } else if (n == 1) {
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
        for (Py_ssize_t g = 0; g < groups; g++) {
            float totals[4];
            group_dot16(w + g * group_bytes, kind, x, in, totals);
            for (int k = 0; k < 4; k++) y[4 * g + k] = totals[k];
        }
        return;
    }
#endif
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
    for (Py_ssize_t g = 0; g < groups; g++) {
        for (int k = 0; k < 4; k++) {
            const Py_ssize_t r = 4 * g + k;
            const float scale = scales ? scales[r] : 1.0f;
            float totals[MAX_ROWS];
            row_dot_many(w + g * group_bytes, kind, k, x, in, n, totals);
            for (Py_ssize_t t = 0; t < n; t++) y[t * out + r] = scale * totals[t];
        }
    }
}

/* Separate instances so the element kind is a constant inside each loop. */
static void matmul_f16(const char *w, const float *x, float *y, Py_ssize_t o, Py_ssize_t i, Py_ssize_t n, int t) {
    matmul_kind(KIND_F16, w, NULL, x, y, o, i, n, t);
}
static void matmul_bf16(const char *w, const float *x, float *y, Py_ssize_t o, Py_ssize_t i, Py_ssize_t n, int t) {
    matmul_kind(KIND_BF16, w, NULL, x, y, o, i, n, t);
}
static void matmul_i8(const char *w, const float *s, const float *x, float *y, Py_ssize_t o, Py_ssize_t i,
                      Py_ssize_t n, int t) {
    matmul_kind(KIND_I8, w, s, x, y, o, i, n, t);
}

/* What a call returns: a ValueError naming the problem, a MemoryError, or None. */
static PyObject *call_result(const char *problem, int out_of_memory) {
    if (problem != NULL) {
        PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    if (out_of_memory) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *py_matmul(PyObject *self, PyObject *args) {
    int kind, threads;
    Py_ssize_t out, in, n;
    Py_buffer w, scales, x, y;
    (void)self;
    if (!PyArg_ParseTuple(args, "iy*y*y*w*nnni", &kind, &w, &scales, &x, &y, &out, &in, &n, &threads)) return NULL;
    const char *problem = NULL;
    if (kind < KIND_F16 || kind > KIND_I8) problem = "kind must be 0 (fp16), 1 (bf16) or 2 (int8)";
    else if (n < 1 || n > MAX_ROWS) problem = "between 1 and 8 activation rows";
    else if (out < 4 || out % 4 != 0) problem = "out must be a positive multiple of 4";
    else if (in < BLOCK || in % BLOCK != 0) problem = "in must be a positive multiple of 32";
    else if (threads < 1) problem = "threads must be positive";
    else if (w.len != out * in * ELEMENT_BYTES[kind]) problem = "weights are not out x in elements";
    else if (kind == KIND_I8 ? scales.len != out * 4 : scales.len != 0) problem = "int8 needs out fp32 scales; 16-bit none";
    else if (x.len != n * in * 4) problem = "activations are not n x in fp32";
    else if (y.len != n * out * 4) problem = "output is not n x out fp32";
    if (problem == NULL) {
        Py_BEGIN_ALLOW_THREADS
        if (kind == KIND_F16) matmul_f16(w.buf, x.buf, y.buf, out, in, n, threads);
        else if (kind == KIND_BF16) matmul_bf16(w.buf, x.buf, y.buf, out, in, n, threads);
        else matmul_i8(w.buf, scales.buf, x.buf, y.buf, out, in, n, threads);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&w);
    PyBuffer_Release(&scales);
    PyBuffer_Release(&x);
    PyBuffer_Release(&y);
    return call_result(problem, 0);
}

/* ---- Attention of a decode step over the fp32 KV cache ----

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

static inline float dot_f32(const float *a, const float *b, Py_ssize_t dim) {
#ifdef DS_AVX2
    if (dim % 8 == 0) {
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        Py_ssize_t i = 0;
        for (; i + 16 <= dim; i += 16) {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
        }
        if (i < dim) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        return sum8(_mm256_add_ps(acc0, acc1));
    }
#endif
    float total = 0.0f;
    for (Py_ssize_t i = 0; i < dim; i++) total += a[i] * b[i];
    return total;
}

/* scores[t] <- exp(scores[t] - peak) for t < keys; returns their sum. */
static float exponentiate(float *scores, Py_ssize_t keys, float peak) {
    Py_ssize_t t = 0;
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

/* out (dim) <- sum_t weights[t] * values[t] / total. */
static void weigh_values(const float *weights, const float *values, Py_ssize_t keys, Py_ssize_t dim, float total,
                         float *out) {
    const float inverse = 1.0f / total;
    Py_ssize_t d0 = 0;
#ifdef DS_AVX2
    const __m256 scale = _mm256_set1_ps(inverse);
    for (; d0 + 64 <= dim; d0 += 64) { /* eight registers of output a pass over the values */
        __m256 a[8];
        for (int j = 0; j < 8; j++) a[j] = _mm256_setzero_ps();
        for (Py_ssize_t t = 0; t < keys; t++) {
            const float *row = values + t * dim + d0;
            const __m256 w = _mm256_set1_ps(weights[t]);
            for (int j = 0; j < 8; j++) a[j] = _mm256_fmadd_ps(w, _mm256_loadu_ps(row + 8 * j), a[j]);
        }
        for (int j = 0; j < 8; j++) _mm256_storeu_ps(out + d0 + 8 * j, _mm256_mul_ps(a[j], scale));
    }
    for (; d0 + 8 <= dim; d0 += 8) {
        __m256 a = _mm256_setzero_ps();
        for (Py_ssize_t t = 0; t < keys; t++) a = _mm256_fmadd_ps(_mm256_set1_ps(weights[t]), _mm256_loadu_ps(values + t * dim + d0), a);
        _mm256_storeu_ps(out + d0, _mm256_mul_ps(a, scale));
    }
#endif
    for (Py_ssize_t d = d0; d < dim; d++) {
        float total_d = 0.0f;
        for (Py_ssize_t t = 0; t < keys; t++) total_d += weights[t] * values[t * dim + d];
        out[d] = total_d * inverse;
    }
}

#ifdef DS_AVX2
/* The eight sums of a0..a7's lanes, in order, as one vector. */
static inline __m256 sums_of_eight(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5, __m256 a6,
                                   __m256 a7) {
    const __m256 s0123 = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    const __m256 s4567 = _mm256_hadd_ps(_mm256_hadd_ps(a4, a5), _mm256_hadd_ps(a6, a7));
    return _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20), _mm256_permute2f128_ps(s0123, s4567, 0x31));
}

/* scores[t] = scale * query . keys[t] for t < keys (dim a multiple of 8): eight keys at a time, so
   the reduction across lanes is shared by eight dot products. Returns the largest score. */
static float score_keys(const float *query, const float *keys_base, Py_ssize_t keys, Py_ssize_t dim, float scale,
                        float *scores) {
    __m256 peak8 = _mm256_set1_ps(-INFINITY);
    const __m256 scale8 = _mm256_set1_ps(scale);
    Py_ssize_t t = 0;
    for (; t + 8 <= keys; t += 8) {
        const float *key = keys_base + t * dim;
        __m256 a[8];
        for (int j = 0; j < 8; j++) a[j] = _mm256_setzero_ps();
        for (Py_ssize_t i = 0; i < dim; i += 8) {
            const __m256 qv = _mm256_loadu_ps(query + i);
            for (int j = 0; j < 8; j++) a[j] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(key + j * dim + i), a[j]);
        }
        const __m256 s = _mm256_mul_ps(sums_of_eight(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]), scale8);
        _mm256_storeu_ps(scores + t, s);
        peak8 = _mm256_max_ps(peak8, s);
    }
    float peak = -INFINITY;
    float lanes[8];
    _mm256_storeu_ps(lanes, peak8);
    for (int j = 0; j < 8; j++) peak = fmaxf(peak, lanes[j]);
    for (; t < keys; t++) {
        scores[t] = scale * dot_f32(query, keys_base + t * dim, dim);
        peak = fmaxf(peak, scores[t]);
    }
    return peak;
}
#endif

/* Returns 0, or -1 when a thread's score buffer could not be allocated. */
static int attend(const float *q, const float *k, const float *v, float *out, Py_ssize_t count, Py_ssize_t heads,
                  Py_ssize_t kv_heads, Py_ssize_t dim, Py_ssize_t capacity, Py_ssize_t start, float scale, int threads) {
    const Py_ssize_t group = heads / kv_heads, tasks = count * heads;
    int failed = 0;
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel num_threads(tasks < threads ? (int)tasks : threads) reduction(| : failed)
#endif
    {
        float *scores = PyMem_RawMalloc(sizeof(float) * (size_t)(start + count));
        if (scores == NULL) {
            failed = 1;
        } else {
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
            for (Py_ssize_t task = 0; task < tasks; task++) {
                const Py_ssize_t r = task / heads, h = task % heads, keys = start + r + 1;
                const float *query = q + task * dim;
                const float *head_k = k + (h / group) * capacity * dim, *head_v = v + (h / group) * capacity * dim;
                float peak = -INFINITY;
#ifdef DS_AVX2
                if (dim % 8 == 0) {
                    peak = score_keys(query, head_k, keys, dim, scale, scores);
                } else
#endif
                {
                    for (Py_ssize_t t = 0; t < keys; t++) {
                        scores[t] = scale * dot_f32(query, head_k + t * dim, dim);
                        peak = fmaxf(peak, scores[t]);
                    }
                }
                const float total = exponentiate(scores, keys, peak);
                weigh_values(scores, head_v, keys, dim, total, out + task * dim);
            }
            PyMem_RawFree(scores);
        }
    }
    return failed ? -1 : 0;
}

static PyObject *py_attend(PyObject *self, PyObject *args) {
    Py_ssize_t count, heads, kv_heads, dim, start;
    float scale;
    int threads;
    Py_buffer q, k, v, out;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*y*w*nnnnnfi", &q, &k, &v, &out, &count, &heads, &kv_heads, &dim, &start, &scale,
                          &threads))
        return NULL;
    const char *problem = NULL;
    const Py_ssize_t head_bytes = kv_heads > 0 && dim > 0 ? kv_heads * dim * 4 : 1;
    const Py_ssize_t capacity = k.len / head_bytes;
    if (count < 1 || heads < 1 || kv_heads < 1 || dim < 1) problem = "count, heads, kv_heads and dim must be positive";
    else if (heads % kv_heads != 0) problem = "heads must be a multiple of kv_heads";
    else if (start < 0) problem = "start must not be negative";
    else if (threads < 1) problem = "threads must be positive";
    else if (k.len % head_bytes != 0 || v.len != k.len) problem = "k and v must be (kv_heads, capacity, dim) fp32";
    else if (start + count > capacity) problem = "start + count exceeds the cache's capacity";
    else if (q.len != count * heads * dim * 4) problem = "q is not (count, heads, dim) fp32";
    else if (out.len != q.len) problem = "out is not (count, heads, dim) fp32";
    int failed = 0;
    if (problem == NULL) {
        Py_BEGIN_ALLOW_THREADS
        failed = attend(q.buf, k.buf, v.buf, out.buf, count, heads, kv_heads, dim, capacity, start, scale, threads);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&q);
    PyBuffer_Release(&k);
    PyBuffer_Release(&v);
    PyBuffer_Release(&out);
    return call_result(problem, failed);
}

/* ---- A whole decode step's layers in one call ----

   For one token, each Llama layer is: RMSNorm, the fused q/k/v product, RoPE on q and k, the new
   key and value written to the cache, attention, the output product added to the residual,
   RMSNorm, the fused gate/up product, SiLU(gate) * up, the down product added to the residual.
   Called op by op from NumPy that is about twenty calls a layer of a few microseconds each, as
   much time as the products themselves on a model as small as the shipped one. Here it is one
   call for every layer; the arithmetic is the same as core/blas_decode.py's, in the same order
   per value except for sums. */

static void matmul_any(int kind, const char *w, const float *scales, const float *x, float *y, Py_ssize_t out,
                       Py_ssize_t in, Py_ssize_t n, int threads) {
    if (kind == KIND_F16) matmul_f16(w, x, y, out, in, n, threads);
    else if (kind == KIND_BF16) matmul_bf16(w, x, y, out, in, n, threads);
    else matmul_i8(w, scales, x, y, out, in, n, threads);
}

#ifdef DS_AVX2
/* e^x in eight lanes for any x (clamped to [-87, 88], where 2^n stays a normal float). */
static inline __m256 exp8(__m256 x) {
    return exp8_nonpositive(_mm256_min_ps(x, _mm256_set1_ps(88.0f)));
}
#endif

/* out = x / rms(x) * weight, over n values. */
static void rms_norm(const float *x, const float *weight, Py_ssize_t n, float eps, float *out) {
    double squares = 0.0;
    for (Py_ssize_t i = 0; i < n; i++) squares += (double)x[i] * x[i];
    const float inverse = 1.0f / sqrtf((float)(squares / n) + eps);
    for (Py_ssize_t i = 0; i < n; i++) out[i] = x[i] * inverse * weight[i];
}

/* act[i] = silu(gate[i]) * up[i] = gate / (1 + e^-gate) * up. */
static void silu_times(const float *gate, const float *up, Py_ssize_t n, float *act) {
    Py_ssize_t i = 0;
#ifdef DS_AVX2
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
        _mm256_storeu_ps(act + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_loadu_ps(up + i)));
    }
#endif
    for (; i < n; i++) act[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

/* Rotate the rows' (re, im) pairs by the position's (cos, sin) pairs, each head alike. */
static void rotate_pairs(float *qk, Py_ssize_t heads, Py_ssize_t dim, const float *rope) {
    for (Py_ssize_t h = 0; h < heads; h++) {
        float *row = qk + h * dim;
        for (Py_ssize_t i = 0; i < dim; i += 2) {
            const float a = row[i], b = row[i + 1], c = rope[i], s = rope[i + 1];
            row[i] = a * c - b * s;
            row[i + 1] = a * s + b * c;
        }
    }
}

typedef struct {
    Py_buffer input_norm, qkv, qkv_scales, o, o_scales, post_norm, gate_up, gate_up_scales, down, down_scales;
} LayerBuffers;

static void release_layer(LayerBuffers *b) {
    Py_buffer *all[] = {&b->input_norm, &b->qkv, &b->qkv_scales, &b->o, &b->o_scales, &b->post_norm,
                        &b->gate_up, &b->gate_up_scales, &b->down, &b->down_scales};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) PyBuffer_Release(all[i]);
}

typedef struct {
    int kind, threads;
    Py_ssize_t hidden, heads, kv_heads, dim, mlp, capacity, start;
    float eps, scale;
} StepShape;

/* One layer for one token: x (hidden) is the residual stream, updated in place. */
static int decode_layer(const StepShape *s, const LayerBuffers *b, float *x, const float *rope, float *k_layer,
                        float *v_layer, float *scratch) {
    const Py_ssize_t q_size = s->heads * s->dim, kv_size = s->kv_heads * s->dim;
    const Py_ssize_t qkv_size = q_size + 2 * kv_size;
    float *h = scratch, *qkv = h + s->hidden, *attn = qkv + qkv_size, *gate_up = attn + q_size,
          *act = gate_up + 2 * s->mlp, *delta = act + s->mlp;
    const float *no_scales = NULL;
    rms_norm(x, b->input_norm.buf, s->hidden, s->eps, h);
    matmul_any(s->kind, b->qkv.buf, b->qkv_scales.len ? b->qkv_scales.buf : no_scales, h, qkv, qkv_size, s->hidden,
               1, s->threads);
    rotate_pairs(qkv, s->heads + s->kv_heads, s->dim, rope);
    for (Py_ssize_t kh = 0; kh < s->kv_heads; kh++) {
        memcpy(k_layer + (kh * s->capacity + s->start) * s->dim, qkv + q_size + kh * s->dim, sizeof(float) * s->dim);
        memcpy(v_layer + (kh * s->capacity + s->start) * s->dim, qkv + q_size + kv_size + kh * s->dim,
               sizeof(float) * s->dim);
    }
    if (attend(qkv, k_layer, v_layer, attn, 1, s->heads, s->kv_heads, s->dim, s->capacity, s->start, s->scale,
               s->threads) != 0)
        return -1;
    matmul_any(s->kind, b->o.buf, b->o_scales.len ? b->o_scales.buf : no_scales, attn, delta, s->hidden, q_size, 1,
               s->threads);
    for (Py_ssize_t i = 0; i < s->hidden; i++) x[i] += delta[i];
    rms_norm(x, b->post_norm.buf, s->hidden, s->eps, h);
    matmul_any(s->kind, b->gate_up.buf, b->gate_up_scales.len ? b->gate_up_scales.buf : no_scales, h, gate_up,
               2 * s->mlp, s->hidden, 1, s->threads);
    silu_times(gate_up, gate_up + s->mlp, s->mlp, act);
    matmul_any(s->kind, b->down.buf, b->down_scales.len ? b->down_scales.buf : no_scales, act, delta, s->hidden,
               s->mlp, 1, s->threads);
    for (Py_ssize_t i = 0; i < s->hidden; i++) x[i] += delta[i];
    return 0;
}

/* Why a layer's buffers do not fit the step's shape, or NULL. */
static const char *layer_problem(const StepShape *s, const LayerBuffers *b) {
    const Py_ssize_t e = ELEMENT_BYTES[s->kind], q_size = s->heads * s->dim;
    const Py_ssize_t qkv_size = q_size + 2 * s->kv_heads * s->dim;
    const int int8 = s->kind == KIND_I8;
    if (b->input_norm.len != s->hidden * 4 || b->post_norm.len != s->hidden * 4) return "norms are not hidden fp32";
    if (b->qkv.len != qkv_size * s->hidden * e) return "qkv is not (q + k + v) x hidden";
    if (b->o.len != s->hidden * q_size * e) return "o is not hidden x (heads * dim)";
    if (b->gate_up.len != 2 * s->mlp * s->hidden * e) return "gate_up is not (2 * mlp) x hidden";
    if (b->down.len != s->hidden * s->mlp * e) return "down is not hidden x mlp";
    if (b->qkv_scales.len != (int8 ? qkv_size * 4 : 0) || b->o_scales.len != (int8 ? s->hidden * 4 : 0) ||
        b->gate_up_scales.len != (int8 ? 2 * s->mlp * 4 : 0) || b->down_scales.len != (int8 ? s->hidden * 4 : 0))
        return "int8 matrices need one fp32 scale a row; 16-bit ones none";
    return NULL;
}

static PyObject *py_decode_layers(PyObject *self, PyObject *args) {
    StepShape s;
    PyObject *layers;
    Py_buffer x, rope, k_cache, v_cache;
    (void)self;
    if (!PyArg_ParseTuple(args, "iw*O!y*w*w*nnnnnnffi", &s.kind, &x, &PyList_Type, &layers, &rope, &k_cache, &v_cache,
                          &s.hidden, &s.heads, &s.kv_heads, &s.dim, &s.mlp, &s.start, &s.eps, &s.scale, &s.threads))
        return NULL;
    const Py_ssize_t count = PyList_GET_SIZE(layers);
    const Py_ssize_t layer_bytes = count > 0 && s.kv_heads > 0 && s.dim > 0 ? count * s.kv_heads * s.dim * 4 : 1;
    s.capacity = k_cache.len / layer_bytes;
    const char *problem = NULL;
    if (s.kind < KIND_F16 || s.kind > KIND_I8) problem = "kind must be 0 (fp16), 1 (bf16) or 2 (int8)";
    else if (count < 1) problem = "no layers";
    else if (s.hidden < BLOCK || s.hidden % BLOCK || s.mlp < BLOCK || s.mlp % BLOCK || s.dim < 2 || s.dim % 2 ||
             s.heads < 1 || s.kv_heads < 1 || s.heads % s.kv_heads || (s.heads * s.dim) % BLOCK)
        problem = "shape does not fit the kernels (hidden, mlp and heads * dim in blocks of 32, heads in kv groups)";
    else if (s.threads < 1) problem = "threads must be positive";
    else if (x.len != s.hidden * 4) problem = "x is not hidden fp32";
    else if (rope.len != s.dim * 4) problem = "rope is not dim / 2 complex64";
    else if (k_cache.len % layer_bytes || v_cache.len != k_cache.len) problem = "caches are not (layers, kv_heads, capacity, dim) fp32";
    else if (s.start < 0 || s.start >= s.capacity) problem = "start is outside the cache";
    LayerBuffers *buffers = problem ? NULL : PyMem_Calloc((size_t)count, sizeof(LayerBuffers));
    int failed = problem == NULL && buffers == NULL;
    Py_ssize_t acquired = 0; /* layers whose buffers are held (a failed parse holds none) */
    for (; problem == NULL && !failed && acquired < count; acquired++) {
        LayerBuffers *b = &buffers[acquired];
        if (!PyArg_ParseTuple(PyList_GET_ITEM(layers, acquired), "y*y*y*y*y*y*y*y*y*y*", &b->input_norm, &b->qkv,
                              &b->qkv_scales, &b->o, &b->o_scales, &b->post_norm, &b->gate_up, &b->gate_up_scales,
                              &b->down, &b->down_scales)) {
            problem = "a layer is not a tuple of ten buffers";
            PyErr_Clear();
            break;
        }
        problem = layer_problem(&s, b);
    }
    if (problem == NULL && !failed) {
        const Py_ssize_t q_size = s.heads * s.dim, qkv_size = q_size + 2 * s.kv_heads * s.dim;
        float *scratch = PyMem_RawMalloc(sizeof(float) * (size_t)(2 * s.hidden + qkv_size + q_size + 3 * s.mlp));
        if (scratch == NULL) {
            failed = 1;
        } else {
            const Py_ssize_t stride = s.kv_heads * s.capacity * s.dim;
            Py_BEGIN_ALLOW_THREADS
            for (Py_ssize_t i = 0; i < count && !failed; i++)
                failed = decode_layer(&s, &buffers[i], x.buf, rope.buf, (float *)k_cache.buf + i * stride,
                                      (float *)v_cache.buf + i * stride, scratch) != 0;
            Py_END_ALLOW_THREADS
            PyMem_RawFree(scratch);
        }
    }
    for (Py_ssize_t i = 0; i < acquired; i++) release_layer(&buffers[i]);
    PyMem_Free(buffers);
    PyBuffer_Release(&x);
    PyBuffer_Release(&rope);
    PyBuffer_Release(&k_cache);
    PyBuffer_Release(&v_cache);
    return call_result(problem, failed);
}

static PyObject *py_simd(PyObject *self, PyObject *unused) {
    (void)self, (void)unused;
#ifdef DS_AVX2
    return PyUnicode_FromString("avx2");
#else
    return PyUnicode_FromString("portable");
#endif
}

static PyObject *py_openmp(PyObject *self, PyObject *unused) {
    (void)self, (void)unused;
#ifdef _OPENMP
    Py_RETURN_TRUE;
#else
    Py_RETURN_FALSE;
#endif
}

static PyMethodDef METHODS[] = {
    {"matmul", py_matmul, METH_VARARGS,
     "matmul(kind, w, scales, x, y, out, in, n, threads): y (n x out) = x (n x in) @ W.T [* scales], "
     "W laid out in groups of four rows interleaved by blocks of 32 columns"},
    {"attend", py_attend, METH_VARARGS,
     "attend(q, k, v, out, count, heads, kv_heads, dim, start, scale, threads): causal softmax attention of "
     "count query rows at positions start.. over one layer's (kv_heads, capacity, dim) fp32 KV cache"},
    {"decode_layers", py_decode_layers, METH_VARARGS,
     "decode_layers(kind, x, layers, rope, k_cache, v_cache, hidden, heads, kv_heads, dim, mlp, start, eps, scale, "
     "threads): every Llama layer for one token, x (hidden fp32) updated in place; each layer a tuple (input_norm, "
     "qkv, qkv_scales, o, o_scales, post_norm, gate_up, gate_up_scales, down, down_scales)"},
    {"simd", py_simd, METH_NOARGS, "'avx2' when the loops are vectorized, else 'portable'"},
    {"openmp", py_openmp, METH_NOARGS, "True when output rows are shared among threads"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "core._kernels", NULL, -1, METHODS, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&MODULE); }
