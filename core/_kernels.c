/* The Python face of the C kernels: argument checks, the choice of CPU variant, and the calls.

The loops themselves are in core/_kernels_body.h, compiled once per variant (core/_kernels_portable.c,
_kernels_avx2.c, _kernels_avx512.c) so that one build runs its fastest loops on any x86-64 CPU: the
variant is picked when the module loads from what the CPU reports (CPUID, and the OS saving the
vector registers), the fastest it runs; ``set_variant`` picks another (tests run each one, a
benchmark compares them). core/compact_weights.py wraps these calls for Python.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_kernels.h"

#ifdef DS_X86_VARIANTS
#include <cpuid.h>
#endif

/* Variants from slowest to fastest; which of them this CPU runs is probed once. */
static const KernelTable *const VARIANTS[] = {
    &KERNELS_PORTABLE,
#ifdef DS_X86_VARIANTS
    &KERNELS_AVX2,
    &KERNELS_AVX512,
#endif
};
#define VARIANT_COUNT ((int)(sizeof VARIANTS / sizeof VARIANTS[0]))
static int runnable[VARIANT_COUNT];
static const KernelTable *active = &KERNELS_PORTABLE;

#ifdef DS_X86_VARIANTS
static unsigned long long enabled_state(void) { /* XCR0: which register states the OS saves */
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}
#endif

/* Fill ``runnable``: the portable loops anywhere; AVX2 with FMA and F16C where the OS saves the
   256-bit registers; AVX512 F/BW/VL/DQ + BF16 + VNNI where it saves the 512-bit ones too. */
static void probe_cpu(void) {
    runnable[0] = 1;
#ifdef DS_X86_VARIANTS
    unsigned int a, b, c, d, max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf < 7 || !__get_cpuid(1, &a, &b, &c, &d)) return;
    const int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return;
    const unsigned long long xcr0 = enabled_state();
    if ((xcr0 & 0x6) != 0x6) return; /* SSE and AVX state */
    __cpuid_count(7, 0, a, b, c, d);
    const int avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1,
              avx512vl = (b >> 31) & 1, vnni = (c >> 11) & 1;
    const unsigned int subleaves = a;
    int bf16 = 0;
    if (subleaves >= 1) {
        __cpuid_count(7, 1, a, b, c, d);
        bf16 = (a >> 5) & 1;
    }
    runnable[1] = avx2 && fma && f16c;
    runnable[2] = runnable[1] && (xcr0 & 0xe6) == 0xe6 && avx512f && avx512dq && avx512bw && avx512vl && vnni &&
                  bf16;
#endif
}

static PyObject *py_variants(PyObject *self, PyObject *unused) {
    (void)self, (void)unused;
    PyObject *names = PyList_New(0);
    for (int i = 0; names != NULL && i < VARIANT_COUNT; i++) {
        if (!runnable[i]) continue;
        PyObject *name = PyUnicode_FromString(VARIANTS[i]->name);
        if (name == NULL || PyList_Append(names, name) != 0) Py_CLEAR(names);
        Py_XDECREF(name);
    }
    if (names == NULL) return NULL;
    PyObject *result = PyList_AsTuple(names);
    Py_DECREF(names);
    return result;
}

static PyObject *py_set_variant(PyObject *self, PyObject *args) {
    const char *name;
    (void)self;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    for (int i = 0; i < VARIANT_COUNT; i++) {
        if (strcmp(VARIANTS[i]->name, name) != 0) continue;
        if (!runnable[i]) {
            PyErr_Format(PyExc_ValueError, "this CPU cannot run the %s kernels (see variants())", name);
            return NULL;
        }
        active = VARIANTS[i];
        Py_RETURN_NONE;
    }
    PyErr_Format(PyExc_ValueError, "no kernel variant %s in this build (see variants())", name);
    return NULL;
}

