"""The ExecuTorch stack's flow: a float model quantized by a recipe (PT2E with the XNNPACK
quantizer, or torchao's 8da4w), lowered per backend and run by ExecuTorch's runtime."""

from __future__ import annotations

import weakref

from harness.backends import current
from harness.stacks import Flow, quantized
from harness.stacks.executorch import compat
from harness.stacks.executorch.recipes import Recipe


class Program:
    """A .pte program as the runtime loaded it; called, it runs the method of the current backend
    (the XNNPACK one outside the stack's backends). ``missing``: why it has no portable method."""

    def __init__(self, program, missing: str | None = None):
        self.program, self.missing = program, missing
        self._methods: dict = {}

    def __call__(self, *args):
        backend = current() if current() in compat.METHODS else "xnnpack"
        if backend not in self._methods:
            if self.missing and compat.METHODS[backend] not in self.program.method_names:
                raise RuntimeError(self.missing)
            self._methods[backend] = compat.method(self.program, backend)
        return _outputs(self._methods[backend].execute(list(args)))


class Lowered:
    """A quantized model as the harness runs it: under one of the stack's backends, the program
    lowered by this ExecuTorch (once, every backend's method at once) and run by its runtime;
    under any other (making a .pt2, the reference), the quantized module itself."""

    def __init__(self, module, example):
        self.module, self.example = module, example
        self._program: Program | None = None

    def __call__(self, *args):
        if current() not in compat.METHODS:
            return self.module(*args)
        if self._program is None:
            data, missing = compat.lower(self.exported())
            self._program = Program(compat.load_program(data), missing)
        return self._program(*args)

    def exported(self):
        import torch

        return torch.export.export(self.module, self.example if isinstance(self.example, tuple) else (self.example,))


#: a golden .pt2's lowering, shared by the backends that replay it (its ExportedProgram is read once
#: per golden: harness.making.artifacts.export.decode)
_LOWERED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _outputs(values):
    values = list(values)
    return values[0] if len(values) == 1 else tuple(values)


def output_grid(module):
    """(scale, zero_point, quant_min, quant_max) of the dequantize a quantized graph's single output
    comes from, or None (a float output: dynamic quantization, or no graph)."""
    graph = getattr(module, "graph", None)
    if graph is None:
        return None
    outputs = [n for n in graph.nodes if n.op == "output"]
    args = outputs[0].args[0] if outputs else None
    node = args[0] if isinstance(args, (tuple, list)) and len(args) == 1 else None
    if node is None or "dequantize_per_tensor" not in str(getattr(node, "target", "")):
        return None
    scale, zero_point, qmin, qmax = node.args[1:5]
    if not isinstance(scale, float) or not all(isinstance(v, int) for v in (zero_point, qmin, qmax)):
        return None
    return scale, zero_point, qmin, qmax


class ExecuTorch(Flow):
    name = "executorch"
    description = ("ExecuTorch: build returns the float module, transform (a recipe of "
                   "harness.stacks.executorch.recipes) quantizes it (PT2E with the XNNPACK quantizer, or "
                   "torchao's 8da4w); it runs lowered to the XNNPACK delegate (backend xnnpack) or on "
                   "ExecuTorch's portable kernels (backend portable); a .pt2 is lowered again on replay")
    library_files = True
    # quantizing (QAT's convert takes seconds) does not depend on the backend
    built_once = True
    backends = ("xnnpack", "portable")

    def problem(self):
        return compat.problem()

    def transform(self, case):
        if isinstance(case.transform, Recipe):
            return lambda module, example, recipe=case.transform: quantize(recipe, module, example)
        return case.transform

    def runnable(self, case, built, example):
        model = built if isinstance(built, Lowered) else quantized(self.transform(case), built, example)
        return model if isinstance(model, Lowered) else Lowered(model, example)

    def exportable(self, model):
        return model.module if isinstance(model, Lowered) else model

    def from_program(self, case, program):
        if program not in _LOWERED:
            _LOWERED[program] = Lowered(program.module(), _example_of(program))
        return _LOWERED[program]

    def output(self, model, out):
        """A quantized graph's output (run by torch or by the runtime) on its output grid, so a golden
        measures replays in its steps; a golden .pte's float output as it is (harness.compare
        measures it in the golden's steps)."""
        grid = output_grid(model.module if isinstance(model, Lowered) else model)
        if grid is None:
            return out
        import torch

        scale, zero_point, qmin, qmax = grid
        return torch.quantize_per_tensor(out.float(), scale, zero_point, torch.qint8 if qmin < 0 else torch.quint8)

    def reference_model(self, model):
        module = model.module if isinstance(model, Lowered) else model
        if any(type(p).__module__.startswith("torchao") for p in getattr(module, "parameters", list)()):
            # torchao's 8da4w weights: the torchao stack states what they compute
            from harness.stacks.torchao.reference import reference_model

            return reference_model(module)
        return module

    def kind_problem(self, kind):
        return None if kind == "pte" else super().kind_problem(kind)

    def to_pte(self, model):
        return compat.lower(model.exported())[0]

    def read_pte(self, data):
        return Program(compat.load_program(data))

    def record(self, case):
        if compat.problem():
            return {}
        recipe = case.transform if isinstance(case.transform, Recipe) else None
        return {"executorch": compat.version(), "torchao": compat.torchao_version() or "none",
                "recipe": recipe.describe() if recipe else "the case's own transform"}


def quantize(recipe: Recipe, module, example):
    """``module`` (float) quantized by ``recipe``: a converted PT2E graph module, or torchao's
    quantize_ applied in place."""
    import torch

    args = example if isinstance(example, tuple) else (example,)
    if recipe.group:
        return compat.quantize_8da4w(module.eval(), recipe.group)
    prepare, prepare_qat, convert, to_eval = compat.pt2e()
    quantizer = compat.xnnpack_quantizer(recipe)
    if recipe.qat:
        from harness.recipes import train

        prepared = prepare_qat(torch.export.export(module.train(), args).module(), quantizer)
        train(prepared, tuple(args[0].shape))
        to_eval(prepared)
    else:
        prepared = prepare(torch.export.export(module.eval(), args).module(), quantizer)
    prepared(*args)
    return convert(prepared)


def _example_of(program):
    """Example arguments of an ExportedProgram's inputs (zeros of their recorded shapes and dtypes):
    what lowering it again traces with."""
    import torch

    shapes = [spec.arg for spec in program.graph_signature.input_specs if spec.kind.name == "USER_INPUT"]
    metas = {n.name: n.meta.get("val") for n in program.graph.nodes if n.op == "placeholder"}
    return tuple(torch.zeros(metas[s.name].shape, dtype=metas[s.name].dtype) for s in shapes)


FLOWS = (ExecuTorch(),)
