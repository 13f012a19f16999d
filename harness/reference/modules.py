"""A quantized eager model run on the reference: its quantized modules swapped for reference ops."""

from __future__ import annotations

import copy
import types
import torch

from harness.reference.ops import conv_nd, dynamic_cell, dynamic_linear, dynamic_linear_fp16, dynamic_rnn, linear, rowwise_table
from harness.reference.primitives import dequantize, embedding_bag_rowwise, quantize

class Unsupported(Exception):
    """The model holds a quantized module the reference has no op for (the reason says which)."""


def _ref_linear(relu):
    def forward(self, x):
        return linear(x, self.weight(), self.bias(), self.scale, self.zero_point, relu=relu)
    return forward


def _ref_conv(relu, transposed):
    def forward(self, x):
        return conv_nd(x, self.weight(), self.bias(), self.scale, self.zero_point, self.stride, self.padding,
                       self.dilation, self.groups, relu=relu, transposed=transposed,
                       output_padding=self.output_padding if transposed else 0)
    return forward


def _ref_dynamic_linear(self, x):
    weight, bias = self._packed_params._weight_bias()
    if weight.dtype == torch.float16 or not weight.is_quantized:
        return dynamic_linear_fp16(x, weight.float(), bias)
    return dynamic_linear(x, weight, bias, reduce_range=True)  # nnqd.Linear's forward asks for it


def _ref_dynamic_linear_relu(self, x):
    return torch.relu(_ref_dynamic_linear(self, x))


def _ref_dynamic_rnn(mode):
    def forward(self, x, hx=None):
        if self.batch_first or x.dim() != 3:
            raise Unsupported(f"the reference {mode} takes unbatched-first 3-d input [T, B, I]")
        parts = self._weight_bias()
        return dynamic_rnn(mode, x, parts["weight"], parts["bias"], self.num_layers, self.bidirectional, hx,
                           reduce_range=True)
    return forward


def _ref_dynamic_cell(mode):
    def forward(self, x, hx=None):
        if x.dim() != 2:
            raise Unsupported(f"the reference {mode} cell takes batched 2-d input [B, I]")
        if hx is None:
            zeros = torch.zeros(x.shape[0], self.hidden_size)
            hx = (zeros, zeros.clone()) if mode == "LSTM" else zeros
        parts = self._weight_bias()
        return dynamic_cell(mode, x, hx, parts["weight"], parts["bias"], reduce_range=True,
                            nonlinearity=getattr(self, "nonlinearity", "tanh"))
    return forward


def _ref_embedding(self, indices):
    """Quantized Embedding: each index a bag of one, on the rowwise kernel (as ATen computes it)."""
    table, dim, bits = rowwise_table(self.weight())
    flat = indices.reshape(-1)
    out = embedding_bag_rowwise(table, dim, bits, flat, torch.arange(flat.numel()), mode="sum")
    return out.reshape(*indices.shape, dim)


def _ref_embedding_bag(self, indices, offsets=None, per_sample_weights=None, compressed_indices_mapping=None):
    if compressed_indices_mapping is not None or self.mode not in ("sum", "mean"):
        raise Unsupported(f"the reference EmbeddingBag has no pruned weights and no {self.mode!r} mode")
    last = self.include_last_offset
    if offsets is None:  # 2-d indices: one bag per row
        if indices.dim() != 2:
            raise Unsupported("an EmbeddingBag without offsets takes 2-d indices")
        offsets, indices, last = torch.arange(0, indices.numel(), indices.shape[1]), indices.reshape(-1), False
    table, dim, bits = rowwise_table(self.weight())
    return embedding_bag_rowwise(table, dim, bits, indices, offsets, mode=self.mode,
                                 per_sample_weights=per_sample_weights, include_last_offset=last)


def _ref_quantize(self, x):
    scale, zp = float(self.scale), int(self.zero_point)
    return torch._make_per_tensor_quantized_tensor(quantize(x.contiguous(), [scale], [zp], self.dtype), scale, zp)


def _ref_dequantize(self, x):
    if not isinstance(x, torch.Tensor) or not x.is_quantized:
        return x
    if x.qscheme() != torch.per_tensor_affine or x.dtype != torch.quint8:
        raise Unsupported(f"dequantize of {x.dtype} {x.qscheme()}")
    return dequantize(x.int_repr(), [x.q_scale()], [x.q_zero_point()], x.dtype)