static PyObject *py_simd(PyObject *self, PyObject *unused) {
    (void)self, (void)unused;
    return PyUnicode_FromString(active->name);
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
    int kind, threads, failed = 0;
    Py_ssize_t out, in, n;
    Py_buffer w, scales, x, y;
    (void)self;
    if (!PyArg_ParseTuple(args, "iy*y*y*w*nnni", &kind, &w, &scales, &x, &y, &out, &in, &n, &threads)) return NULL;
    const char *problem = NULL;
    if (kind < KIND_F16 || kind > KIND_I4) problem = "kind must be 0 (fp16), 1 (bf16), 2 (int8) or 3 (int4)";
    else if (n < 1 || n > MAX_ROWS) problem = "between 1 and 8 activation rows";
    else if (out < 4 || out % 4 != 0) problem = "out must be a positive multiple of 4";
    else if (in < BLOCK || in % BLOCK != 0) problem = "in must be a positive multiple of 32";
    else if (threads < 1) problem = "threads must be positive";
    else if (w.len != weight_bytes(kind, out * in)) problem = "weights are not out x in elements";
    else if (scales.len != scale_bytes(kind, out, in))
        problem = "int8 needs out fp32 scales, int4 out x in / 32 fp16 scales, 16-bit none";
    else if (x.len != n * in * 4) problem = "activations are not n x in fp32";
    else if (y.len != n * out * 4) problem = "output is not n x out fp32";
    if (problem == NULL) {
        const KernelTable *kernels = active;
        Py_BEGIN_ALLOW_THREADS
        failed = kernels->matmul(kind, w.buf, scales.len ? scales.buf : NULL, x.buf, y.buf, out, in, n, threads);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&w);
    PyBuffer_Release(&scales);
    PyBuffer_Release(&x);
    PyBuffer_Release(&y);
    return call_result(problem, failed);
}

static PyObject *py_attend(PyObject *self, PyObject *args) {
    Py_ssize_t count, heads, kv_heads, dim, start;
    float scale;
    int threads, kv_kind = KV_F32;
    Py_buffer q, k, v, out;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*y*w*nnnnnfi|i", &q, &k, &v, &out, &count, &heads, &kv_heads, &dim, &start, &scale,
                          &threads, &kv_kind))
        return NULL;
    const char *problem = NULL;
    const Py_ssize_t head_bytes = kv_heads > 0 && dim > 0 ? kv_heads * kv_row_bytes(kv_kind, dim) : 1;
    const Py_ssize_t capacity = k.len / head_bytes;
    if (kv_kind < KV_F32 || kv_kind > KV_I8) problem = "kv_kind must be 0 (fp32), 1 (bf16), 2 (fp16) or 3 (int8 rows)";
    else if (count < 1 || heads < 1 || kv_heads < 1 || dim < 1) problem = "count, heads, kv_heads and dim must be positive";
    else if (heads % kv_heads != 0) problem = "heads must be a multiple of kv_heads";
    else if (start < 0) problem = "start must not be negative";
    else if (threads < 1) problem = "threads must be positive";
    else if (k.len % head_bytes != 0 || v.len != k.len) problem = "k and v must be (kv_heads, capacity, dim) of kv_kind";
    else if (start + count > capacity) problem = "start + count exceeds the cache's capacity";
    else if (q.len != count * heads * dim * 4) problem = "q is not (count, heads, dim) fp32";
    else if (out.len != q.len) problem = "out is not (count, heads, dim) fp32";
    int failed = 0;
    if (problem == NULL) {
        const KernelTable *kernels = active;
        Py_BEGIN_ALLOW_THREADS
        failed = kernels->attend(q.buf, k.buf, v.buf, kv_kind, out.buf, count, heads, kv_heads, dim, capacity, start, scale, threads);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&q);
    PyBuffer_Release(&k);
    PyBuffer_Release(&v);
    PyBuffer_Release(&out);
    return call_result(problem, failed);
}

