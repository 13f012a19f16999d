// Reference quantized kernels: the project's exact statement of quantized arithmetic.
//
// Built by the package build into harness._kernels. No torch: tensors cross the boundary as
// Python buffers (the Python side, harness/reference/primitives.py, checks shapes, dtypes and qparams
// before calling; these functions check buffer sizes again and raise ValueError, never crash).
//
// Rounding is half to even (nearbyint / lrint under the default rounding mode) and every
// result saturates to its quantized range, unless a function documents another rule.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "gemm.h"

// One build runs on any x86-64: the hot integer dot products (gemm.cpp) have AVX512-VNNI and
// AVX2 versions, compiled for those ISAs by function attributes (not by -march), and chosen at
// run time from what the CPU reports (see bc::Isa). Every version computes the same int32 sums.

namespace {

// ---------------------------------------------------------------------------------------
// buffers

struct Buffer {
  Py_buffer view{};
  bool held = false;
  ~Buffer() {
    if (held) PyBuffer_Release(&view);
  }
  bool get(PyObject* obj, bool writable, const char* name, Py_ssize_t expected_bytes) {
    if (PyObject_GetBuffer(obj, &view, writable ? PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS : PyBUF_C_CONTIGUOUS) != 0) {
      return false;
    }
    held = true;
    if (expected_bytes >= 0 && view.len != expected_bytes) {
      PyErr_Format(PyExc_ValueError, "%s: buffer holds %zd bytes, expected %zd", name, view.len, expected_bytes);
      return false;
    }
    return true;
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(view.buf);
  }
};

bool check(bool ok, const char* message) {
  if (!ok) PyErr_SetString(PyExc_ValueError, message);
  return ok;
}

// element type codes shared with harness/reference/primitives.py
enum Dtype { U8 = 0, S8 = 1, S32 = 2 };

Py_ssize_t itemsize(int dtype) { return dtype == S32 ? 4 : 1; }

bool valid_dtype(int dtype) { return dtype == U8 || dtype == S8 || dtype == S32; }

inline void store(void* dst, int dtype, Py_ssize_t i, int64_t v) {
  if (dtype == U8) static_cast<uint8_t*>(dst)[i] = static_cast<uint8_t>(v);
  else if (dtype == S8) static_cast<int8_t*>(dst)[i] = static_cast<int8_t>(v);
  else static_cast<int32_t*>(dst)[i] = static_cast<int32_t>(v);
}

inline int64_t load(const void* src, int dtype, Py_ssize_t i) {
  if (dtype == U8) return static_cast<const uint8_t*>(src)[i];
  if (dtype == S8) return static_cast<const int8_t*>(src)[i];
  return static_cast<const int32_t*>(src)[i];
}

// ---------------------------------------------------------------------------------------
// quantize / dequantize, per tensor (channels == 1) or per channel: element i belongs to
// channel (i / inner) % channels.
//
// quantize: q = clamp(float(zp) + nearbyint(x * (1.0f / float(scale))), qmin, qmax), the float
// arithmetic of ATen's quantize_val and fbgemm's Quantize; with divide, q = clamp(nearbyint(
// double(x) / scale) + zp), the rule fbgemm's dynamic linear quantizes its input by.
// dequantize: per tensor x = float(q - zp) * float(scale); per channel the product is taken in
// double with the double scale and rounded once (ATen's per-channel dequantize does so).
// Scales arrive as float32 for quantize and float64 for dequantize.

PyObject* quantize(PyObject*, PyObject* args) {
  PyObject *src_o, *dst_o, *scales_o, *zps_o;
  int dtype;
  Py_ssize_t inner, channels;
  long long qmin, qmax;
  int divide = 0;
  if (!PyArg_ParseTuple(args, "OOiOOnnLL|p", &src_o, &dst_o, &dtype, &scales_o, &zps_o, &inner, &channels, &qmin,
                        &qmax, &divide))
    return nullptr;
  if (!check(valid_dtype(dtype), "quantize: unknown dtype code") || !check(inner > 0 && channels > 0, "quantize: inner and channels must be positive"))
    return nullptr;
  Buffer src, dst, scales, zps;
  if (!src.get(src_o, false, "src", -1)) return nullptr;
  Py_ssize_t n = src.view.len / 4;
  if (!check(src.view.len % 4 == 0, "quantize: src is not float32")) return nullptr;
  if (!dst.get(dst_o, true, "dst", n * itemsize(dtype)) || !scales.get(scales_o, false, "scales", channels * 4) ||
      !zps.get(zps_o, false, "zero_points", channels * 8))
    return nullptr;
  const float* x = src.as<float>();
  const float* s = scales.as<float>();
  const int64_t* z = zps.as<int64_t>();
  Py_BEGIN_ALLOW_THREADS
  for (Py_ssize_t i = 0; i < n; ++i) {
    Py_ssize_t c = (i / inner) % channels;
    double t;
    if (divide) {  // fbgemm's dynamic input rule: x / scale in double, rounded, plus the zero point
      t = std::nearbyint(static_cast<double>(x[i]) / static_cast<double>(s[c])) + static_cast<double>(z[c]);
    } else {
      float inv = 1.0f / s[c];
      float r = std::nearbyint(x[i] * inv);
      t = static_cast<double>(static_cast<float>(z[c]) + r);
    }
    if (std::isnan(t)) t = 0;  // nan quantizes to the zero point's neighbourhood: pinned, not UB
    t = std::min(std::max(t, static_cast<double>(qmin)), static_cast<double>(qmax));
    store(dst.view.buf, dtype, i, static_cast<int64_t>(t));
  }
  Py_END_ALLOW_THREADS
  Py_RETURN_NONE;
}

PyObject* dequantize(PyObject*, PyObject* args) {
  PyObject *src_o, *dst_o, *scales_o, *zps_o;
  int dtype;
  Py_ssize_t inner, channels;
  int per_channel;
  if (!PyArg_ParseTuple(args, "OiOOOnnp", &src_o, &dtype, &dst_o, &scales_o, &zps_o, &inner, &channels, &per_channel))
    return nullptr;
  if (!check(valid_dtype(dtype), "dequantize: unknown dtype code") || !check(inner > 0 && channels > 0, "dequantize: inner and channels must be positive"))
    return nullptr;
  Buffer src, dst, scales, zps;
  if (!src.get(src_o, false, "src", -1)) return nullptr;
  Py_ssize_t n = src.view.len / itemsize(dtype);
  if (!check(src.view.len % itemsize(dtype) == 0, "dequantize: src size is not a whole number of elements")) return nullptr;
  if (!dst.get(dst_o, true, "dst", n * 4) || !scales.get(scales_o, false, "scales", channels * 8) ||
      !zps.get(zps_o, false, "zero_points", channels * 8))
    return nullptr;
  float* y = dst.as<float>();
  const double* s = scales.as<double>();
  const int64_t* z = zps.as<int64_t>();
  Py_BEGIN_ALLOW_THREADS
  if (!per_channel) {  // per tensor: float(q - zp) * float(scale)
    const float scale = static_cast<float>(s[0]);
    for (Py_ssize_t i = 0; i < n; ++i) y[i] = static_cast<float>(load(src.view.buf, dtype, i) - z[0]) * scale;
  } else {  // per channel: (q - zp) * scale in double, rounded once to float
    for (Py_ssize_t i = 0; i < n; ++i) {
      Py_ssize_t c = (i / inner) % channels;
      y[i] = static_cast<float>(static_cast<double>(load(src.view.buf, dtype, i) - z[c]) * s[c]);
    }
  }
  Py_END_ALLOW_THREADS
  Py_RETURN_NONE;
}

// ---------------------------------------------------------------------------------------
// requantization of int32 accumulators [rows, cols]; column j uses channel j % channels.
//
// requantize_float (fbgemm / x86): raw = float(acc) (+ bias_over_scale[j]); out = zp +
// lrintf(raw * multiplier[j]); clamp to [qmin, qmax] (qmin raised to zp when relu).
// bias_over_scale is the float bias divided (in float) by input_scale * weight_scale, the
// order fbgemm's ReQuantizeOutput uses for a float bias.

// 8-bit outputs: clamping before rounding gives the same integer (the bounds are integers and
// rounding is monotonic), and a clamped value rounds half to even exactly by adding and
// subtracting 1.5 * 2^23 (the float spacing there is 1): plain float operations the compiler
// vectorizes, where nearbyint is a library call per element on the baseline ISA.
template <typename T>
void requantize_row8(const int32_t* a, T* o, Py_ssize_t cols, const float* m, bool per_column, const float* b,
                     float flo, float fhi, long long zp) {
  constexpr float magic = 12582912.0f;  // 1.5 * 2^23
  const float m0 = m[0];
  for (Py_ssize_t j = 0; j < cols; ++j) {
    float raw = static_cast<float>(a[j]);
    if (b) raw += b[j];
    float v = raw * (per_column ? m[j] : m0);
    v = std::min(std::max(v, flo), fhi);
    o[j] = static_cast<T>(static_cast<int32_t>((v + magic) - magic) + zp);
  }
}

// One requantization: out dtype, multiplier (one, or one per column), optional bias over scale,
// zero point and bounds (the lower one raised to the zero point for relu).
struct Requant {
  int dtype;
  const float* m;
  Py_ssize_t channels;
  const float* b;
  long long zp, lo, hi;

