"""Quantization stacks: each one folder (``harness/stacks/<name>/``), known to the core only through
the ``Stack`` and ``Flow`` interfaces below and the one registry line that names it.

A stack is one way users quantize and ship models: its flows (how a case's model is quantized and
read back), the packages it needs beside torch and which of their releases pair with each torch
release, the classes its checkpoints name and the operators its files call (the vetting admits
them), and how its library's own version is told. Nothing outside a stack's folder names one of
its flows or packages: a test of the house asserts it (tests/test_stacks.py).

Adding a stack is a folder with a ``STACK`` object that satisfies ``Stack``, and a line in
``REGISTRY``.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any, Protocol, Sequence

from harness.versions import requirement_name

#: a harness.catalog.Case (the catalog imports this registry, so the name is not imported here)
Case = Any

#: the registered stacks, by module; the first one's first flow is a case's default flow
REGISTRY = (
    "harness.stacks.torch_ao",
    "harness.stacks.torchao",
    "harness.stacks.executorch",
)


class Flow:
    """How one flow turns what a case's ``build`` returns into the model that runs, and reads a
    state_dict back. The defaults fit a flow whose ``build`` returns the quantized module itself;
    a stack's flows override what differs."""

    #: the name cases give as ``flow=`` (unique across stacks)
    name: str = ""
    #: what ``build`` returns and how the quantized model is made, for the docs and errors
    description: str = ""
    #: every file of the flow holds its library's own tensors or operators: none of them can be
    #: read, nor its model rebuilt, without that library
    library_files: bool = False
    #: the built model does not depend on the quantized backend and is slow to make: built once
    #: per process and handed out as copies
    built_once: bool = False
    #: the model is a graph whose ``get_attr`` targets a package golden records (FX)
    graph_targets: bool = False
    #: the backends its cases run under, where not torch's quantized engines: its stack's own
    #: (a runtime's delegates; harness.backends.current() tells which one a run is under)
    backends: tuple[str, ...] = ()
    #: a flow of the retiring stack (torch.ao.quantization, TorchScript): the migration parity
    #: (harness.making.migration) measures its cases against the stacks' successors
    legacy: bool = False

    def float_model(self, case: Case):
        """The float module the case's quantized model is made from (seeded by the caller, as a
        build is), or None where the case declares none (its build makes a quantized module itself)."""
        return case.float_model() if case.float_model else None

    def problem(self) -> str | None:
        """Why this install cannot make or run the flow's models, or None."""
        return None

    def transform(self, case: Case):
        """The quantization step ``transform(module, example)``: the case's own, or the flow's default."""
        return case.transform

    def runnable(self, case: Case, built, example):
        """The model a golden's output comes from, made from ``case.build()``'s result under the
        current quantized backend."""
        return built

    def scripted(self, case: Case, built, example, trace: bool):
        """The model as TorchScript (scripted, or traced on ``example``), as the flow makes it."""
        import torch

        return torch.jit.trace(built, example) if trace else torch.jit.script(built)

    def requantized(self, case: Case, module, example):
        """A packaged float module, quantized again by today's flow (the package kind)."""
        step = self.transform(case)
        return module if step is None else quantized(step, module, example)

    def skeleton(self, case: Case, built, example):
        """A module of the case's structure for a golden state_dict to load into."""
        return built

    def load_state(self, model, state) -> None:
        """``state`` loaded into ``model`` as the flow's users do."""
        model.load_state_dict(state)

    def exportable(self, model):
        """The model as this release's torch.export takes it."""
        return model

    def from_program(self, case: Case, program):
        """The model a replay runs of an exported program read from a golden (.pt2): its module,
        or what the flow's users make of the program (a runtime's lowering of it)."""
        return program.module()

    def output(self, model, out):
        """What a golden records of a model's output ``out`` (a flow may add state, e.g. qparams)."""
        return out

    def record(self, case: Case) -> dict[str, str]:
        """What a golden set records of how this install makes ``case`` beyond torch (library
        releases, the config used); {} for nothing."""
        return {}

    def kind_problem(self, kind: str) -> str | None:
        """Why the flow cannot write or read artifact ``kind`` here (beyond torch's own reasons), or None."""
        if kind == "safetensors":
            return f"the {self.name} flow keeps no safetensors file (its state_dict holds what safetensors cannot)"
        if kind == "pte":
            return f"the {self.name} flow makes no ExecuTorch program (.pte): its models are not lowered"
        return None

    def to_pte(self, model) -> bytes:
        """``model`` (this flow's ``runnable``) as a .pte program, for a flow whose ``kind_problem``
        admits the pte kind."""
        raise NotImplementedError(self.kind_problem("pte"))

    def read_pte(self, data: bytes):
        """A vetted .pte golden as the flow's runtime loads it: a model that runs under the current backend."""
        raise NotImplementedError(self.kind_problem("pte"))

    def to_safetensors(self, state: dict) -> tuple[dict, dict | None]:
        """(plain tensors by name, string metadata or None) that stand for ``state`` in a safetensors file."""
        return dict(state), None

    def from_safetensors(self, tensors: dict, metadata: dict | None) -> dict:
        """The state_dict of a safetensors file's ``tensors`` and ``metadata`` (vetted before)."""
        return dict(tensors)

    def reference_model(self, model):
        """``model`` as harness.reference runs it: a flow whose models compute in a library's
        own tensors swaps them for its statement of what they compute (else unchanged)."""
        return model

    def replay_note(self, case: Case) -> str | None:
        """What a replay of ``case`` must say next to its verdict about this install (a library
        that runs without its compiled kernels), or None."""
        return None

    def model_flow(self, model) -> bool:
        """Whether a user's quantized ``model`` (the pytest fixture's) was made by this flow."""
        return False


