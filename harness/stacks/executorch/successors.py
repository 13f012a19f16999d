"""The ExecuTorch stack's successor: PT2E with the XNNPACK quantizer, lowered to the XNNPACK
delegate as a .pte program and run by ExecuTorch's runtime, as apps ship what the lite interpreter
ran."""

from __future__ import annotations

from harness.stacks import Successor
from harness.stacks.executorch import compat
from harness.stacks.executorch.recipes import RECIPES


class XnnpackPTE(Successor):
    name = "pt2e-xnnpack"
    artifact = ".pte"
    description = ("PT2E with XNNPACKQuantizer (symmetric, per channel; static or dynamic), lowered to the "
                   "XNNPACK delegate and run by ExecuTorch's runtime")

    def problem(self):
        return compat.problem()

    def make(self, module, example, dynamic: bool):
        import torch

        from harness.stacks.executorch.flows import Program, quantize

        args = example if isinstance(example, tuple) else (example,)
        converted = quantize(RECIPES["dynamic" if dynamic else "static-pc"], module, example)
        self.check_quantized(converted)
        data, missing = compat.lower(torch.export.export(converted, args))
        return Program(compat.load_program(data), missing)


SUCCESSORS = (XnnpackPTE(),)