  // columns [c0, c1) of `rows` rows of acc into out, both `ld` elements from one row to the next
  template <typename T>
  void block(const int32_t* acc, T* out, Py_ssize_t rows, Py_ssize_t ld, Py_ssize_t c0, Py_ssize_t c1) const {
    const float* mc = channels == 1 ? m : m + c0;
    const float* bc = b ? b + c0 : nullptr;
    for (Py_ssize_t row = 0; row < rows; ++row) {
      const int32_t* ar = acc + row * ld + c0;
      T* o = out + row * ld + c0;
      if constexpr (sizeof(T) == 1) {  // 8-bit bounds are exact in float
        const float flo = static_cast<float>(lo - zp), fhi = static_cast<float>(hi - zp);
        if (channels == 1) requantize_row8(ar, o, c1 - c0, mc, false, bc, flo, fhi, zp);
        else requantize_row8(ar, o, c1 - c0, mc, true, bc, flo, fhi, zp);
      } else {  // int32 bounds are not: round, then clamp in 64-bit integers
        for (Py_ssize_t j = 0; j < c1 - c0; ++j) {
          float raw = static_cast<float>(ar[j]);
          if (bc) raw += bc[j];
          float r = std::nearbyint(raw * mc[channels == 1 ? 0 : j]);
          double d = std::min(std::max(static_cast<double>(r), static_cast<double>(lo - zp)), static_cast<double>(hi - zp));
          o[j] = static_cast<T>(static_cast<long long>(d) + zp);
        }
      }
    }
  }