def quantized(step, module, example):
    """``step(module, example)``: a quantization step on a float module, with HistogramObserver's
    search done once for the same calibration under every backend, and FX tracing without
    per-node stack traces (harness.compat_shortcuts)."""
    from harness.compat_shortcuts import fx_without_stack_traces, remembered_histogram_searches

    with remembered_histogram_searches(), fx_without_stack_traces():
        return step(module, example)


class Successor:
    """What users of the legacy flows move to: a float model quantized by a current stack and made
    into the artifact they now ship, read back. harness.making.migration measures the distance
    between a legacy case's outputs and each successor's, made from the same float model and data."""

    name: str = ""
    #: the artifact users ship of it (".pt2", ".pte", "state_dict")
    artifact: str = ""
    description: str = ""
    #: the legacy quantizations it replaces (harness.making.migration names them)
    modes: tuple[str, ...] = ("static-int8", "dynamic-int8")

    def problem(self) -> str | None:
        """Why this install cannot make it, or None."""
        return None

    def covers(self, module) -> str | None:
        """Why it cannot quantize the float ``module`` as the legacy model was (no layer it
        quantizes), or None."""
        return None

    def make(self, module, example, dynamic: bool):
        """The float ``module`` (it may be changed in place) quantized, calibrated on ``example``
        where static, saved as the artifact and read back: a callable on the example's arguments."""
        raise NotImplementedError

    @staticmethod
    def check_quantized(graph_module) -> None:
        """Raise where a quantizer annotated nothing of a converted graph: the "successor" would be
        the float model itself, and its distance a false comfort."""
        if not any("quantize" in str(getattr(node, "target", "")) for node in graph_module.graph.nodes):
            raise ValueError("the quantizer annotates none of its layers: the model would stay float")


class Stack(Protocol):
    """What the core asks of a quantization stack."""

    #: a short name, shown in reports and docs
    name: str
    #: one line: what the stack is
    description: str
    #: its flows
    flows: Sequence[Flow]
    #: top-level packages whose classes its checkpoints name, admitted to a weights_only load
    #: when the installed release registers them as torch safe globals
    libraries: Sequence[str]
    #: operators (``namespace::name``) its files may call beyond torch's own quantized ones
    operators: frozenset

    def packages(self, torch: str) -> list[str]:
        """pip requirements the stack needs beside torch release ``torch`` ("nightly": the
        nightly's), pinned to the release that pairs with it where one does; [] for none."""

    def versions(self) -> dict[str, str]:
        """The installed release of each package the stack needs, by name (absent: not importable)."""

    def library_problem(self, library: str) -> str | None:
        """Why ``library`` (one of ``libraries``) cannot be imported here, or None; importing it
        registers its safe globals."""

    def torch_for(self, release: str, torch: str) -> str | None:
        """The torch release that release ``release`` of the stack's library is installed beside in
        a bisection run on torch ``torch``: ``torch`` itself where its compiled kernels load there,
        else the one they were built against; None where unknown (the release is not tried)."""

    def set_label(self, torch: str) -> str | None:
        """A golden set's label (harness.versions) for this process's install beside torch release
        ``torch``: names the stack's library release where it is not the one that pairs with
        ``torch`` (goldens of two library releases on one torch are two sets), else None."""


_MEMBERS = ("name", "description", "flows", "libraries", "operators", "packages", "versions", "library_problem",
            "set_label", "torch_for")


# The stacks import torch and their libraries; the registry is read on first use, so that loading
# the pytest plugin or a CLI usage error imports neither.
@functools.cache
def registered() -> tuple[Stack, ...]:
    """The registered stacks, in REGISTRY order."""
    found = []
    for module in REGISTRY:
        stack = importlib.import_module(module).STACK
        lacking = [a for a in _MEMBERS if not hasattr(type(stack), a) and not hasattr(stack, a)]
        if lacking:  # asked of the class: a lazily imported member (flows) is not loaded to check it
            raise TypeError(f"{module}.STACK does not satisfy harness.stacks.Stack: it has no {', '.join(lacking)}")
        found.append(stack)
    return tuple(found)


@functools.cache
def _flows() -> dict[str, tuple[Stack, Flow]]:
    out: dict[str, tuple[Stack, Flow]] = {}
    for stack in registered():
        for flow in stack.flows:
            if flow.name in out:
                raise ValueError(f"flow {flow.name!r} is declared by stacks {out[flow.name][0].name} and {stack.name}")
            out[flow.name] = (stack, flow)
    return out


