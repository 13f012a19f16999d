"""Case declarations, and loading the case catalog from fixture files by path."""

from __future__ import annotations

import fnmatch
import importlib.util
import re
import sys
import types
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from harness import stacks

#: Artifact kinds a case may ask for, in the order results are reported.
ARTIFACT_KINDS = ("state_dict", "scripted", "traced", "package", "export", "lite", "safetensors", "pte")
#: export: a torch.export archive (.pt2); lite: a lite-interpreter file (.ptl); pte: an ExecuTorch program (.pte).
#: A case's ``flow`` (how its quantized model is made from what ``build`` returns) is one of the
#: registered stacks' flows (harness.stacks); each flow's ``description`` says what it expects.

_FIXTURE_PACKAGE = "bc_harness_fixtures"
_CASE_ID = re.compile(r"[a-z0-9][a-z0-9_.-]*")


def valid_case_id(case_id) -> bool:
    """A case id names one directory inside its golden set: lower-case letters, digits, '_', '-',
    '.', not starting with a dot. Checked where a case is declared and where a manifest is read."""
    return isinstance(case_id, str) and len(case_id) <= 200 and _CASE_ID.fullmatch(case_id) is not None


@dataclass(frozen=True)
class QuantizedInput:
    """An input drawn with torch.rand and quantized per tensor, as PyTorch's suite does."""

    shape: tuple[int, ...]
    scale: float = 0.5
    zero_point: int = 2
    dtype: str = "quint8"

    def make(self):
        import torch

        return torch.quantize_per_tensor(
            torch.rand(*self.shape).float(), self.scale, self.zero_point, getattr(torch, self.dtype)
        )


@dataclass(frozen=True)
class FloatInput:
    """A float input drawn with torch.rand (``dist='rand'``) or torch.randn."""

    shape: tuple[int, ...]
    dist: str = "rand"

    def make(self):
        import torch

        return getattr(torch, self.dist)(*self.shape).float()


@dataclass(frozen=True)
class TokenInput:
    """Token ids drawn with torch.randint below ``vocab`` (an embedding's input)."""

    shape: tuple[int, ...]
    vocab: int

    def make(self):
        import torch

        return torch.randint(0, self.vocab, self.shape)


@dataclass(frozen=True, eq=False)
class GivenInput:
    """An input a user's test passes in: a tensor, or a tuple of positional arguments."""

    value: Any

    def make(self):
        return self.value


#: The default rounding bound for float outputs, in ulps of each output tensor's largest
#: magnitude (harness.compare explains the choice and the figures behind it).
ROUNDING_ULPS = 16


@dataclass(frozen=True)
class Tolerance:
    """How far a replayed output may be from its golden. The default is exact.

    steps: |Δ| allowed in integer representation, for quantized tensors;
    atol / rtol: for float tensors, |Δ| <= atol + rtol * |golden| counts as equal;
    rounding_ulps: a float difference beyond that but within this many ulps of the tensor's
    largest magnitude is float rounding (verdict ``rounding``: shown, not failing); 0 makes
    every float difference a drift. Quantized tensors are never given a rounding allowance.
    """

    steps: int = 0
    atol: float = 0.0
    rtol: float = 0.0
    rounding_ulps: int = ROUNDING_ULPS
    #: the case runs in a runtime that returns dequantized values (ExecuTorch): a float output
    #: against a quantized golden (or a float reference against a quantized output) is measured in
    #: the quantized one's steps, not refused as a change of kind
    dequantized: bool = False


@dataclass(frozen=True)
class PyTorchTest:
    """Where a case sits in PyTorch's own test_backward_compatibility.py."""

    method: str  # e.g. "test_linear_dynamic"
    sub: str | None = None  # e.g. "qint8"
    fbgemm_only: bool = False  # the test body runs only when qengine_is_fbgemm()
    compare: str = "assert_equal"  # assert_equal | allclose | load_only
    #: unittest.skipIf(IS_AVX512_VNNI_SUPPORTED): PyTorch skips the test on such CPUs
    skip_on_avx512_vnni: bool = False

    @property
    def stem(self) -> str:
        """The test's full name as PyTorch's get_filenames spells it (harness.goldens.layout makes file
        names of it)."""
        name = f"TestSerialization.{self.method}"
        return f"{name}_{self.sub}" if self.sub else name