  void operator()(const int32_t* acc, void* out, Py_ssize_t rows, Py_ssize_t ld, Py_ssize_t c0, Py_ssize_t c1) const {
    if (dtype == U8) block(acc, static_cast<uint8_t*>(out), rows, ld, c0, c1);
    else if (dtype == S8) block(acc, static_cast<int8_t*>(out), rows, ld, c0, c1);
    else block(acc, static_cast<int32_t*>(out), rows, ld, c0, c1);
  }
};

// The requantization arguments both entry points take, checked; `mult` and `bias` hold the buffers.
bool parse_requant(const char* who, int dtype, PyObject* mult_o, PyObject* bias_o, Py_ssize_t cols,
                   Py_ssize_t channels, long long zp, long long qmin, long long qmax, int relu, Buffer& mult,
                   Buffer& bias, Requant& r) {
  if (!valid_dtype(dtype)) {
    PyErr_Format(PyExc_ValueError, "%s: unknown dtype code", who);
    return false;
  }
  if (!(cols > 0 && (channels == 1 || channels == cols))) {
    PyErr_Format(PyExc_ValueError, "%s: one multiplier or one per column", who);
    return false;
  }
  if (!mult.get(mult_o, false, "multiplier", channels * 4)) return false;
  const bool has_bias = bias_o != Py_None;
  if (has_bias && !bias.get(bias_o, false, "bias_over_scale", cols * 4)) return false;
  r = Requant{dtype, mult.as<float>(), channels, has_bias ? bias.as<float>() : nullptr, zp,
              relu ? std::max(qmin, zp) : qmin, qmax};
  return true;
}

PyObject* requantize_float(PyObject*, PyObject* args) {
  PyObject *acc_o, *dst_o, *mult_o, *bias_o;
  int dtype, relu;
  Py_ssize_t cols, channels;
  long long zp, qmin, qmax;
  if (!PyArg_ParseTuple(args, "OOiOOnnLLLp", &acc_o, &dst_o, &dtype, &mult_o, &bias_o, &cols, &channels, &zp, &qmin,
                        &qmax, &relu))
    return nullptr;
  Buffer acc, dst, mult, bias;
  Requant r{};
  if (!parse_requant("requantize_float", dtype, mult_o, bias_o, cols, channels, zp, qmin, qmax, relu, mult, bias, r))
    return nullptr;
  if (!acc.get(acc_o, false, "acc", -1)) return nullptr;
  Py_ssize_t n = acc.view.len / 4;
  if (!check(acc.view.len % 4 == 0 && n % cols == 0, "requantize_float: acc is not int32 [rows, cols]")) return nullptr;
  if (!dst.get(dst_o, true, "dst", n * itemsize(dtype))) return nullptr;
  Py_BEGIN_ALLOW_THREADS
  r(acc.as<int32_t>(), dst.view.buf, n / cols, cols, 0, cols);
  Py_END_ALLOW_THREADS
  Py_RETURN_NONE;
}

// requantize_q31 (qnnpack's fixed-point scheme): the float scale in [2^-32, 1) becomes a Q31
// multiplier (its 24-bit mantissa << 7) and a right shift; product = acc * multiplier in 64
// bits, rounded to Q31 (add 2^30, shift 31), then shifted right with rounding half away from
// zero, clamped, plus the zero point.

PyObject* requantize_q31(PyObject*, PyObject* args) {
  PyObject *acc_o, *dst_o;
  int dtype;
  float scale;
  long long zp, qmin, qmax;
  if (!PyArg_ParseTuple(args, "OOifLLL", &acc_o, &dst_o, &dtype, &scale, &zp, &qmin, &qmax)) return nullptr;
  if (!check(valid_dtype(dtype), "requantize_q31: unknown dtype code")) return nullptr;
  if (!check(scale >= 0x1.0p-32f && scale < 1.0f, "requantize_q31: scale must be in [2**-32, 1)")) return nullptr;
  Buffer acc, dst;
  if (!acc.get(acc_o, false, "acc", -1)) return nullptr;
  Py_ssize_t n = acc.view.len / 4;
  if (!dst.get(dst_o, true, "dst", n * itemsize(dtype))) return nullptr;
  uint32_t bits;
  std::memcpy(&bits, &scale, 4);
  const int32_t multiplier = static_cast<int32_t>(((bits & 0x007FFFFFu) | 0x00800000u) << 7);
  const int32_t shift = 127 + 31 - 32 - static_cast<int32_t>(bits >> 23);
  const int64_t remainder_mask = (int64_t{1} << shift) - 1;
  const int64_t threshold = remainder_mask >> 1;
  const int32_t* a = acc.as<int32_t>();
  Py_BEGIN_ALLOW_THREADS
  for (Py_ssize_t i = 0; i < n; ++i) {
    int64_t product = static_cast<int64_t>(a[i]) * multiplier;
    int32_t q31 = static_cast<int32_t>((product + (int64_t{1} << 30)) >> 31);
    int64_t remainder = (q31 & remainder_mask) - (q31 < 0 ? 1 : 0);
    int64_t scaled = (static_cast<int64_t>(q31) >> shift) + (remainder > threshold ? 1 : 0);
    const int64_t lo = static_cast<int64_t>(qmin) - static_cast<int64_t>(zp);
    const int64_t hi = static_cast<int64_t>(qmax) - static_cast<int64_t>(zp);
    int64_t r = std::min(std::max(scaled, lo), hi) + static_cast<int64_t>(zp);
    store(dst.view.buf, dtype, i, r);
  }
  Py_END_ALLOW_THREADS
  Py_RETURN_NONE;
}

// ---------------------------------------------------------------------------------------
// u8 x s8 matrix multiply (gemm.cpp): out[m, n] = sum_k (a[m, k] - a_zp) * (b[n, k] - b_zp[n]) in
// int32, b [N, K] row-major (a linear layer's weight); with saturate_pairs, the raw products
// summed in adjacent pairs saturated to int16 first, as AVX2's vpmaddubsw does (the reason
// fbgemm asks for reduce_range on such CPUs). Which version of the dot products runs: the best
// the CPU has, unless BC_HARNESS_KERNELS_ISA (portable, avx2, avx512vnni) or use_isa() asks for a
// lesser one. A version the CPU lacks is never chosen: asking for it is a ValueError, not an
// illegal instruction.

bool select_isa(const char* name) {
  if (bc::select_isa(name)) return true;
  std::string have;
  for (int i = 0; i <= bc::best_isa(); ++i) have += std::string(i ? ", " : "") + bc::isa_name(static_cast<bc::Isa>(i));
  PyErr_Format(PyExc_ValueError, "kernels ISA '%s' is not one this CPU runs (it has: %s)", name, have.c_str());
  return false;
}

PyObject* isa(PyObject*, PyObject*) { return PyUnicode_FromString(bc::isa_name(bc::current_isa())); }

PyObject* available_isas(PyObject*, PyObject*) {
  PyObject* out = PyList_New(0);
  for (int i = 0; out && i <= bc::best_isa(); ++i) {
    PyObject* name = PyUnicode_FromString(bc::isa_name(static_cast<bc::Isa>(i)));
    if (!name || PyList_Append(out, name) != 0) Py_CLEAR(out);
    Py_XDECREF(name);
  }
  return out;
}

PyObject* use_isa(PyObject*, PyObject* args) {
  const char* name;
  if (!PyArg_ParseTuple(args, "s", &name) || !select_isa(name)) return nullptr;
  return PyUnicode_FromString(bc::isa_name(bc::current_isa()));
}

PyObject* matmul_u8s8(PyObject*, PyObject* args) {
  PyObject *a_o, *b_o, *out_o, *bzp_o;
  Py_ssize_t M, K, N;
  int a_zp, saturate, threads = 0;
  if (!PyArg_ParseTuple(args, "OOOnnniOp|i", &a_o, &b_o, &out_o, &M, &K, &N, &a_zp, &bzp_o, &saturate, &threads))
    return nullptr;
  if (!check(M >= 0 && K >= 0 && N >= 0, "matmul_u8s8: negative size")) return nullptr;
  if (!check(threads >= 0, "matmul_u8s8: threads must be >= 0 (0: one per CPU)")) return nullptr;
  Buffer a, b, out, bzp;
  if (!a.get(a_o, false, "a", M * K) || !b.get(b_o, false, "b", N * K) || !out.get(out_o, true, "out", M * N * 4) ||
      !bzp.get(bzp_o, false, "b_zero_points", N * 4))
    return nullptr;
  if (!check(K < (1 << 15), "matmul_u8s8: K must be below 32768 (int32 accumulation bound)")) return nullptr;
  Py_BEGIN_ALLOW_THREADS
  bc::gemm_u8s8(a.as<uint8_t>(), b.as<int8_t>(), bzp.as<int32_t>(), out.as<int32_t>(), M, K, N, a_zp, saturate != 0,
                static_cast<unsigned>(threads));
  Py_END_ALLOW_THREADS
  Py_RETURN_NONE;
}

// linear_u8s8: matmul_u8s8, each thread's columns requantized by requantize_float's rule as soon
// as they are summed (fbgemm's fused output stage): out[m, n] in the output dtype, never the
// int32 sums in Python.
PyObject* linear_u8s8(PyObject*, PyObject* args) {
  PyObject *a_o, *b_o, *out_o, *bzp_o, *mult_o, *bias_o;
  Py_ssize_t M, K, N, channels;
  int a_zp, saturate, threads, dtype, relu;
  long long zp, qmin, qmax;
  if (!PyArg_ParseTuple(args, "OOOnnniOpiiOOnLLLp", &a_o, &b_o, &out_o, &M, &K, &N, &a_zp, &bzp_o, &saturate,
                        &threads, &dtype, &mult_o, &bias_o, &channels, &zp, &qmin, &qmax, &relu))
    return nullptr;
  if (!check(M >= 0 && K >= 0 && N > 0 && threads >= 0, "linear_u8s8: sizes must be >= 0 (N > 0), threads >= 0"))
    return nullptr;
  Buffer a, b, out, bzp, mult, bias;
  Requant r{};
  if (!parse_requant("linear_u8s8", dtype, mult_o, bias_o, N, channels, zp, qmin, qmax, relu, mult, bias, r))
    return nullptr;
  if (!a.get(a_o, false, "a", M * K) || !b.get(b_o, false, "b", N * K) ||
      !out.get(out_o, true, "out", M * N * itemsize(dtype)) || !bzp.get(bzp_o, false, "b_zero_points", N * 4))
    return nullptr;
  if (!check(K < (1 << 15), "linear_u8s8: K must be below 32768 (int32 accumulation bound)")) return nullptr;
  Py_BEGIN_ALLOW_THREADS
  std::vector<int32_t> acc(static_cast<size_t>(M * N));
  const bc::Columns requantize = [&](std::ptrdiff_t n0, std::ptrdiff_t n1) { r(acc.data(), out.view.buf, M, N, n0, n1); };
  bc::gemm_u8s8(a.as<uint8_t>(), b.as<int8_t>(), bzp.as<int32_t>(), acc.data(), M, K, N, a_zp, saturate != 0,
                static_cast<unsigned>(threads), &requantize);
  Py_END_ALLOW_THREADS
  Py_RETURN_NONE;
}

// ---------------------------------------------------------------------------------------
// convolution, direct, in 3 spatial dimensions (1d and 2d pass singleton dimensions):
// out[b, o, p] = sum over (c in o's group, kernel offset) of (x - x_zp) * (w - w_zp[o]),
// positions outside the input contribute nothing (padding with the input's zero point).
// x: u8 [B, C, D, H, W]; w: s8 [O, C/groups, kD, kH, kW]; out: i32 [B, O, oD, oH, oW].
// transposed: w is [C, O/groups, kD, kH, kW] and each input position scatters into the
// output (PyTorch's conv_transpose), with output_padding only growing the output.

struct Geometry {
  Py_ssize_t in[3], k[3], out[3], stride[3], pad[3], dil[3], outpad[3];
};

bool parse3(PyObject* seq, Py_ssize_t* dst, const char* name) {
  PyObject* fast = PySequence_Fast(seq, name);
  if (!fast) return false;
  bool ok = PySequence_Fast_GET_SIZE(fast) == 3;
  for (int i = 0; ok && i < 3; ++i) {
    dst[i] = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(fast, i));
    ok = !(dst[i] == -1 && PyErr_Occurred());
  }
  Py_DECREF(fast);
  if (!ok && !PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "%s: expected 3 integers", name);
  return ok;
}

