"""Quantization flows: turning what a case builds into the quantized model that runs."""

from __future__ import annotations

from .catalog import Case
from .compat import ao, quantize_fx

#: Where torch.package keeps the model, as PyTorch's package test names it.
PACKAGE_NAME = "test"
PACKAGE_RESOURCE = "test.pkl"


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


def get_attr_targets(graph_module) -> set[str]:
    """Targets of the get_attr nodes of an FX graph: what PyTorch's package test compares."""
    return {node.target for node in graph_module.graph.nodes if node.op == "get_attr"}


def runnable(case: Case, built, example):
    """The model a golden's expected output comes from, made from ``case.build()``'s result.

    Runs under whatever quantized engine is current, so calling it once per engine gives
    each backend's golden.
    """
    import torch

    if case.flow == "jit":
        return quantize_jit(torch.jit.script(built), example)
    if case.flow == "fx":
        return fx_transforms(built, example)
    if case.flow == "observer":
        built(example)  # calibrate, as PyTorch does before saving the state_dict
    return built


def build(case: Case):
    """``case.build()`` under the case's seed, so every engine gets the same weights."""
    import torch

    torch.manual_seed(case.seed + 1)
    return case.build()


def make_input(case: Case):
    import torch

    torch.manual_seed(case.seed)
    return case.input.make()
