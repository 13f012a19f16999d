"""A quantized model run on the reference (``reference_output``): an eager module tree as it is, an
FX GraphModule (FX graph mode, a PT2E program) through torch.fx's Interpreter. Either way its quantized submodules are swapped
for reference ops first (harness.reference.modules); in a graph, its quantize and
dequantize calls done by the reference kernels. The calls left to torch are the ones that do no
quantized arithmetic: float ops between a dequantize and a quantize, and the data movement and
relu of quantized tensors (flatten, reshape, relu: exact on every backend)."""

from __future__ import annotations

import torch
import torch.fx

from .modules import Unsupported, reference_model
from .ops import linear
from .primitives import dequantize, quantize


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


def _quantized_op(target) -> str | None:
    """The name of a quantized op (quantized::add, quantized_decomposed::quantize_per_tensor, ...)
    a graph calls, else None."""
    name = getattr(target, "_qualified_op_name", None) or getattr(getattr(target, "_overloadpacket", None),
                                                                 "_qualified_op_name", None)
    return name if name and name.startswith(("quantized::", "quantized_decomposed::")) else None


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


def _add(relu):
    """quantized::add(_relu)(a, b, scale, zero point): both dequantized, added in float, quantized."""
    def run(a, b, scale, zero_point):
        total = dequantize_tensor(a) + dequantize_tensor(b)
        return quantize_tensor(torch.relu(total) if relu else total, scale, zero_point, a.dtype)
    return run


#: the torch.ops.quantized calls a graph may make, by name
QUANTIZED_OPS = {"quantized::linear": _linear(False), "quantized::linear_relu": _linear(True),
                 "quantized::add": _add(False), "quantized::add_relu": _add(True),
                 # PT2E: integer tensors around float ops (the .default and .tensor overloads alike)
                 "quantized_decomposed::quantize_per_tensor": _decomposed_quantize,
                 "quantized_decomposed::dequantize_per_tensor": _decomposed_dequantize,
                 "quantized_decomposed::quantize_per_channel": _decomposed_quantize_channels,
                 "quantized_decomposed::dequantize_per_channel": _decomposed_dequantize_channels}


class ReferenceInterpreter(torch.fx.Interpreter):
    """Runs a GraphModule whose quantized submodules were swapped by ``reference_model``."""

    def call_function(self, target, args, kwargs):
        if target is torch.quantize_per_tensor:
            return quantize_tensor(*args, **kwargs)
        if target is torch.dequantize:
            return dequantize_tensor(args[0])
        op = _quantized_op(target)
        if op is not None:
            if op not in QUANTIZED_OPS:
                raise Unsupported(f"the reference has no rule for {op}")
            return QUANTIZED_OPS[op](*args, **kwargs)
        return super().call_function(target, args, kwargs)

    def call_method(self, target, args, kwargs):
        if target == "dequantize":
            return dequantize_tensor(args[0])
        return super().call_method(target, args, kwargs)


def reference_output(model: torch.nn.Module, example):
    """The output of ``model`` with every quantized computation done by the reference."""
    ref = reference_model(model)
    args = example if isinstance(example, tuple) else (example,)
    with torch.no_grad():
        if isinstance(ref, torch.fx.GraphModule):
            try:
                return ReferenceInterpreter(ref).run(*args)
            except Unsupported as exc:  # the interpreter appends the node and its stack to the message
                raise Unsupported(str(exc).strip().splitlines()[0]) from None
        return ref(*args)