PyObject* conv3d(PyObject*, PyObject* args) {
  PyObject *x_o, *w_o, *out_o, *wzp_o, *in_o, *k_o, *stride_o, *pad_o, *dil_o, *outpad_o;
  Py_ssize_t B, C, O, groups;
  int x_zp, transposed;
  if (!PyArg_ParseTuple(args, "OOOnnniOnOOOOOOp", &x_o, &w_o, &out_o, &B, &C, &O, &x_zp, &wzp_o, &groups, &in_o, &k_o,
                        &stride_o, &pad_o, &dil_o, &outpad_o, &transposed))
    return nullptr;
  Geometry g{};
  if (!parse3(in_o, g.in, "input size") || !parse3(k_o, g.k, "kernel size") || !parse3(stride_o, g.stride, "stride") ||
      !parse3(pad_o, g.pad, "padding") || !parse3(dil_o, g.dil, "dilation") || !parse3(outpad_o, g.outpad, "output padding"))
    return nullptr;
  if (!check(B >= 0 && C > 0 && O > 0 && groups > 0 && C % groups == 0 && O % groups == 0, "conv: channels must divide into groups"))
    return nullptr;
  for (int d = 0; d < 3; ++d) {
    if (!check(g.in[d] > 0 && g.k[d] > 0 && g.stride[d] > 0 && g.dil[d] > 0 && g.pad[d] >= 0 && g.outpad[d] >= 0,
               "conv: sizes, strides and dilations must be positive, paddings non-negative"))
      return nullptr;
    Py_ssize_t span = g.dil[d] * (g.k[d] - 1) + 1;
    g.out[d] = transposed ? (g.in[d] - 1) * g.stride[d] - 2 * g.pad[d] + span + g.outpad[d]
                          : (g.in[d] + 2 * g.pad[d] - span) / g.stride[d] + 1;
    if (!check(g.out[d] > 0 && (transposed || g.in[d] + 2 * g.pad[d] >= span), "conv: the output would be empty")) return nullptr;
  }
  const Py_ssize_t Cg = C / groups, Og = O / groups;
  const Py_ssize_t in_vol = g.in[0] * g.in[1] * g.in[2], out_vol = g.out[0] * g.out[1] * g.out[2];
  const Py_ssize_t k_vol = g.k[0] * g.k[1] * g.k[2];
  const Py_ssize_t w_count = transposed ? C * Og * k_vol : O * Cg * k_vol;
  Buffer x, w, out, wzp;
  if (!x.get(x_o, false, "x", B * C * in_vol) || !w.get(w_o, false, "w", w_count) || !out.get(out_o, true, "out", B * O * out_vol * 4) ||
      !wzp.get(wzp_o, false, "w_zero_points", O * 4))
    return nullptr;
  const uint8_t* X = x.as<uint8_t>();
  const int8_t* W = w.as<int8_t>();
  const int32_t* wz = wzp.as<int32_t>();
  int32_t* Y = out.as<int32_t>();
  Py_BEGIN_ALLOW_THREADS
  std::fill(Y, Y + B * O * out_vol, 0);
  for (Py_ssize_t b = 0; b < B; ++b) {
    for (Py_ssize_t grp = 0; grp < groups; ++grp) {
      for (Py_ssize_t og = 0; og < Og; ++og) {
        const Py_ssize_t o = grp * Og + og;
        int32_t* yo = Y + (b * O + o) * out_vol;
        for (Py_ssize_t cg = 0; cg < Cg; ++cg) {
          const Py_ssize_t c = grp * Cg + cg;
          const uint8_t* xc = X + (b * C + c) * in_vol;
          const int8_t* wk = transposed ? W + (c * Og + og) * k_vol : W + (o * Cg + cg) * k_vol;
          for (Py_ssize_t kd = 0; kd < g.k[0]; ++kd)
            for (Py_ssize_t kh = 0; kh < g.k[1]; ++kh)
              for (Py_ssize_t kw = 0; kw < g.k[2]; ++kw) {
                const int32_t wv = static_cast<int32_t>(wk[(kd * g.k[1] + kh) * g.k[2] + kw]) - wz[o];
                if (wv == 0) continue;
                if (!transposed) {
                  for (Py_ssize_t od = 0; od < g.out[0]; ++od) {
                    Py_ssize_t id = od * g.stride[0] - g.pad[0] + kd * g.dil[0];
                    if (id < 0 || id >= g.in[0]) continue;
                    for (Py_ssize_t oh = 0; oh < g.out[1]; ++oh) {
                      Py_ssize_t ih = oh * g.stride[1] - g.pad[1] + kh * g.dil[1];
                      if (ih < 0 || ih >= g.in[1]) continue;
                      for (Py_ssize_t ow = 0; ow < g.out[2]; ++ow) {
                        Py_ssize_t iw = ow * g.stride[2] - g.pad[2] + kw * g.dil[2];
                        if (iw < 0 || iw >= g.in[2]) continue;
                        yo[(od * g.out[1] + oh) * g.out[2] + ow] +=
                            (static_cast<int32_t>(xc[(id * g.in[1] + ih) * g.in[2] + iw]) - x_zp) * wv;
                      }
                    }
                  }
                } else {
                  for (Py_ssize_t id = 0; id < g.in[0]; ++id) {
                    Py_ssize_t od = id * g.stride[0] - g.pad[0] + kd * g.dil[0];
                    if (od < 0 || od >= g.out[0]) continue;
                    for (Py_ssize_t ih = 0; ih < g.in[1]; ++ih) {
                      Py_ssize_t oh = ih * g.stride[1] - g.pad[1] + kh * g.dil[1];
                      if (oh < 0 || oh >= g.out[1]) continue;
                      for (Py_ssize_t iw = 0; iw < g.in[2]; ++iw) {
                        Py_ssize_t ow = iw * g.stride[2] - g.pad[2] + kw * g.dil[2];
                        if (ow < 0 || ow >= g.out[2]) continue;
                        yo[(od * g.out[1] + oh) * g.out[2] + ow] +=
                            (static_cast<int32_t>(xc[(id * g.in[1] + ih) * g.in[2] + iw]) - x_zp) * wv;
                      }
                    }
                  }
                }
              }
        }
      }
    }
  }
  Py_END_ALLOW_THREADS
  return Py_BuildValue("(nnn)", g.out[0], g.out[1], g.out[2]);
}