typedef struct {
    Py_buffer input_norm, qkv, qkv_scales, o, o_scales, post_norm, gate_up, gate_up_scales, down, down_scales;
    Py_buffer input_norm_bias, post_norm_bias, qkv_bias, o_bias, gate_up_bias, down_bias; /* buf NULL: none */
} LayerBuffers;

static void release_layer(LayerBuffers *b) {
    Py_buffer *all[] = {&b->input_norm, &b->qkv, &b->qkv_scales, &b->o, &b->o_scales, &b->post_norm,
                        &b->gate_up, &b->gate_up_scales, &b->down, &b->down_scales, &b->input_norm_bias,
                        &b->post_norm_bias, &b->qkv_bias, &b->o_bias, &b->gate_up_bias, &b->down_bias};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) PyBuffer_Release(all[i]);
}

/* Why a layer's buffers do not fit the step's shape, or NULL. */
static const char *layer_problem(const StepShape *s, const LayerBuffers *b) {
    const int kind = s->kind;
    const Py_ssize_t q_size = s->heads * s->dim, qkv_size = q_size + 2 * s->kv_heads * s->dim;
    const Py_ssize_t mlp_in = s->gated ? 2 * s->mlp : s->mlp;
    if (b->input_norm.len != s->hidden * 4 || b->post_norm.len != s->hidden * 4) return "norms are not hidden fp32";
    if (b->qkv.len != weight_bytes(kind, qkv_size * s->hidden)) return "qkv is not (q + k + v) x hidden";
    if (b->o.len != weight_bytes(kind, s->hidden * q_size)) return "o is not hidden x (heads * dim)";
    if (b->gate_up.len != weight_bytes(kind, mlp_in * s->hidden))
        return "gate_up is not (2 * mlp) x hidden (gated) or mlp x hidden (plain)";
    if (b->down.len != weight_bytes(kind, s->hidden * s->mlp)) return "down is not hidden x mlp";
    if (b->qkv_scales.len != scale_bytes(kind, qkv_size, s->hidden) ||
        b->o_scales.len != scale_bytes(kind, s->hidden, q_size) ||
        b->gate_up_scales.len != scale_bytes(kind, mlp_in, s->hidden) ||
        b->down_scales.len != scale_bytes(kind, s->hidden, s->mlp))
        return "int8 matrices need one fp32 scale a row, int4 one fp16 scale a row's block; 16-bit ones none";
    const struct {
        const Py_buffer *bias;
        Py_ssize_t width;
    } biases[] = {{&b->input_norm_bias, s->hidden}, {&b->post_norm_bias, s->hidden}, {&b->qkv_bias, qkv_size},
                  {&b->o_bias, s->hidden},          {&b->gate_up_bias, mlp_in},    {&b->down_bias, s->hidden}};
    for (size_t i = 0; i < sizeof biases / sizeof biases[0]; i++)
        if (biases[i].bias->buf != NULL && biases[i].bias->len != biases[i].width * 4)
            return "a bias is not fp32 of its product's (or norm's) width";
    if (s->norm == NORM_RMS && (b->input_norm_bias.buf != NULL || b->post_norm_bias.buf != NULL))
        return "RMSNorm has no bias";
    return NULL;
}

static const void *scales_or_null(const Py_buffer *b) { return b->len ? b->buf : NULL; }
static const float *bias_or_null(const Py_buffer *b) { return b->buf; }

