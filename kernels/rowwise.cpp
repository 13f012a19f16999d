// The reference kernels' half-precision rounding and rowwise (embedding) kernels.
#include "python.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace bc {

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

}  // namespace bc