// ---------------------------------------------------------------------------------------
// half precision

// float -> IEEE half bits, round to nearest even; overflow -> inf, nan stays nan
uint16_t to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t mag = x & 0x7FFFFFFFu;
  if (mag >= 0x7F800000u) return static_cast<uint16_t>(sign | (mag > 0x7F800000u ? 0x7E00u : 0x7C00u));
  if (mag >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // rounds past 65504
  if (mag < 0x38800000u) {  // half subnormal or zero: scale into integer units of 2^-24
    float a;
    std::memcpy(&a, &mag, 4);
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(a * 0x1.0p24f)));
  }
  uint32_t exp = (mag >> 23) - 112;  // rebias 127 -> 15
  uint32_t mant = mag & 0x7FFFFFu;
  uint32_t h = (exp << 10) | (mant >> 13);
  uint32_t rest = mant & 0x1FFFu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // carries into the exponent correctly
  return static_cast<uint16_t>(sign | h);
}

float from_half(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
  float out;
  if (exp == 0) {
    out = static_cast<float>(mant) * 0x1.0p-24f;
    uint32_t bits;
    std::memcpy(&bits, &out, 4);
    bits |= sign;
    std::memcpy(&out, &bits, 4);
    return out;
  }
  uint32_t bits = sign | (exp == 31 ? (0xFFu << 23) | (mant << 13) : ((exp + 112) << 23) | (mant << 13));
  std::memcpy(&out, &bits, 4);
  return out;
}

