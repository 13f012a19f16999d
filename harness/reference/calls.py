"""The quantized calls a model's code makes, each done by the reference: one table, keyed by the
op's qualified name, with the op's own arguments (``QUANTIZED_OPS``).

Read by both ways the reference runs code it did not write: the FX interpreter (an FX graph's or
a PT2E program's call nodes) and the dispatch mode (a TorchScript or lite-interpreter module's
calls), both in harness.reference.graphs. Packed weights (linear, conv) are unpacked with torch's
own unpack ops, which only read them back.
"""

from __future__ import annotations

import torch

from harness.reference.modules import Unsupported
from harness.reference.ops import conv_nd, dynamic_linear, dynamic_linear_fp16, linear
from harness.reference.primitives import dequantize, quantize


def quantize_tensor(x, scale, zero_point, dtype):
    """torch.quantize_per_tensor on the reference kernel, as a quantized tensor."""
    scale, zero_point = float(scale), int(zero_point)
    if dtype not in (torch.quint8, torch.qint8):
        raise Unsupported(f"quantize_per_tensor to {dtype}")
    q = quantize(x.detach().float().contiguous(), [scale], [zero_point], dtype)
    return torch._make_per_tensor_quantized_tensor(q, scale, zero_point)


def dequantize_tensor(x):
    """Tensor.dequantize on the reference kernel; a float tensor passes through, as in torch."""
    if not isinstance(x, torch.Tensor) or not x.is_quantized:
        return x
    if x.qscheme() == torch.per_tensor_affine:
        return dequantize(x.int_repr(), [x.q_scale()], [x.q_zero_point()], x.dtype)
    if x.qscheme() == torch.per_channel_affine:
        return dequantize(x.int_repr(), x.q_per_channel_scales().tolist(), x.q_per_channel_zero_points().tolist(),
                          x.dtype, x.q_per_channel_axis())
    raise Unsupported(f"dequantize of a {x.qscheme()} tensor")


#: the integer storage dtype of PT2E's decomposed quantize / dequantize -> the quantized dtype
_STORAGE = {torch.uint8: torch.quint8, torch.int8: torch.qint8, torch.int32: torch.qint32}


def _qdtype(dtype):
    if dtype not in _STORAGE:
        raise Unsupported(f"a decomposed quantize to {dtype}")
    return _STORAGE[dtype]


def _decomposed_quantize(x, scale, zero_point, quant_min, quant_max, dtype):
    """PT2E's quantize_per_tensor: the integer values, saturated to [quant_min, quant_max]."""
    return quantize(x.detach().float().contiguous(), [float(scale)], [int(zero_point)], _qdtype(dtype),
                    qrange=(int(quant_min), int(quant_max)))


def _decomposed_dequantize(q, scale, zero_point, quant_min, quant_max, dtype, *, out_dtype=None):
    out = dequantize(q.contiguous(), [float(scale)], [int(zero_point)], _qdtype(dtype))
    return out if out_dtype in (None, torch.float32) else out.to(out_dtype)


def _decomposed_quantize_channels(x, scales, zero_points, axis, quant_min, quant_max, dtype):
    return quantize(x.detach().float().contiguous(), scales.tolist(), [int(z) for z in zero_points.tolist()],
                    _qdtype(dtype), int(axis) % x.dim(), qrange=(int(quant_min), int(quant_max)))


def _decomposed_dequantize_channels(q, scales, zero_points, axis, quant_min, quant_max, dtype, *, out_dtype=None):
    if zero_points is None:
        raise Unsupported("a decomposed per-channel dequantize without zero points")
    out = dequantize(q.contiguous(), scales.tolist(), [int(z) for z in zero_points.tolist()], _qdtype(dtype),
                     int(axis) % q.dim())
    return out if out_dtype in (None, torch.float32) else out.to(out_dtype)


def _linear(relu):
    """quantized::linear(_relu)(x, packed weight, scale, zero point): the reference linear."""
    def run(x, packed, scale, zero_point):
        weight, bias = torch.ops.quantized.linear_unpack(packed)
        return linear(x, weight, bias, float(scale), int(zero_point), relu=relu)
    return run


def _dynamic_linear(relu):
    """quantized::linear(_relu)_dynamic(x, packed weight, reduce_range): x quantized per call,
    by fbgemm's rule (the reference's; qnnpack ignores reduce_range, see ops.dynamic_linear)."""
    def run(x, packed, reduce_range=False):
        weight, bias = torch.ops.quantized.linear_unpack(packed)
        out = dynamic_linear(x, weight, bias, reduce_range=bool(reduce_range))
        return torch.relu(out) if relu else out
    return run


