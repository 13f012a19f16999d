"""The torchao stack's successor: ``quantize_`` with int8 dynamic activations and int8 weights, the
config torchao points eager dynamic and static int8 users of Linear models to."""

from __future__ import annotations

from harness.stacks import Successor
from harness.stacks.torchao import compat


class Int8Dynamic(Successor):
    name = "torchao-int8-dynamic"
    artifact = "state_dict"
    description = "torchao quantize_ with Int8DynamicActivationInt8WeightConfig on every Linear, run by torch"

    def problem(self):
        return compat.problem()

    def covers(self, module) -> str | None:
        import torch

        leaves = [m for m in module.modules() if not list(m.children()) and list(m.parameters(recurse=False))]
        others = sorted({type(m).__name__ for m in leaves if not isinstance(m, torch.nn.Linear)})
        if not any(isinstance(m, torch.nn.Linear) for m in leaves):
            return "no Linear layer: quantize_'s int8 configs quantize Linear layers only"
        if others:
            return f"not a Linear-only model ({', '.join(others)} would stay float)"
        return None

    def make(self, module, example, dynamic: bool):
        return compat.quantize(module.eval(), "int8-dynamic")


SUCCESSORS = (Int8Dynamic(),)