// fp16_round: each float32 rounded to the nearest half (ties to even) and back; with
// saturate, finite values beyond the half range become +-65504 first (PyTorch's fp16 linear
// prepack clamps its weights so).
PyObject* fp16_round(PyObject*, PyObject* args) {
  PyObject *src_o, *dst_o;
  int saturate;
  if (!PyArg_ParseTuple(args, "OOp", &src_o, &dst_o, &saturate)) return nullptr;
  Buffer src, dst;
  if (!src.get(src_o, false, "src", -1)) return nullptr;
  if (!check(src.view.len % 4 == 0, "fp16_round: src is not float32")) return nullptr;
  if (!dst.get(dst_o, true, "dst", src.view.len)) return nullptr;
  const float* x = src.as<float>();
  float* y = dst.as<float>();
  Py_ssize_t n = src.view.len / 4;
  for (Py_ssize_t i = 0; i < n; ++i) {
    float v = x[i];
    if (saturate && std::isfinite(v)) v = std::min(std::max(v, -65504.0f), 65504.0f);
    y[i] = from_half(to_half(v));
  }
  Py_RETURN_NONE;
}

// ---------------------------------------------------------------------------------------
// rowwise quantized embedding bag (fbgemm's fused rowwise layout):
// 8-bit rows are dim bytes, then float32 scale and float32 bias; 4-bit rows are
// ceil(dim / 2) bytes (element j in the low nibble when j is even), then half scale and half
// bias. A bag sums its rows' values, out = fma(scale * w, q, out + bias * w) per element,
// in index order (w the per-sample weight, 1 without); mode mean divides by the bag's size.

