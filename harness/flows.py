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


def quantize_ondevice(script_module, example, qconfig_name: str = "default_dynamic_qconfig"):
    """On-device dynamic PTQ as a phone would run it: insert the observe/quantize methods,
    then reset_observers_forward, observe_forward and quantize_forward on the example."""
    from .compat import ondevice_dynamic_jit

    module = ondevice_dynamic_jit()(script_module, {"": getattr(ao(), qconfig_name)}, "forward", True)
    args = example if isinstance(example, tuple) else (example,)
    module.reset_observers_forward()
    module.observe_forward(*args)
    module.quantize_forward(*args)
    return module


#: the flows whose quantization step runs on a TorchScript module, and their default step
_ON_SCRIPT = {"jit": quantize_jit, "ondevice": quantize_ondevice}


def transform(case: Case):
    """The case's quantization step: its own, or its flow's default."""
    if case.transform is not None:
        return case.transform
    if case.flow == "fx":
        return fx_transforms
    return _ON_SCRIPT.get(case.flow)


#: flows whose quantization step runs on the built (float) module: ``transform(module, example)``
_ON_MODULE = frozenset({"fx", "torchao"})


def to_script(case: Case, built, example, trace: bool = False):
    """``built`` scripted (or traced), then quantized where the flow quantizes TorchScript."""
    import torch

    source = runnable(case, built, example) if case.flow == "fx" else built
    module = torch.jit.trace(source, example) if trace else torch.jit.script(source)
    if case.flow in _ON_SCRIPT:
        module = transform(case)(module, example)
    return module


def quantize(case: Case, module, example):
    """The flow's quantization step on a built float module (fx, torchao), with HistogramObserver's
    search done once for the same calibration under every engine, and FX tracing without
    per-node stack traces (compat_shortcuts)."""
    from .compat_shortcuts import fx_without_stack_traces, remembered_histogram_searches

    with remembered_histogram_searches(), fx_without_stack_traces():
        return transform(case)(module, example)


def runnable(case: Case, built, example):
    """The model a golden's expected output comes from, made from ``case.build()``'s result.

    Runs under whatever quantized engine is current, so calling it once per engine gives
    each backend's golden.
    """
    if case.flow in _ON_SCRIPT:
        return to_script(case, built, example)
    if case.flow in _ON_MODULE:
        return quantize(case, built, example)
    if case.flow == "observer":
        built(example)  # calibrate, as PyTorch does before saving the state_dict
    return built


#: skeletons by (case, engine): a replay loads every golden version's state_dict of a case
#: into a copy of one, instead of building and calibrating the model again for each
_skeletons: dict = {}
_SKELETONS = 16
_uncopyable: set = set()  # (case, engine) keys whose skeleton deepcopy refuses


def skeleton(case: Case, example):
    """A module of the case's structure, for a golden state_dict to load into (torchao's: the
    float module, whose parameters the checkpoint's quantized tensors replace).

    Built once per (case, quantized engine) and process, with the qparams its calibration
    would search for left to the state_dict (compat_shortcuts.qparams_from_range), and handed out as a
    deep copy, so loading into it or running it leaves the next one untouched; the build's
    warnings come with every copy (notices.Remembered). A model that cannot be deep-copied
    (qnnpack cannot unpack its 3-d convolutions' weights) is built afresh each time.
    """
    import copy

    import torch

    from .notices import Remembered

    key = (case.source, case.id, case.build, torch.backends.quantized.engine)
    if key in _uncopyable:
        return _build_skeleton(case, example)
    if key not in _skeletons:
        if len(_skeletons) >= _SKELETONS:
            _skeletons.pop(next(iter(_skeletons)))
        _skeletons[key] = Remembered(lambda: _build_skeleton(case, example))
    module = _skeletons[key].get()
    try:
        return copy.deepcopy(module)
    except RuntimeError:
        del _skeletons[key]
        _uncopyable.add(key)
        return module  # the last use of this one: every later call builds its own


def _build_skeleton(case: Case, example):
    from .compat_shortcuts import qparams_from_range

    with qparams_from_range():
        built = build(case)
        return runnable(case, built, example) if case.flow == "fx" else built


def load_state(case: Case, model, state) -> None:
    """``state`` loaded into ``model`` as the flow's users do: torchao's checkpoints with
    ``assign=True`` (a quantized tensor subclass cannot be copied into a float parameter)."""
    if case.flow == "torchao":
        model.load_state_dict(state, assign=True)
    else:
        model.load_state_dict(state)


def exportable(case: Case, model):
    """The quantized model as this release's torch.export takes it."""
    if case.flow == "torchao":
        from . import compat_torchao

        return compat_torchao.exportable(model)
    return model


#: flows whose built model does not depend on the quantized engine and is slow to make
#: (convert_pt2e of a QAT model takes seconds): built once per process, then copied
_BUILT_ONCE = frozenset({"pt2e"})
_built: dict = {}


def build(case: Case):
    """``case.build()`` under the case's seed, so every engine gets the same weights."""
    import copy

    import torch

    from .compat_shortcuts import remembered_histogram_searches

    if case.flow in _BUILT_ONCE:
        key = (case.source, case.id, case.build)
        if key not in _built:
            if len(_built) >= 4:
                _built.pop(next(iter(_built)))
            torch.manual_seed(case.seed + 1)
            _built[key] = case.build()
        return copy.deepcopy(_built[key])
    torch.manual_seed(case.seed + 1)
    with remembered_histogram_searches():  # an eager PTQ build calibrates and converts
        return case.build()


def make_input(case: Case):
    import torch

    torch.manual_seed(case.seed)
    return case.input.make()


def flow_of(model) -> str:
    """The flow a user's quantized model came from, read off its modules (for a manifest entry)."""
    import torch

    if isinstance(model, torch.jit.ScriptModule):
        return "jit"
    if isinstance(model, torch.fx.GraphModule):
        return "fx"
    names = {type(m).__module__ for m in model.modules()} if isinstance(model, torch.nn.Module) else set()
    for flow, marker in (("dynamic", ".dynamic"), ("qat", ".qat")):
        if any(marker in name for name in names):
            return flow
    return "eager"
