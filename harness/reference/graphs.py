"""A quantized model run on the reference (``reference_output``), whatever holds it:

- an eager module tree, with its quantized modules swapped for reference ops
  (harness.reference.modules);
- an FX GraphModule (FX graph mode, a PT2E program), with the same swaps, through torch.fx's
  Interpreter, its quantized calls done by the reference (harness.reference.calls);
- a TorchScript or lite-interpreter module (JIT graph mode, on-device PTQ, any scripted or traced
  golden), run by torch's own interpreter under a TorchDispatchMode that does each quantized call
  it makes with the same table of reference calls;
- a MinMax observer, whose output is its input and qparams from the reference's rule.

The calls left to torch do no quantized arithmetic: float ops between a dequantize and a
quantize, and the data movement and relu of quantized tensors (exact on every backend). Under the
dispatch mode any other op on a quantized tensor is refused, by name."""

from __future__ import annotations

import torch
import torch.fx
from harness.compat import ao, dispatch_mode
from harness.reference.calls import QUANTIZED_OPS, dequantize_tensor, qualified_name, quantize_tensor, quantized_call
from harness.reference.modules import Unsupported, reference_model
from harness.reference.ops import observer_output


class ReferenceInterpreter(torch.fx.Interpreter):
    """Runs a GraphModule whose quantized submodules were swapped by ``reference_model``."""

    def call_function(self, target, args, kwargs):
        if target is torch.quantize_per_tensor:
            return quantize_tensor(*args, **kwargs)
        if target is torch.dequantize:
            return dequantize_tensor(args[0])
        op = quantized_call(target)
        if op is not None:
            if op not in QUANTIZED_OPS:
                raise Unsupported(f"the reference has no rule for {op}")
            return QUANTIZED_OPS[op](*args, **kwargs)
        return super().call_function(target, args, kwargs)

    def call_method(self, target, args, kwargs):
        if target == "dequantize":
            return dequantize_tensor(args[0])
        return super().call_method(target, args, kwargs)


#: ops that may take a quantized tensor under the dispatch mode: they move or read its integers,
#: or (relu, max pooling) commute with dequantization, so every backend gives the same bits
_EXACT_ON_QUANTIZED = frozenset(f"aten::{name}" for name in (
    "relu", "relu_", "clone", "contiguous", "detach", "alias", "view", "_unsafe_view", "reshape", "_reshape_alias",
    "flatten", "permute", "transpose", "t", "squeeze", "unsqueeze", "select", "slice", "narrow", "expand",
    "as_strided", "split", "chunk", "unbind", "max_pool1d", "max_pool2d", "max_pool3d", "quantized_max_pool1d",
    "quantized_max_pool2d", "quantized_max_pool3d", "int_repr", "q_scale", "q_zero_point", "qscheme",
    "q_per_channel_scales", "q_per_channel_zero_points", "q_per_channel_axis", "size", "stride", "sym_size",
    "sym_stride", "dim", "is_contiguous", "empty_like"))


def _holds_quantized(values) -> bool:
    for value in values:
        if isinstance(value, torch.Tensor) and value.is_quantized:
            return True
        if isinstance(value, (list, tuple)) and _holds_quantized(value):
            return True
    return False


class ReferenceMode(dispatch_mode()):
    """While active, every quantized call any code makes (TorchScript's and the lite
    interpreter's included: they call ops through the dispatcher) is done by the reference;
    ``calls`` counts them. A quantized op without a rule raises Unsupported naming it."""

    def __init__(self):
        super().__init__()
        self.calls = 0
        #: the first Unsupported raised: TorchScript's interpreter rethrows it as a RuntimeError
        self.refused: Unsupported | None = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = qualified_name(func)
        try:
            if name in QUANTIZED_OPS:
                self.calls += 1
                return QUANTIZED_OPS[name](*args, **kwargs)
            if quantized_call(func) is not None:
                raise Unsupported(f"the reference has no rule for {name}")
            if name not in _EXACT_ON_QUANTIZED and _holds_quantized((*args, *kwargs.values())):
                raise Unsupported(f"the reference has no rule for {name} on a quantized tensor")
        except Unsupported as exc:
            self.refused = self.refused or exc
            raise
        return func(*args, **kwargs)


def _is_torchscript(model) -> bool:
    return isinstance(model, torch.jit.ScriptModule) or type(model).__name__ == "LiteScriptModule"


def reference_output(model, example, forward=None):
    """The output of ``model`` with every quantized computation done by the reference.

    ``forward(model, example)`` runs a TorchScript or lite module (its method of interest);
    by default the model is called on ``example``. A TorchScript model that makes no quantized
    call (a float model) has no reference: Unsupported says so."""
    args = example if isinstance(example, tuple) else (example,)
    with torch.no_grad():
        if _is_torchscript(model):
            mode = ReferenceMode()
            try:
                with mode:
                    out = forward(model, example) if forward is not None else model(*args)
            except Exception:
                if mode.refused is not None:
                    raise mode.refused from None
                raise
            if not mode.calls:
                raise Unsupported("it makes no quantized call: a float model is its own reference")
            return out
        if isinstance(model, ao().ObserverBase):
            try:
                return observer_output(model, args[0])
            except ValueError as exc:
                raise Unsupported(str(exc)) from None
        _refuse_tensor_subclasses(model)
        ref = reference_model(model)
        if isinstance(ref, torch.fx.GraphModule):
            try:
                return ReferenceInterpreter(ref).run(*args)
            except Unsupported as exc:  # the interpreter appends the node and its stack to the message
                raise Unsupported(str(exc).strip().splitlines()[0]) from None
        return ref(*args)


def _refuse_tensor_subclasses(model) -> None:
    """A module whose weights are tensor subclasses (a library's quantized tensors) computes in the
    subclass's own code, which the reference has no rule for: Unsupported names the class."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if type(tensor) not in (torch.Tensor, torch.nn.Parameter):
            raise Unsupported(f"{name} is a {type(tensor).__name__} (a tensor subclass computing in "
                              f"{type(tensor).__module__.split('.')[0]}'s code): the reference has no rule for it")
