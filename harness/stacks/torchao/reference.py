"""The reference for torchao's quantized tensors: what a layer with a torchao weight computes, from
the integers, scales, zero points and block sizes the checkpoint stores, stated here without
torchao's code.

- A weight is dequantized block by block: ``(q - zero_point) * scale``, the scale and zero point
  of each block (``block_size``: 1 x 32 is per group of 32 input channels, 1 x in per channel)
  spread over it, in float32 as torchao's ``dequantize_affine`` does (float8: ``q * scale``).
- A dynamic activation (``activation_quantization="int8_asym_per_token"``, or an ``Int8Tensor``'s
  ``act_quant_kwargs``) is quantized per token (each row of the last dimension) with torchao's
  qparams rule, ``choose_qparams_affine``: asymmetric ``scale = (max(x, 0) - min(x, 0)) / 255``,
  ``zero_point = -128 - round(min(x, 0) / scale)``; symmetric ``scale = max|x| / 127.5``, zero
  point 0; the scale at least float32's smallest normal; then ``q = clamp(round(x * (1/scale)) +
  zero_point)`` and back, as ``quantize_affine`` does.
- The layer is then a float ``linear`` (or ``embedding``) on the dequantized tensors.

torchao computes the same in its own kernels (an int8 matmul with the scales applied after, for
``Int8Tensor``); where the two disagree the replay reports the distance as a finding.
"""

from __future__ import annotations

import copy

import torch

from harness.reference import Unsupported

#: what each activation rule is called by each tensor class
_ASYMMETRIC, _SYMMETRIC = "int8_asym_per_token", "int8_sym_per_token"


def _spread(values, block_size, shape):
    """Per-block ``values`` repeated over each block of a tensor of ``shape``."""
    for dim, size in enumerate(block_size):
        if size > 1 and values.shape[dim] * size == shape[dim]:
            values = values.repeat_interleave(size, dim=dim)
    return values.expand(shape)


def dequantized(weight) -> torch.Tensor:
    """A torchao weight (v2 tensors: Int8Tensor, IntxUnpackedToInt8Tensor, Float8Tensor) as
    float32, from its stored fields."""
    fields = weight.__tensor_flatten__()[0] if hasattr(weight, "__tensor_flatten__") else []
    if "qdata" not in fields or "scale" not in fields or not hasattr(weight, "block_size"):
        raise Unsupported(f"a {type(weight).__name__} weight (no qdata, scale and block_size to read)")
    q, shape, block = weight.qdata, weight.qdata.shape, tuple(weight.block_size)
    scale = _spread(weight.scale.float(), block, shape)
    if q.dtype.is_floating_point:  # float8
        return q.float() * scale
    zero = getattr(weight, "zero_point", None)
    integers = q.to(torch.int32) - (_spread(zero, block, shape).to(torch.int32) if zero is not None else 0)
    return integers.float() * scale


def activation_rule(weight) -> str | None:
    """How the layer quantizes its input on the fly (None: weight-only)."""
    rule = getattr(weight, "activation_quantization", None)
    if rule is not None:
        rule = getattr(rule, "value", rule)
        if rule != _ASYMMETRIC:
            raise Unsupported(f"activation quantization {rule!r}")
        return rule
    kwargs = getattr(weight, "act_quant_kwargs", None)
    if kwargs is None:
        return None
    mapping = getattr(getattr(kwargs, "mapping_type", None), "name", "")
    if getattr(kwargs, "reduce_range", False) or mapping not in ("SYMMETRIC", "ASYMMETRIC"):
        raise Unsupported(f"activation quantization {kwargs!r}")
    return _SYMMETRIC if mapping == "SYMMETRIC" else _ASYMMETRIC


def per_token(x: torch.Tensor, rule: str) -> torch.Tensor:
    """``x`` quantized to int8 per token by ``rule`` and dequantized, in float32."""
    x = x.float()
    low = torch.clamp(x.amin(dim=-1, keepdim=True), max=0.0)
    high = torch.clamp(x.amax(dim=-1, keepdim=True), min=0.0)
    tiny = torch.finfo(torch.float32).smallest_normal
    if rule == _SYMMETRIC:
        scale = torch.clamp(torch.maximum(-low, high) / 127.5, min=tiny)
        zero = torch.zeros_like(scale)
    else:
        scale = torch.clamp((high - low) / 255.0, min=tiny)
        zero = torch.clamp(-128 - torch.round(low / scale), -128, 127)
    q = torch.clamp(torch.round(x * (1.0 / scale)) + zero, -128, 127)
    return (q - zero) * scale


class _Linear(torch.nn.Module):
    def __init__(self, weight, bias, rule):
        super().__init__()
        self.weight, self.bias, self.rule = weight, bias, rule

    def forward(self, x):
        x = per_token(x, self.rule) if self.rule else x
        return torch.nn.functional.linear(x, self.weight, self.bias)


class _Embedding(torch.nn.Module):
    def __init__(self, module, weight):
        super().__init__()
        self.weight = weight
        self.options = (module.padding_idx, module.max_norm, module.norm_type, module.scale_grad_by_freq, module.sparse)

    def forward(self, tokens):
        return torch.nn.functional.embedding(tokens, self.weight, *self.options)


def _plain(tensor) -> bool:
    return tensor is None or type(tensor) in (torch.Tensor, torch.nn.Parameter)


def reference_model(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose Linear and Embedding layers with torchao weights compute by this
    module's rules on plain float tensors; Unsupported names the first layer it cannot state."""
    copied = copy.deepcopy(model)
    for name, module in list(copied.named_modules()):
        weight = getattr(module, "weight", None)
        if _plain(weight):
            continue
        where = name or "the model"
        try:
            plain = dequantized(weight)
            if isinstance(module, torch.nn.Linear):
                if not _plain(module.bias):
                    raise Unsupported(f"a {type(module.bias).__name__} bias")
                swapped = _Linear(plain, None if module.bias is None else module.bias.detach(), activation_rule(weight))
            elif isinstance(module, torch.nn.Embedding) and activation_rule(weight) is None:
                swapped = _Embedding(module, plain)
            else:
                raise Unsupported(f"a {type(module).__name__} layer")
        except Unsupported as exc:
            raise Unsupported(f"{where}: {exc}") from None
        if not name:
            raise Unsupported("the model is itself a quantized layer")
        parent, _, leaf = name.rpartition(".")
        setattr(copied.get_submodule(parent) if parent else copied, leaf, swapped)
    return copied
