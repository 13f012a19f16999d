"""The torchao stack's flow: ``quantize_`` with a config, on the float module."""

from __future__ import annotations

from harness.stacks import Flow, quantized
from harness.stacks.torchao import compat
from harness.stacks.torchao.recipes import Recipe


class Quantize(Flow):
    name = "torchao"
    description = ("torchao's quantize_: build returns the float module, transform (a recipe of "
                   "harness.stacks.torchao.compat) quantizes it in place; a state_dict loads into the float "
                   "module with assign=True, as torchao's users reload a checkpoint")
    # tensor subclasses (torchao's quantized weights) and torch.ops.torchao in every file
    library_files = True

    def problem(self):
        return compat.problem()

    def transform(self, case):
        """A Recipe (harness.stacks.torchao.recipes) as the step that quantizes the float module;
        any other transform as it is."""
        if isinstance(case.transform, Recipe):
            return lambda module, example, recipe=case.transform: compat.quantize(module.eval(), recipe)
        return case.transform

    def runnable(self, case, built, example):
        return quantized(self.transform(case), built, example)

    def load_state(self, model, state) -> None:
        compat.check_proportions(state)  # a checkpoint's side tensors cannot outgrow its weights
        # a quantized tensor subclass cannot be copied into a float parameter
        model.load_state_dict(state, assign=True)

    def exportable(self, model):
        return compat.exportable(model)

    def kind_problem(self, kind):
        return compat.safetensors_problem() if kind == "safetensors" else None

    def to_safetensors(self, state):
        return compat.flatten_for_safetensors(state)

    def from_safetensors(self, tensors, metadata):
        return compat.unflatten_from_safetensors(tensors, metadata)

    def reference_model(self, model):
        from harness.stacks.torchao.reference import reference_model

        return reference_model(model)

    def record(self, case):
        if compat.problem():
            return {}
        recipe = case.transform if isinstance(case.transform, Recipe) else None
        try:
            config = compat.describe(recipe) if recipe is not None else "the case's own transform"
        except compat.Unavailable as exc:
            config = f"none: {exc}"
        return {"torchao": compat.version(), "config": config, "kernels": compat.kernels()}

    def replay_note(self, case):
        return f"torchao {compat.version()}'s C++ kernels: {compat.kernels()}" if compat.kernels_missing() else None


FLOWS = (Quantize(),)