static PyObject *py_decode_layers(PyObject *self, PyObject *args) {
    StepShape s;
    PyObject *layers;
    Py_buffer x, rope, k_cache, v_cache;
    (void)self;
    s.norm = NORM_RMS, s.activation = ACT_SILU, s.gated = 1, s.rotary_dims = -1, s.window = 0; /* Llama's */
    s.kv_kind = KV_F32;
    if (!PyArg_ParseTuple(args, "iw*O!y*w*w*nnnnnnffi|iiinni", &s.kind, &x, &PyList_Type, &layers, &rope, &k_cache,
                          &v_cache, &s.hidden, &s.heads, &s.kv_heads, &s.dim, &s.mlp, &s.start, &s.eps, &s.scale,
                          &s.threads, &s.norm, &s.activation, &s.gated, &s.rotary_dims, &s.window, &s.kv_kind))
        return NULL;
    if (s.rotary_dims < 0) s.rotary_dims = s.dim;
    const Py_ssize_t count = PyList_GET_SIZE(layers);
    const Py_ssize_t layer_bytes =
        count > 0 && s.kv_heads > 0 && s.dim > 0 ? count * s.kv_heads * kv_row_bytes(s.kv_kind, s.dim) : 1;
    s.capacity = k_cache.len / layer_bytes;
    const char *problem = NULL;
    if (s.kind < KIND_F16 || s.kind > KIND_I4) problem = "kind must be 0 (fp16), 1 (bf16), 2 (int8) or 3 (int4)";
    else if (count < 1) problem = "no layers";
    else if (s.hidden < BLOCK || s.hidden % BLOCK || s.mlp < BLOCK || s.mlp % BLOCK || s.dim < 2 || s.dim % 2 ||
             s.heads < 1 || s.kv_heads < 1 || s.heads % s.kv_heads || (s.heads * s.dim) % BLOCK)
        problem = "shape does not fit the kernels (hidden, mlp and heads * dim in blocks of 32, heads in kv groups)";
    else if (s.threads < 1) problem = "threads must be positive";
    else if (s.norm != NORM_RMS && s.norm != NORM_LAYER) problem = "norm must be 0 (RMSNorm) or 1 (LayerNorm)";
    else if (s.activation < ACT_SILU || s.activation > ACT_GELU) problem = "activation must be 0 (SiLU), 1 (GELU tanh) or 2 (GELU)";
    else if (s.rotary_dims < 2 || s.rotary_dims > s.dim || s.rotary_dims % 2) problem = "rotary_dims must be even, 2 to dim";
    else if (s.window < 0) problem = "window must not be negative";
    else if (s.kv_kind < KV_F32 || s.kv_kind > KV_I8) problem = "kv_kind must be 0 (fp32), 1 (bf16), 2 (fp16) or 3 (int8 rows)";
    else if (x.len != s.hidden * 4) problem = "x is not hidden fp32";
    else if (rope.len != s.rotary_dims * 4) problem = "rope is not rotary_dims / 2 complex64";
    else if (k_cache.len % layer_bytes || v_cache.len != k_cache.len) problem = "caches are not (layers, kv_heads, capacity, dim) of kv_kind";
    else if (s.start < 0 || s.start >= s.capacity) problem = "start is outside the cache";
    LayerBuffers *buffers = problem ? NULL : PyMem_Calloc((size_t)count, sizeof(LayerBuffers));
    int failed = problem == NULL && buffers == NULL;
    Py_ssize_t acquired = 0; /* layers whose buffers are held (a failed parse holds none) */
    for (; problem == NULL && !failed && acquired < count; acquired++) {
        LayerBuffers *b = &buffers[acquired];
        PyObject *layer = PyList_GET_ITEM(layers, acquired);
        if (!PyTuple_Check(layer) ||
            !PyArg_ParseTuple(layer, "y*y*y*y*y*y*y*y*y*y*|z*z*z*z*z*z*", &b->input_norm, &b->qkv, &b->qkv_scales, &b->o,
                              &b->o_scales, &b->post_norm, &b->gate_up, &b->gate_up_scales, &b->down, &b->down_scales,
                              &b->input_norm_bias, &b->post_norm_bias, &b->qkv_bias, &b->o_bias, &b->gate_up_bias,
                              &b->down_bias)) {
            problem = "a layer is not a tuple of ten buffers (then up to six biases, each a buffer or None)";
            PyErr_Clear();
            break;
        }
        problem = layer_problem(&s, b);
    }
    LayerPointers *pointers = problem || failed ? NULL : PyMem_Calloc((size_t)count, sizeof(LayerPointers));
    if (problem == NULL && !failed && pointers == NULL) failed = 1;
    if (problem == NULL && !failed) {
        for (Py_ssize_t i = 0; i < count; i++) {
            const LayerBuffers *b = &buffers[i];
            pointers[i] = (LayerPointers){b->input_norm.buf, b->post_norm.buf, b->qkv.buf, b->o.buf, b->gate_up.buf,
                                          b->down.buf, scales_or_null(&b->qkv_scales), scales_or_null(&b->o_scales),
                                          scales_or_null(&b->gate_up_scales), scales_or_null(&b->down_scales),
                                          bias_or_null(&b->input_norm_bias), bias_or_null(&b->post_norm_bias),
                                          bias_or_null(&b->qkv_bias), bias_or_null(&b->o_bias),
                                          bias_or_null(&b->gate_up_bias), bias_or_null(&b->down_bias)};
        }
        const KernelTable *kernels = active;
        Py_BEGIN_ALLOW_THREADS
        failed = kernels->decode_layers(&s, pointers, count, x.buf, rope.buf, k_cache.buf, v_cache.buf) != 0;
        Py_END_ALLOW_THREADS
    }
    PyMem_Free(pointers);
    for (Py_ssize_t i = 0; i < acquired; i++) release_layer(&buffers[i]);
    PyMem_Free(buffers);
    PyBuffer_Release(&x);
    PyBuffer_Release(&rope);
    PyBuffer_Release(&k_cache);
    PyBuffer_Release(&v_cache);
    return call_result(problem, failed);
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
     "matmul(kind, w, scales, x, y, out, in, n, threads): y (n x out) = x (n x in) @ W.T, W of kind 0 (fp16), "
     "1 (bf16), 2 (int8, one fp32 scale a row) or 3 (int4, one fp16 scale a row's block of 32), laid out in groups "
     "of four rows interleaved by blocks of 32 columns"},
    {"attend", py_attend, METH_VARARGS,
     "attend(q, k, v, out, count, heads, kv_heads, dim, start, scale, threads, kv_kind=0): causal softmax "
     "attention of count query rows at positions start.. over one layer's (kv_heads, capacity, dim) KV cache of "
     "kv_kind 0 (fp32), 1 (bf16) or 2 (fp16), widened to fp32 as read"},
    {"decode_layers", py_decode_layers, METH_VARARGS,
     "decode_layers(kind, x, layers, rope, k_cache, v_cache, hidden, heads, kv_heads, dim, mlp, start, eps, scale, "
     "threads, norm=0, activation=0, gated=1, rotary_dims=dim, window=0): every layer for one token, x (hidden fp32) "
     "updated in place; each layer a tuple (input_norm, qkv, qkv_scales, o, o_scales, post_norm, gate_up, "
     "gate_up_scales, down, down_scales[, input_norm_bias, post_norm_bias, qkv_bias, o_bias, gate_up_bias, "
     "down_bias]), a bias None where absent; norm 0 RMSNorm / 1 LayerNorm, activation 0 SiLU / 1 GELU (tanh) / "
     "2 GELU, gated 0 for act(fc), window 0 for every cached key, kv_kind 0 (fp32) / 1 (bf16) / 2 (fp16) the "
     "caches' elements (the new key and value rounded to nearest even)"},
    {"simd", py_simd, METH_NOARGS,
     "the variant the calls run: 'avx512bf16', 'avx2' (vectorized) or 'portable' (plain C)"},
    {"variants", py_variants, METH_NOARGS, "the variants this build and CPU run, slowest first"},
    {"set_variant", py_set_variant, METH_VARARGS,
     "set_variant(name): run the named variant from now on (ValueError where the CPU or build lacks it)"},
    {"openmp", py_openmp, METH_NOARGS, "True when output rows are shared among threads"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "core._kernels", NULL, -1, METHODS, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__kernels(void) {
    probe_cpu();
    for (int i = 0; i < VARIANT_COUNT; i++)
        if (runnable[i]) active = VARIANTS[i];
    return PyModule_Create(&MODULE);
}