PyObject* embedding_bag_rowwise(PyObject*, PyObject* args) {
  PyObject *table_o, *idx_o, *off_o, *out_o, *psw_o;
  Py_ssize_t rows, dim, bags;
  int bits, mean;
  if (!PyArg_ParseTuple(args, "OnniOOnOOp", &table_o, &rows, &dim, &bits, &idx_o, &off_o, &bags, &out_o, &psw_o, &mean))
    return nullptr;
  if (!check(bits == 8 || bits == 4, "embedding_bag_rowwise: bits must be 8 or 4") || !check(rows >= 0 && dim > 0 && bags >= 0, "embedding_bag_rowwise: bad sizes"))
    return nullptr;
  const Py_ssize_t data_bytes = bits == 8 ? dim : (dim + 1) / 2;
  const Py_ssize_t row_bytes = data_bytes + (bits == 8 ? 8 : 4);
  Buffer table, idx, off, out, psw;
  if (!table.get(table_o, false, "table", rows * row_bytes) || !idx.get(idx_o, false, "indices", -1) ||
      !off.get(off_o, false, "offsets", (bags + 1) * 8) || !out.get(out_o, true, "out", bags * dim * 4))
    return nullptr;
  const Py_ssize_t n_idx = idx.view.len / 8;
  if (!check(idx.view.len % 8 == 0, "embedding_bag_rowwise: indices are not int64")) return nullptr;
  bool weighted = psw_o != Py_None;
  if (weighted && !psw.get(psw_o, false, "per_sample_weights", n_idx * 4)) return nullptr;
  const uint8_t* T = table.as<uint8_t>();
  const int64_t* I = idx.as<int64_t>();
  const int64_t* O = off.as<int64_t>();
  if (!check(O[0] == 0 && O[bags] == n_idx, "embedding_bag_rowwise: offsets must start at 0 and end at len(indices)")) return nullptr;
  for (Py_ssize_t b = 0; b < bags; ++b)
    if (!check(O[b] <= O[b + 1], "embedding_bag_rowwise: offsets must not decrease")) return nullptr;
  for (Py_ssize_t i = 0; i < n_idx; ++i)
    if (!check(I[i] >= 0 && I[i] < rows, "embedding_bag_rowwise: index out of range")) return nullptr;
  float* Y = out.as<float>();
  const float* W = weighted ? psw.as<float>() : nullptr;
  for (Py_ssize_t b = 0; b < bags; ++b) {
    float* y = Y + b * dim;
    std::fill(y, y + dim, 0.0f);
    for (int64_t p = O[b]; p < O[b + 1]; ++p) {
      const uint8_t* row = T + I[p] * row_bytes;
      float scale, bias;
      if (bits == 8) {
        std::memcpy(&scale, row + data_bytes, 4);
        std::memcpy(&bias, row + data_bytes + 4, 4);
      } else {
        uint16_t hs, hb;
        std::memcpy(&hs, row + data_bytes, 2);
        std::memcpy(&hb, row + data_bytes + 2, 2);
        scale = from_half(hs);
        bias = from_half(hb);
      }
      if (W) {
        scale *= W[p];
        bias *= W[p];
      }
      for (Py_ssize_t j = 0; j < dim; ++j) {
        float q = bits == 8 ? row[j] : static_cast<float>((row[j / 2] >> ((j % 2) * 4)) & 0xF);
        y[j] = std::fma(scale, q, y[j] + bias);
      }
    }
    if (mean && O[b + 1] > O[b]) {
      float count = static_cast<float>(O[b + 1] - O[b]);
      for (Py_ssize_t j = 0; j < dim; ++j) y[j] /= count;
    }
  }
  Py_RETURN_NONE;
}

