"""Making a case's models: its build under its seed, its input, and the quantized model each
artifact kind needs, each asked of the case's flow (harness.stacks), never by a flow's name."""

from __future__ import annotations

import copy

import torch

from harness import stacks
from harness.catalog import Case
from harness.compat_shortcuts import qparams_from_range, remembered_histogram_searches
from harness.notices import Remembered

#: Where torch.package keeps the model, as PyTorch's package test names it.
PACKAGE_NAME = "test"
PACKAGE_RESOURCE = "test.pkl"


def get_attr_targets(graph_module) -> set[str]:
    """Targets of the get_attr nodes of an FX graph: what PyTorch's package test compares."""
    return {node.target for node in graph_module.graph.nodes if node.op == "get_attr"}


def artifact_problem(case: Case, kind: str) -> str | None:
    """Why this install cannot write or read artifact ``kind`` of ``case``: torch's (harness.compat),
    or the case's flow's (a flow that keeps no such file, or lacks the library that writes it)."""
    from harness.compat import kind_problem

    return kind_problem(kind) or stacks.of_case(case).kind_problem(kind)


def to_safetensors(case: Case, state: dict) -> tuple[dict, dict | None]:
    """A state_dict as safetensors holds it: (plain tensors by name, string metadata), the flow's way."""
    return stacks.of_case(case).to_safetensors(state)


def from_safetensors(case: Case, tensors: dict, metadata: dict | None) -> dict:
    """The state_dict a safetensors file's tensors and metadata stand for, the flow's way."""
    return stacks.of_case(case).from_safetensors(tensors, metadata)


def transform(case: Case):
    """The case's quantization step: its own, or its flow's default (None: build quantizes)."""
    return stacks.of_case(case).transform(case)


def runnable(case: Case, built, example):
    """The model a golden's expected output comes from, made from ``case.build()``'s result.

    Runs under whatever quantized backend is current, so calling it once per backend gives
    each backend's golden.
    """
    return stacks.of_case(case).runnable(case, built, example)


def to_script(case: Case, built, example, trace: bool = False):
    """The model as TorchScript (scripted, or traced), quantized where the flow quantizes TorchScript."""
    return stacks.of_case(case).scripted(case, built, example, trace)


def requantized(case: Case, module, example):
    """A packaged float module, quantized again by today's flow (the package kind's replay)."""
    return stacks.of_case(case).requantized(case, module, example)


def load_state(case: Case, model, state) -> None:
    """``state`` loaded into ``model`` as the flow's users do."""
    stacks.of_case(case).load_state(model, state)


def exportable(case: Case, model):
    """The quantized model as this release's torch.export takes it."""
    return stacks.of_case(case).exportable(model)


def from_program(case: Case, program):
    """The model a replay runs of an exported program read from a golden, the flow's way."""
    return stacks.of_case(case).from_program(case, program)


def to_pte(case: Case, model) -> bytes:
    """A quantized model as an ExecuTorch program, the flow's way."""
    return stacks.of_case(case).to_pte(model)


def read_pte(case: Case, data: bytes):
    """A vetted .pte golden loaded by the flow's runtime."""
    return stacks.of_case(case).read_pte(data)


def output(case: Case, model, out):
    """What a golden records of ``model``'s output ``out``."""
    return stacks.of_case(case).output(model, out)


def library_problem(case: Case) -> str | None:
    """Why no file of ``case`` can be read here, where every file of its flow holds its library's
    own tensors or operators and that library is missing; else None."""
    flow = stacks.of_case(case)
    return flow.problem() if flow.library_files else None


def flow_of(model) -> str:
    """The flow a user's quantized model came from, read off its modules (for a manifest entry)."""
    return stacks.model_flow(model)


#: skeletons by (case, backend): a replay loads every golden version's state_dict of a case
#: into a copy of one, instead of building and calibrating the model again for each
_skeletons: dict = {}
_SKELETONS = 16
_uncopyable: set = set()  # (case, backend) keys whose skeleton deepcopy refuses


def skeleton(case: Case, example):
    """A module of the case's structure, for a golden state_dict to load into (the flow says which).

    Built once per (case, quantized backend) and process, with the qparams its calibration
    would search for left to the state_dict (compat_shortcuts.qparams_from_range), and handed out as a
    deep copy, so loading into it or running it leaves the next one untouched; the build's
    warnings come with every copy (notices.Remembered). A model that cannot be deep-copied
    (qnnpack cannot unpack its 3-d convolutions' weights) is built afresh each time.
    """
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
    with qparams_from_range():
        return stacks.of_case(case).skeleton(case, build(case), example)


#: built models of the flows that build once per process (Flow.built_once), by case
_built: dict = {}


def build(case: Case):
    """``case.build()`` under the case's seed, so every backend gets the same weights."""
    if stacks.of_case(case).built_once:
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
    torch.manual_seed(case.seed)
    return case.input.make()