@dataclass(frozen=True)
class Case:
    """One golden scenario, identified by a stable id that no Python class name feeds into."""

    id: str
    build: Callable[[], Any]
    input: QuantizedInput | FloatInput | TokenInput | GivenInput
    artifacts: tuple[str, ...]
    #: a registered flow (harness.stacks); None: the first registered stack's first flow
    flow: str | None = None
    seed: int = 0
    tolerance: Tolerance = field(default_factory=Tolerance)
    #: the output does not depend on the quantized backend (observers, QAT state):
    #: recorded and replayed once, under backend "any".
    backend_agnostic: bool = False
    #: False: the golden proves loading only (PyTorch's QAT qconfig test).
    check_numerics: bool = True
    #: state_dict written in the zipfile format (True) or the legacy one (False).
    state_dict_zipfile: bool = False
    min_torch: str = "1.13"
    #: the quantization step of a flow that quantizes a float module or its TorchScript:
    #: ``transform(module, example)`` (the flow's default where None)
    transform: Callable[[Any, Any], Any] | None = None
    #: the float module a legacy flow's ``build`` quantizes, made as ``build`` makes it (under the
    #: same seed) and calibrated, as there, on the case's input: where the migration parity
    #: (harness.making.migration) starts. Flows whose ``build`` returns the float module need none.
    float_model: Callable[[], Any] | None = None
    #: the method whose output is the golden (the on-device flow's ``quantized_forward``)
    method: str = "forward"
    pytorch: PyTorchTest | None = None
    #: importable packages beyond torch that building the case needs (e.g. "torchvision"): a
    #: replay that must build it says so where one is missing, instead of failing
    requires: tuple[str, ...] = ()
    description: str = ""
    source: str = ""  # fixture file the case was declared in, filled by the loader

    def __post_init__(self):
        if not valid_case_id(self.id):
            raise ValueError(f"case id {self.id!r}: use lower-case letters, digits, '_', '-', '.'")
        if self.flow is None:
            object.__setattr__(self, "flow", stacks.default_flow())
        try:
            stacks.flow(self.flow)
        except ValueError as exc:
            raise ValueError(f"case {self.id}: {exc}") from None
        bad = [k for k in self.artifacts if k not in ARTIFACT_KINDS]
        if bad or not self.artifacts:
            raise ValueError(f"case {self.id}: artifact kinds {bad or '()'} not in {ARTIFACT_KINDS}")

    def forward(self, model, example):
        """What a replay records of a model: its output (and, for observers, their qparams)."""
        args = example if isinstance(example, tuple) else (example,)
        if self.method == "forward":
            out = model(*args)
        elif hasattr(model, "run_method"):  # a lite-interpreter module
            out = model.run_method(self.method, *args)
        else:
            out = getattr(model, self.method)(*args)
        return stacks.flow(self.flow).output(model, out)


class CatalogError(Exception):
    """A fixture file cannot be loaded, or its cases clash."""


def load_catalog(fixtures_dir: Path) -> list[Case]:
    """Load every ``*.py`` in ``fixtures_dir`` by path and collect its ``CASES`` list.

    The files are registered under the private package name ``bc_harness_fixtures`` so
    that TorchScript and torch.package can find their source, without ever making
    ``fixtures`` an importable top-level name.
    """
    fixtures_dir = Path(fixtures_dir)
    if not fixtures_dir.is_dir():
        raise CatalogError(f"fixtures directory {fixtures_dir} does not exist (a case catalog: name one with "
                           f"--fixtures DIR, or fixtures = \"DIR\" under [tool.bc-harness] in pyproject.toml)")
    cases: dict[str, Case] = {}
    for path in sorted(fixtures_dir.glob("*.py")):
        if path.name.startswith("_"):
            continue
        for case in _load_fixture_file(path):
            if case.id in cases:
                raise CatalogError(
                    f"case id {case.id!r} declared twice: {cases[case.id].source} and {path.name}"
                )
            cases[case.id] = case
    return list(cases.values())


def _load_fixture_file(path: Path) -> list[Case]:
    sys.modules.setdefault(_FIXTURE_PACKAGE, types.ModuleType(_FIXTURE_PACKAGE))
    name = f"{_FIXTURE_PACKAGE}.{path.stem}"
    stat = path.stat()
    stamp = (str(path), stat.st_mtime_ns, stat.st_size)
    module = sys.modules.get(name)
    if module is None or getattr(module, "__bc_harness_stamp__", None) != stamp:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise CatalogError(f"cannot load fixture file {path}: {exc}") from exc
        module.__bc_harness_stamp__ = stamp
    declared = getattr(module, "CASES", None)
    if not isinstance(declared, (list, tuple)):
        raise CatalogError(f"fixture file {path} has no CASES list")
    out = []
    for case in declared:
        if not isinstance(case, Case):
            raise CatalogError(f"fixture file {path}: CASES holds {type(case).__name__}, not Case")
        out.append(_with_source(case, path.name))
    return out


def _with_source(case: Case, source: str) -> Case:
    return replace(case, source=source)


def select(cases: Sequence[Case], patterns: Sequence[str] | None) -> list[Case]:
    """Cases whose id matches any pattern: a glob (``conv2d*``) or a plain substring."""
    if not patterns:
        return list(cases)
    return [c for c in cases if any(_matches(c.id, p) for p in patterns)]


def _matches(case_id: str, pattern: str) -> bool:
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(case_id, pattern)
    return pattern in case_id