// rowwise_quantize: float rows [rows, dim] into the fused layout above. 8-bit: bias = row min,
// scale = (max - min) / 255, q = lrintf((x - min) * (255 / (max - min + 1e-8))). 4-bit: scale
// and bias are halves (a zero scale becomes 1), q = clamp(lrintf((x - bias) / scale), 0, 15).
PyObject* rowwise_quantize(PyObject*, PyObject* args) {
  PyObject *src_o, *dst_o;
  Py_ssize_t rows, dim;
  int bits;
  if (!PyArg_ParseTuple(args, "OOnni", &src_o, &dst_o, &rows, &dim, &bits)) return nullptr;
  if (!check(bits == 8 || bits == 4, "rowwise_quantize: bits must be 8 or 4") || !check(rows >= 0 && dim > 0, "rowwise_quantize: bad sizes"))
    return nullptr;
  const Py_ssize_t data_bytes = bits == 8 ? dim : (dim + 1) / 2;
  const Py_ssize_t row_bytes = data_bytes + (bits == 8 ? 8 : 4);
  Buffer src, dst;
  if (!src.get(src_o, false, "src", rows * dim * 4) || !dst.get(dst_o, true, "dst", rows * row_bytes)) return nullptr;
  const float* X = src.as<float>();
  uint8_t* D = dst.as<uint8_t>();
  for (Py_ssize_t r = 0; r < rows; ++r) {
    const float* x = X + r * dim;
    uint8_t* row = D + r * row_bytes;
    float lo = *std::min_element(x, x + dim), hi = *std::max_element(x, x + dim);
    if (bits == 8) {
      float range = hi - lo;
      float scale = range / 255.0f, bias = lo;
      float inv = 255.0f / (range + 1e-8f);
      for (Py_ssize_t j = 0; j < dim; ++j)
        row[j] = static_cast<uint8_t>(std::min(std::max(std::lrintf((x[j] - lo) * inv), 0L), 255L));
      std::memcpy(row + dim, &scale, 4);
      std::memcpy(row + dim + 4, &bias, 4);
    } else {
      uint16_t hb = to_half(lo);
      float bias = from_half(hb);
      uint16_t hs = to_half((hi - bias) / 15.0f);
      if (from_half(hs) == 0.0f) hs = to_half(1.0f);
      float inv = 1.0f / from_half(hs);
      std::memset(row, 0, static_cast<size_t>(data_bytes));
      for (Py_ssize_t j = 0; j < dim; ++j) {
        long q = std::min(std::max(std::lrintf((x[j] - bias) * inv), 0L), 15L);
        row[j / 2] |= static_cast<uint8_t>(q << ((j % 2) * 4));
      }
      std::memcpy(row + data_bytes, &hs, 2);
      std::memcpy(row + data_bytes + 2, &hb, 2);
    }
  }
  Py_RETURN_NONE;
}

PyMethodDef methods[] = {
    {"quantize", quantize, METH_VARARGS, "quantize(src_f32, dst, dtype, scales_f32, zps_i64, inner, channels, qmin, qmax, divide=False)"},
    {"dequantize", dequantize, METH_VARARGS, "dequantize(src, dtype, dst_f32, scales_f64, zps_i64, inner, channels, per_channel)"},
    {"requantize_float", requantize_float, METH_VARARGS,
     "requantize_float(acc_i32, dst, dtype, multiplier_f32, bias_over_scale_f32|None, cols, channels, zp, qmin, qmax, relu)"},
    {"requantize_q31", requantize_q31, METH_VARARGS, "requantize_q31(acc_i32, dst, dtype, scale, zp, qmin, qmax)"},
    {"linear_u8s8", linear_u8s8, METH_VARARGS,
     "linear_u8s8(a_u8, b_s8, out, M, K, N, a_zp, b_zps_i32, saturate_pairs, threads, dtype, multiplier_f32, "
     "bias_over_scale_f32|None, channels, zp, qmin, qmax, relu)"},
    {"matmul_u8s8", matmul_u8s8, METH_VARARGS, "matmul_u8s8(a_u8, b_s8, out_i32, M, K, N, a_zp, b_zps_i32, saturate_pairs, threads=0)"},
    {"conv3d", conv3d, METH_VARARGS,
     "conv3d(x_u8, w_s8, out_i32, B, C, O, x_zp, w_zps_i32, groups, in3, k3, stride3, pad3, dil3, outpad3, transposed) -> out3"},
    {"fp16_round", fp16_round, METH_VARARGS, "fp16_round(src_f32, dst_f32, saturate)"},
    {"embedding_bag_rowwise", embedding_bag_rowwise, METH_VARARGS,
     "embedding_bag_rowwise(table_u8, rows, dim, bits, indices_i64, offsets_i64, bags, out_f32, per_sample_weights|None, mean)"},
    {"rowwise_quantize", rowwise_quantize, METH_VARARGS, "rowwise_quantize(src_f32, dst_u8, rows, dim, bits)"},
    {"isa", isa, METH_NOARGS, "isa() -> the version of the integer dot products in use: portable, avx2 or avx512vnni"},
    {"available_isas", available_isas, METH_NOARGS, "available_isas() -> the versions this CPU can run"},
    {"use_isa", use_isa, METH_VARARGS, "use_isa(name) -> name: run that version from now on (ValueError if the CPU lacks it)"},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", "Reference quantized kernels (see kernels/kernels.cpp).", -1,
                      methods, nullptr, nullptr, nullptr, nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__kernels(void) {
  const char* asked = std::getenv("BC_HARNESS_KERNELS_ISA");
  if (asked && *asked && !select_isa(asked)) return nullptr;
  return PyModule_Create(&module);
}
