"""The torch.ao stack's flows: eager, dynamic and QAT modules, FX and JIT graph mode, on-device
dynamic PTQ, PT2E with the x86 quantizer, and observers."""

from __future__ import annotations

from harness.compat import ao, quantize_fx
from harness.stacks import Flow, quantized
from harness.stacks.torch_ao.compat import ondevice_dynamic_jit, pt2e_problem


def quantize_jit(script_module, example):
    """PyTorch's JIT graph-mode PTQ: default_qconfig for the whole model, one calibration call."""
    q = ao()

    def calibrate(model, data):
        model(data)

    return q.quantize_jit(script_module, {"": q.default_qconfig}, calibrate, [example])


def fx_transforms(module, example):
    """PyTorch's package test transforms: prepare_fx / calibrate / convert_fx with fbgemm's qconfig."""
    qfx = quantize_fx()
    qconfig = ao().get_default_qconfig("fbgemm")
    prepared = qfx.prepare_fx(module, {"": qconfig}, example_inputs=(example,))
    prepared(example)
    return qfx.convert_fx(prepared)


def quantize_ondevice(script_module, example, qconfig_name: str = "default_dynamic_qconfig"):
    """On-device dynamic PTQ as a phone would run it: insert the observe/quantize methods,
    then reset_observers_forward, observe_forward and quantize_forward on the example."""
    module = ondevice_dynamic_jit()(script_module, {"": getattr(ao(), qconfig_name)}, "forward", True)
    args = example if isinstance(example, tuple) else (example,)
    module.reset_observers_forward()
    module.observe_forward(*args)
    module.quantize_forward(*args)
    return module


class Eager(Flow):
    legacy = True
    name = "eager"
    description = "eager-mode static PTQ (or a quantized module built directly): build returns the quantized module"

    def model_flow(self, model) -> bool:
        return False  # the default flow: what no other flow claims


class _ByModules(Flow):
    """An eager flow told apart on a user's model by where its modules' classes live."""

    legacy = True

    marker = ""

    def model_flow(self, model) -> bool:
        import torch

        if not isinstance(model, torch.nn.Module) or isinstance(model, (torch.jit.ScriptModule, torch.fx.GraphModule)):
            return False
        return any(self.marker in type(m).__module__ for m in model.modules())


class Dynamic(_ByModules):
    name = "dynamic"
    description = "eager-mode dynamic PTQ (quantize_dynamic, nnqd modules): build returns the quantized module"
    marker = ".dynamic"


class QAT(_ByModules):
    name = "qat"
    description = "eager-mode QAT, prepare_qat -> seeded training -> convert: build returns the quantized module"
    marker = ".qat"


class FX(Flow):
    name = "fx"
    description = ("FX graph mode: build returns the float module, transform (default PyTorch's package-test "
                   "prepare_fx/convert_fx) quantizes it; a package holds the float module and its replay "
                   "re-runs the transform")
    graph_targets = True
    legacy = True

    def transform(self, case):
        return case.transform or fx_transforms

    def float_model(self, case):
        return case.build()

    def runnable(self, case, built, example):
        return quantized(self.transform(case), built, example)

    def scripted(self, case, built, example, trace):
        return super().scripted(case, self.runnable(case, built, example), example, trace)

    def skeleton(self, case, built, example):
        return self.runnable(case, built, example)

    def model_flow(self, model) -> bool:
        import torch

        return isinstance(model, torch.fx.GraphModule)


class _OnScript(Flow):
    """A flow whose quantization step runs on the TorchScript module of the float model."""

    default = staticmethod(quantize_jit)
    legacy = True

    def transform(self, case):
        return case.transform or self.default

    def float_model(self, case):
        return case.build()

    def runnable(self, case, built, example):
        return self.scripted(case, built, example, trace=False)

    def scripted(self, case, built, example, trace):
        return self.transform(case)(super().scripted(case, built, example, trace), example)


class JIT(_OnScript):
    name = "jit"
    description = "JIT graph mode: build returns the float module, transform (default quantize_jit) quantizes its script or trace"

    def model_flow(self, model) -> bool:
        import torch

        return isinstance(model, torch.jit.ScriptModule)


class OnDevice(_OnScript):
    name = "ondevice"
    description = ("on-device dynamic PTQ: like jit, with _quantize_ondevice_dynamic_jit; the output is the "
                   "quantized_forward method's")
    default = staticmethod(quantize_ondevice)


class PT2E(Flow):
    name = "pt2e"
    description = "PT2E: build returns the converted (convert_pt2e) graph module"
    # convert_pt2e of a QAT model takes seconds, and the result does not depend on the backend
    built_once = True

    def problem(self):
        return pt2e_problem()


class Observer(Flow):
    legacy = True
    name = "observer"
    description = "build returns an observer, calibrated once on the input; its output comes with its qparams"

    def runnable(self, case, built, example):
        built(example)  # calibrate, as PyTorch does before saving the state_dict
        return built

    def output(self, model, out):
        scale, zero_point = model.calculate_qparams()
        return (out, scale, zero_point)


FLOWS = (Eager(), Dynamic(), QAT(), FX(), JIT(), OnDevice(), PT2E(), Observer())