def _ref_qfunctional(self):
    """QFunctional.add / add_relu: both operands dequantized, added in float, quantized again."""
    def add(a, b, relu=False):
        total = (dequantize(a.int_repr(), [a.q_scale()], [a.q_zero_point()], a.dtype)
                 + dequantize(b.int_repr(), [b.q_scale()], [b.q_zero_point()], b.dtype))
        if relu:
            total = torch.relu(total)
        scale, zp = float(self.scale), int(self.zero_point)
        return torch._make_per_tensor_quantized_tensor(quantize(total, [scale], [zp], torch.quint8), scale, zp)

    return add


def _ref_get_weight(self):
    """A reference module's (is_reference=True) weight, quantized and dequantized by the reference
    kernels: its forward is then the decomposition that defines it (float op on that weight)."""
    w = self.weight.detach().float().contiguous()
    if self.weight_qscheme == torch.per_tensor_affine:
        scales, zps, axis = [float(self.weight_scale)], [int(self.weight_zero_point)], None
    elif self.weight_qscheme == torch.per_channel_affine:
        scales, zps, axis = self.weight_scale.tolist(), [int(z) for z in self.weight_zero_point], int(self.weight_axis)
    else:
        raise Unsupported(f"a reference module's {self.weight_qscheme} weight")
    return dequantize(quantize(w, scales, zps, self.weight_dtype, axis), scales, zps, self.weight_dtype, axis)


def _substitutions():
    from harness.compat import nn_quantized

    nnq, nnqd, nniq = nn_quantized()
    table = {nnq.Linear: _ref_linear(False), nniq.LinearReLU: _ref_linear(True),
             nnqd.Linear: _ref_dynamic_linear, nnqd.LSTM: _ref_dynamic_rnn("LSTM"), nnqd.GRU: _ref_dynamic_rnn("GRU"),
             nnqd.LSTMCell: _ref_dynamic_cell("LSTM"), nnqd.GRUCell: _ref_dynamic_cell("GRU"),
             nnqd.RNNCell: _ref_dynamic_cell("RNN"), nnq.Embedding: _ref_embedding,
             nnq.EmbeddingBag: _ref_embedding_bag, nnq.Quantize: _ref_quantize,
             nnq.DeQuantize: _ref_dequantize}
    try:
        from torch.ao.nn.intrinsic.quantized.dynamic import LinearReLU as DynamicLinearReLU
    except ImportError:  # pragma: no cover - torch < 1.13
        DynamicLinearReLU = None
    if DynamicLinearReLU is not None:
        table[DynamicLinearReLU] = _ref_dynamic_linear_relu
    for d in (1, 2, 3):
        table[getattr(nnq, f"Conv{d}d")] = _ref_conv(False, False)
        table[getattr(nniq, f"ConvReLU{d}d")] = _ref_conv(True, False)
        table[getattr(nnq, f"ConvTranspose{d}d")] = _ref_conv(False, True)
    return table


#: modules that compute nothing quantized (containers, float activations, identities)
_PASSIVE = ("Sequential", "ModuleList", "ModuleDict", "Identity", "ReLU", "Dropout", "QuantStub", "DeQuantStub",
            "LinearPackedParams", "EmbeddingPackedParams", "PackedParameter")


def reference_model(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of a quantized model (an eager tree or an FX GraphModule) whose quantized modules
    run the reference ops, and whose reference modules (is_reference=True) quantize their
    weights with the reference kernels.

    Raises Unsupported naming the first quantized module type the reference cannot run
    (embeddings and the like).
    """
    if isinstance(model, torch.jit.ScriptModule) or not isinstance(model, torch.nn.Module):  # graphs.py runs those
        raise Unsupported("the reference runs eager module trees and FX graph modules, not TorchScript")
    table = _substitutions()
    copied = copy.deepcopy(model)
    for name, module in copied.named_modules():
        kind = type(module)
        if kind.__name__ == "QFunctional":
            add = _ref_qfunctional(module)
            module.add = add
            module.add_relu = lambda a, b, add=add: add(a, b, relu=True)
            continue
        if ".reference." in kind.__module__:
            if not hasattr(module, "get_weight"):
                raise Unsupported(f"{kind.__name__} ({name}): a reference module without get_weight")
            module.get_weight = types.MethodType(_ref_get_weight, module)
        elif kind in table:
            module.forward = types.MethodType(table[kind], module)
        elif kind.__module__.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized",
                                         "torch.nn.quantized", "torch.ao.nn.quantizable")):
            if kind.__name__ not in _PASSIVE:
                raise Unsupported(f"the reference has no op for {kind.__name__} ({name or 'the model'})")
    return copied
