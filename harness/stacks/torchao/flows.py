"""The torchao stack's flow: ``quantize_`` with a config, on the float module."""

from __future__ import annotations

from harness.stacks import Flow, quantized
from harness.stacks.torchao import compat


class Quantize(Flow):
    name = "torchao"
    description = ("torchao's quantize_: build returns the float module, transform (a recipe of "
                   "harness.stacks.torchao.compat) quantizes it in place; a state_dict loads into the float "
                   "module with assign=True, as torchao's users reload a checkpoint")
    # tensor subclasses (torchao's quantized weights) and torch.ops.torchao in every file
    library_files = True

    def problem(self):
        return compat.problem()

    def runnable(self, case, built, example):
        return quantized(self.transform(case), built, example)

    def load_state(self, model, state) -> None:
        # a quantized tensor subclass cannot be copied into a float parameter
        model.load_state_dict(state, assign=True)

    def exportable(self, model):
        return compat.exportable(model)


FLOWS = (Quantize(),)
