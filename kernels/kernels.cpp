// Reference quantized kernels: the project's exact statement of quantized arithmetic.
//
// Built by the package build into harness._kernels. No torch: tensors cross the boundary as
// Python buffers (the Python side, harness/reference/primitives.py, checks shapes, dtypes and qparams
// before calling; these functions check buffer sizes again and raise ValueError, never crash).
//
// Rounding is half to even (nearbyint / lrint under the default rounding mode) and every
// result saturates to its quantized range, unless a function documents another rule.
#include <algorithm>
#include <cfenv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "gemm.h"
#include "python.h"

// One build runs on any x86-64: the hot integer dot products (gemm.cpp) have AVX512-VNNI and
// AVX2 versions, compiled for those ISAs by function attributes (not by -march), and chosen at
// run time from what the CPU reports (see bc::Isa). Every version computes the same int32 sums.

namespace {

using namespace bc;

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

// fma_columns (fbgemm's float output stage of the dynamic linear): y[r, j] = fma(x[r, j], m[j],
// b[j]), one rounding, whatever the CPU and whatever kernels torch dispatches to (std::fma is
// correctly rounded everywhere; the C library uses the CPU's FMA where it has one).
PyObject* fma_columns(PyObject*, PyObject* args) {
  PyObject *src_o, *dst_o, *mult_o, *add_o;
  Py_ssize_t cols, channels;
  if (!PyArg_ParseTuple(args, "OOOOnn", &src_o, &dst_o, &mult_o, &add_o, &cols, &channels)) return nullptr;
  if (!check(cols > 0 && (channels == 1 || channels == cols), "fma_columns: one multiplier or one per column"))
    return nullptr;
  Buffer src, dst, mult, add;
  if (!src.get(src_o, false, "src", -1)) return nullptr;
  const Py_ssize_t n = src.view.len / 4;
  if (!check(src.view.len % 4 == 0 && n % cols == 0, "fma_columns: src is not float32 [rows, cols]")) return nullptr;
  if (!dst.get(dst_o, true, "dst", n * 4) || !mult.get(mult_o, false, "multiplier", channels * 4) ||
      !add.get(add_o, false, "addend", cols * 4))
    return nullptr;
  const float *x = src.as<float>(), *m = mult.as<float>(), *b = add.as<float>();
  float* y = dst.as<float>();
  Py_BEGIN_ALLOW_THREADS
  for (Py_ssize_t i = 0; i < n; ++i) {
    const Py_ssize_t j = i % cols;
    y[i] = std::fma(x[i], m[channels == 1 ? 0 : j], b[j]);
  }
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

bool use_isa_or_say_why(const char* name) {
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
  if (!PyArg_ParseTuple(args, "s", &name) || !use_isa_or_say_why(name)) return nullptr;
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

PyMethodDef methods[] = {
    {"quantize", quantize, METH_VARARGS, "quantize(src_f32, dst, dtype, scales_f32, zps_i64, inner, channels, qmin, qmax, divide=False)"},
    {"dequantize", dequantize, METH_VARARGS, "dequantize(src, dtype, dst_f32, scales_f64, zps_i64, inner, channels, per_channel)"},
    {"requantize_float", requantize_float, METH_VARARGS,
     "requantize_float(acc_i32, dst, dtype, multiplier_f32, bias_over_scale_f32|None, cols, channels, zp, qmin, qmax, relu)"},
    {"fma_columns", fma_columns, METH_VARARGS, "fma_columns(src_f32, dst_f32, multiplier_f32, addend_f32, cols, channels)"},
    {"requantize_q31", requantize_q31, METH_VARARGS, "requantize_q31(acc_i32, dst, dtype, scale, zp, qmin, qmax)"},
    {"linear_u8s8", linear_u8s8, METH_VARARGS,
     "linear_u8s8(a_u8, b_s8, out, M, K, N, a_zp, b_zps_i32, saturate_pairs, threads, dtype, multiplier_f32, "
     "bias_over_scale_f32|None, channels, zp, qmin, qmax, relu)"},
    {"matmul_u8s8", matmul_u8s8, METH_VARARGS, "matmul_u8s8(a_u8, b_s8, out_i32, M, K, N, a_zp, b_zps_i32, saturate_pairs, threads=0)"},
    {"conv3d", bc::conv3d, METH_VARARGS,
     "conv3d(x_u8, w_s8, out_i32, B, C, O, x_zp, w_zps_i32, groups, in3, k3, stride3, pad3, dil3, outpad3, transposed) -> out3"},
    {"fp16_round", bc::fp16_round, METH_VARARGS, "fp16_round(src_f32, dst_f32, saturate)"},
    {"embedding_bag_rowwise", bc::embedding_bag_rowwise, METH_VARARGS,
     "embedding_bag_rowwise(table_u8, rows, dim, bits, indices_i64, offsets_i64, bags, out_f32, per_sample_weights|None, mean)"},
    {"rowwise_quantize", bc::rowwise_quantize, METH_VARARGS, "rowwise_quantize(src_f32, dst_u8, rows, dim, bits)"},
    {"isa", isa, METH_NOARGS, "isa() -> the version of the integer dot products in use: portable, avx2 or avx512vnni"},
    {"available_isas", available_isas, METH_NOARGS, "available_isas() -> the versions this CPU can run"},
    {"use_isa", use_isa, METH_VARARGS, "use_isa(name) -> name: run that version from now on (ValueError if the CPU lacks it)"},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", "Reference quantized kernels (see kernels/*.cpp).", -1,
                      methods, nullptr, nullptr, nullptr, nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__kernels(void) {
  const char* asked = std::getenv("BC_HARNESS_KERNELS_ISA");
  if (asked && *asked && !use_isa_or_say_why(asked)) return nullptr;
  return PyModule_Create(&module);
}
