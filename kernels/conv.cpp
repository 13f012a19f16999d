// The reference kernels' quantized convolution (1d to 3d, transposed too): conv3d.
#include "python.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace bc {

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

}  // namespace bc