def flow_names() -> tuple[str, ...]:
    """Every registered flow's name, stack by stack."""
    return tuple(_flows())


def default_flow() -> str:
    """The flow of a case that names none: the first registered stack's first flow."""
    return registered()[0].flows[0].name


def flow(name: str) -> Flow:
    """The registered flow called ``name``; ValueError where none is."""
    try:
        return _flows()[name][1]
    except KeyError:
        raise ValueError(f"flow {name!r} is not one of {', '.join(flow_names())}") from None


def stack_of(flow_name: str) -> Stack:
    """The stack a registered flow belongs to."""
    flow(flow_name)
    return _flows()[flow_name][0]


def of_case(case: Any) -> Flow:
    """The flow of ``case``."""
    return flow(case.flow)


def model_flow(model) -> str:
    """The flow a user's quantized model came from, as the stacks read it off the model; the
    default flow where none claims it."""
    return next((f.name for _, f in _flows().values() if f.model_flow(model)), default_flow())


def flow_problem(flow_name: str) -> str | None:
    """Why this install cannot make or run ``flow_name``'s models (its flow says), or None."""
    return flow(flow_name).problem()


def build_problem(case: Any) -> str | None:
    """Why this process cannot build ``case``: its flow, or a package the case requires; or None."""
    from harness.compat import requirement_problem  # imports torch, which the registry itself does not

    return flow_problem(case.flow) or next(filter(None, map(requirement_problem, case.requires)), None)


def libraries() -> dict[str, Stack]:
    """Each registered stack's libraries (whose checkpoints name their own classes), with the stack."""
    return {library: stack for stack in registered() for library in stack.libraries}


def operators() -> frozenset:
    """The operators the registered stacks' files may call beyond torch's own quantized ones."""
    return frozenset().union(*(stack.operators for stack in registered()))


def packages(torch: str) -> list[str]:
    """pip requirements every registered stack needs beside torch ``torch``, each package once
    (a pinned requirement wins over an unpinned one of the same package)."""
    chosen: dict[str, str] = {}
    for stack in registered():
        for requirement in stack.packages(torch):
            name = requirement_name(requirement)
            if name not in chosen or "==" in requirement:
                chosen[name] = requirement
    return list(chosen.values())


def safetensors_types() -> frozenset:
    """The ``_type`` names a safetensors golden's metadata may name (harness.goldens.safetensors_file),
    from each stack's optional ``safetensors_types``. Reads no torch."""
    return frozenset().union(*(getattr(stack, "safetensors_types", frozenset()) for stack in registered()))


def delegates() -> frozenset:
    """The delegates an ExecuTorch program golden may call (a stack's optional ``delegates``)."""
    return frozenset().union(*(getattr(stack, "delegates", frozenset()) for stack in registered()))


def own_backends() -> tuple[str, ...]:
    """The backends the stacks declare beside torch's quantized engines (a stack's optional
    ``backends``), in registry order. Reads no torch."""
    return tuple(b for stack in registered() for b in getattr(stack, "backends", ()))


def case_backends(case: Any, asked, have) -> list[str]:
    """The backends ``case`` runs under: its flow's own where it has them (those of ``asked`` among
    them where a run asked for some), else ``asked`` or, where none were, ``have``."""
    own = of_case(case).backends
    if own:
        return [b for b in own if not asked or b in asked]
    return list(asked or have)


def successors() -> tuple[Successor, ...]:
    """What the legacy flows' users move to (a stack's optional ``successors``), in registry order."""
    return tuple(s for stack in registered() for s in getattr(stack, "successors", ()))


def install_alone() -> frozenset:
    """Packages pip installs without their declared dependencies (a stack's optional
    ``install_alone``: a package whose dependencies serve parts of it the harness never runs, and
    whose few needed ones the stack's requirements name). Reads no torch."""
    return frozenset().union(*(getattr(stack, "install_alone", frozenset()) for stack in registered()))


def matrix_rows() -> dict[str, str]:
    """The nightly matrix rows the stacks add (a stack's optional ``matrix_rows``: row name -> torch
    release with a label pinning its library, as harness.versions names sets). Reads no torch."""
    return {row: spec for stack in registered() for row, spec in getattr(stack, "matrix_rows", {}).items()}


def own_set() -> str:
    """The golden set this process makes, and whose absent cases are missing rather than absent:
    the running torch's release, labelled by each stack whose library release is not the one that
    pairs with it (harness.versions)."""
    from harness.compat import torch_release  # imports torch, which the registry itself does not

    return _own_set(torch_release())


@functools.cache
def _own_set(torch: str) -> str:
    """own_set for torch release ``torch``: asked per case and per set by both doors, the installed
    libraries' labels are read once per release."""
    labels = [label for stack in registered() for label in [stack.set_label(torch)] if label]
    return torch + ("+" + ".".join(labels) if labels else "")


def versions() -> dict[str, str]:
    """The installed releases of every registered stack's packages, by package name."""
    out: dict[str, str] = {}
    for stack in registered():
        out.update(stack.versions())
    return out