def _dynamic_linear_fp16(relu):
    def run(x, packed):
        weight, bias = torch.ops.quantized.linear_unpack_fp16(packed)
        out = dynamic_linear_fp16(x, weight.float(), bias)
        return torch.relu(out) if relu else out
    return run


def _conv(dims, relu=False, transposed=False):
    """quantized::conv{1,2,3}d(_relu) / conv_transpose{1,2,3}d(x, packed weight, scale, zero point):
    the reference conv on the unpacked weight and the packed geometry. A 1-d conv is packed as a
    2-d one over a height of 1, and runs so here too, as ATen runs it."""
    def run(x, packed, scale, zero_point):
        if not isinstance(x, torch.Tensor) or x.dtype != torch.quint8:
            raise Unsupported(f"a {dims}-d quantized conv on a {getattr(x, 'dtype', type(x).__name__)} input")
        try:
            weight, bias = packed.unpack()
        except RuntimeError as exc:  # qnnpack packs 3-d convs it cannot unpack
            raise Unsupported(f"a {dims}-d conv weight the backend cannot unpack: {str(exc).splitlines()[0]}") from None
        geometry = dict(stride=list(packed.stride()), padding=list(packed.padding()),
                        dilation=list(packed.dilation()), groups=int(packed.groups()), relu=relu,
                        transposed=bool(packed.transpose()))
        if geometry["transposed"] != transposed:
            raise Unsupported("a conv's packed weight and its op disagree on transposition")
        if transposed:
            geometry["output_padding"] = list(packed.output_padding())
        if dims == 1:
            out = conv_nd(x.unsqueeze(2), weight, bias, float(scale), int(zero_point), **geometry)
            return out.squeeze(2)
        return conv_nd(x, weight, bias, float(scale), int(zero_point), **geometry)
    return run


def _add(relu):
    """quantized::add(_relu)(a, b, scale, zero point): both dequantized, added in float, quantized."""
    def run(a, b, scale, zero_point):
        total = dequantize_tensor(a) + dequantize_tensor(b)
        return quantize_tensor(torch.relu(total) if relu else total, scale, zero_point, a.dtype)
    return run


def _aten_dequantize(x):
    return dequantize_tensor(x)


#: the quantized calls the reference does, by qualified name (any overload whose arguments match)
QUANTIZED_OPS = {
    "aten::quantize_per_tensor": quantize_tensor, "aten::dequantize": _aten_dequantize,
    "quantized::linear": _linear(False), "quantized::linear_relu": _linear(True),
    "quantized::linear_dynamic": _dynamic_linear(False), "quantized::linear_relu_dynamic": _dynamic_linear(True),
    "quantized::linear_dynamic_fp16": _dynamic_linear_fp16(False),
    "quantized::linear_relu_dynamic_fp16": _dynamic_linear_fp16(True),
    "quantized::add": _add(False), "quantized::add_relu": _add(True),
    **{f"quantized::conv{d}d": _conv(d) for d in (1, 2, 3)},
    **{f"quantized::conv{d}d_relu": _conv(d, relu=True) for d in (1, 2, 3)},
    **{f"quantized::conv_transpose{d}d": _conv(d, transposed=True) for d in (1, 2, 3)},
    # PT2E: integer tensors around float ops (the .default and .tensor overloads alike)
    "quantized_decomposed::quantize_per_tensor": _decomposed_quantize,
    "quantized_decomposed::dequantize_per_tensor": _decomposed_dequantize,
    "quantized_decomposed::quantize_per_channel": _decomposed_quantize_channels,
    "quantized_decomposed::dequantize_per_channel": _decomposed_dequantize_channels,
}


def qualified_name(target) -> str | None:
    """An op's qualified name without its overload ("quantized::conv2d"), else None."""
    return getattr(target, "_qualified_op_name", None) or getattr(getattr(target, "_overloadpacket", None),
                                                                 "_qualified_op_name", None)


def quantized_call(target) -> str | None:
    """The qualified name of a call the reference must do itself (quantized::*, PT2E's
    quantized_decomposed::*), else None: every other call does no quantized arithmetic."""
    name = qualified_name(target)
    return name if name and name.startswith(("quantized::", "quantized_decomposed::")) else None
