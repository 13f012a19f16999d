"""Layouts: the one authority on golden file names and paths, and on how each layout is read.

- Ours (``HarnessLayout``): ``<root>/<torch release>/manifest.json`` and
  ``<root>/<torch release>/<case id>/<file>``, one expected output per backend.
- PyTorch's (``PyTorchLayout``): one flat directory of ``TestSerialization.<test>[_<sub>].<kind>.pt``
  files made once under fbgemm, judged as PyTorch's own tests judge.

Nothing else builds a golden file name or asks which layout is in use: a layout says what it
supports (``writable``, ``known_drifts``, ``reference``, ``policy``, ``single_set``), as the
``Layout`` protocol declares. Imports no torch.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from harness.verdicts import Verdict

if TYPE_CHECKING:  # annotations only: importing the plugin (which names the layouts) stays light
    from harness.catalog import Case

#: file suffixes by the formats' own conventions; the older kinds keep PyTorch's ``.pt``
SUFFIX = {"export": ".pt2", "lite": ".ptl", "safetensors": ".safetensors", "pte": ".pte"}


_FILE_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


def valid_file_name(name) -> bool:
    """A path a manifest may vouch for: a flat file name (PyTorch's layout) or ``<case id>/<file>``
    (ours); no component can climb out of the set, hide as a dot-file or name an absolute path."""
    from harness.catalog import valid_case_id

    if not isinstance(name, str) or len(name) > 400:
        return False
    parts = name.split("/")
    if len(parts) == 2 and not valid_case_id(parts[0]):
        return False
    return len(parts) in (1, 2) and _FILE_PART.fullmatch(parts[-1]) is not None


def file_name(kind: str) -> str:
    """The file an artifact kind is stored in, inside its case's directory (our layout)."""
    return f"{kind}{SUFFIX.get(kind, '.pt')}"


#: how a sidecar's name ends: the text of the code a code-carrying golden embeds
SIDECAR = ".code.txt"


def sidecar_name(name: str) -> str:
    """The sidecar of a code-carrying golden file, beside it: ``x/scripted.pt`` -> ``x/scripted.code.txt``."""
    return name.rsplit(".", 1)[0] + SIDECAR


def is_sidecar(name: str) -> bool:
    return name.endswith(SIDECAR)


def case_dir(case_id: str) -> str:
    """The directory, inside its set, that holds a case's files (our layout)."""
    return case_id


def case_of(name: str) -> str:
    """The case a file of our layout belongs to: the first component of its path in the set."""
    return name.split("/", 1)[0]


class Layout(Protocol):
    """What a replay, the plugin and the store ask of a layout; each layout is a class whose
    instances read one golden set (``golden``, a harness.goldens.store.GoldenSet)."""

    name: ClassVar[str]
    #: goldens can be written in it (update, regenerate)
    writable: ClassVar[bool]
    #: known-drifts.toml entries apply to its sets
    known_drifts: ClassVar[bool]
    #: results are also measured against the reference kernels
    reference: ClassVar[bool]
    #: the harness's comparison policy judges it (else the layout's own ``judge`` alone)
    policy: ClassVar[bool]
    #: None for a store of sets, one per torch release; else the name of its one set
    single_set: ClassVar[str | None]
    #: a set without a manifest is refused (until ``bc-harness pin`` records one)
    manifest_required: ClassVar[bool]

    def __init__(self, golden) -> None: ...

    # where a case's files are, in a set
    @classmethod
    def input_file(cls, case: Case) -> str: ...
    @classmethod
    def artifact_file(cls, case: Case, kind: str) -> str: ...
    @classmethod
    def expected_file(cls, case: Case, backend: str) -> str: ...
    @classmethod
    def get_attr_file(cls, case: Case) -> str: ...
    @classmethod
    def sidecar_file(cls, case: Case, kind: str) -> str: ...
    @staticmethod
    def kind_of(name: str) -> str | None: ...
    @staticmethod
    def set_dir(root: Path, version: str) -> Path: ...
    @staticmethod
    def covers(case: Case) -> bool: ...

    # how a set is read and judged
    def case_problem(self, case: Case) -> tuple[str, str] | None: ...
    def artifacts(self, case: Case) -> list[tuple[str, str | None]]: ...
    def backend_problem(self, case: Case, backend: str, kind: str | None = None) -> str | None: ...
    def judge(self, case: Case, golden, obtained, diff) -> tuple[str, str]: ...
    @staticmethod
    def run(case: Case, model, example): ...
    @staticmethod
    def pytorch_test(case: Case) -> str | None: ...
    def machine_skip(self, case: Case) -> str | None: ...


#: the members every layout has (tests/test_layouts.py holds both layouts to them)
LAYOUT_MEMBERS = tuple(sorted({*Layout.__annotations__,
                               *(n for n, v in vars(Layout).items() if not n.startswith("_")
                                 and (callable(v) or isinstance(v, (staticmethod, classmethod))))}))


class HarnessLayout:
    """Our own layout: ``<case>/<kind>.pt`` and one ``expected.<backend>.pt`` per backend."""

    name = "harness"
    #: goldens are written, updated and pruned in this layout
    writable = True
    #: known-drifts.toml beside the golden versions applies
    known_drifts = True
    #: the reference kernels run on the golden state_dicts
    reference = True
    #: judged by harness.compare's policy, so a run's rounding bound (--exact, --rounding-ulps) applies
    policy = True

    def __init__(self, golden):
        self.golden = golden  # harness.goldens.store.GoldenSet

    # -- names ------------------------------------------------------------------------
    @staticmethod
    def input_file(case: Case) -> str:
        return f"{case_dir(case.id)}/input.pt"

    @staticmethod
    def artifact_file(case: Case, kind: str) -> str:
        return f"{case_dir(case.id)}/{file_name(kind)}"

    @staticmethod
    def expected_file(case: Case, backend: str) -> str:
        return HarnessLayout.expected_name(case.id, backend)

    @staticmethod
    def values_file(case: Case) -> str:
        """The text a reviewer reads: what the case's goldens hold (harness.goldens.readable)."""
        return f"{case_dir(case.id)}/values.txt"

    @staticmethod
    def expected_name(case_id: str, backend: str) -> str:
        return f"{case_dir(case_id)}/expected.{backend}.pt"

    @staticmethod
    def get_attr_file(case: Case) -> str:
        return f"{case_dir(case.id)}/get_attr_targets.pt"

    @classmethod
    def sidecar_file(cls, case: Case, kind: str) -> str:
        return sidecar_name(cls.artifact_file(case, kind))

    @staticmethod
    def kind_of(name: str) -> str | None:
        """The artifact kind a file of a set holds, or None (inputs, expected outputs, targets)."""
        from harness.catalog import ARTIFACT_KINDS

        base = name.rsplit("/", 1)[-1]
        return next((kind for kind in ARTIFACT_KINDS if base == file_name(kind)), None)

    # -- where the sets are -------------------------------------------------------------
    #: the one set a directory of this layout holds (None: a set per torch release below it)
    single_set: str | None = None
    #: a set without a manifest is corrupt (else: data files may still be read, code never)
    manifest_required = True

    @staticmethod
    def set_dir(root: Path, version: str) -> Path:
        return Path(root) / version

    @staticmethod
    def covers(case: Case) -> bool:
        return True

    # -- reading a set ------------------------------------------------------------------
    def case_problem(self, case: Case) -> tuple[str, str] | None:
        """(verdict, reason) when a case cannot be replayed from this set at all."""
        from harness.stacks import build_problem, own_set
        from harness.versions import parse_version

        entry = self.golden.cases.get(case.id)
        version = self.golden.version
        if entry is None:
            if parse_version(version) < parse_version(case.min_torch):
                return Verdict.SKIP, f"needs torch >= {case.min_torch}; goldens are from {version}"
            if version == own_set():
                unable = build_problem(case)  # a golden this install cannot make is not asked for
                return (Verdict.SKIP, f"no golden for this case, and torch {version} here cannot make one: {unable}") \
                    if unable else (Verdict.MISSING, f"no golden for this case; run: regenerate-goldens -k {case.id}")
            return Verdict.SKIP, f"torch {version}'s golden set holds no golden of this case (it predates the case, or was made for others)"
        if entry.malformed:
            return Verdict.CORRUPT, f"the manifest's entry for {case.id} is malformed: {entry.malformed}"
        if entry.skipped:
            return Verdict.SKIP, f"torch {version} could not make it: {entry.skipped}"
        return None

    def artifacts(self, case: Case) -> list[tuple[str, str | None]]:
        """(kind, why this set has no such file or None) for each artifact kind of the case."""
        entry = self.golden.cases.get(case.id)
        skipped = entry.skipped_artifacts if entry is not None else {}
        return [(kind, skipped.get(kind)) for kind in case.artifacts]

    def backend_problem(self, case: Case, backend: str, kind: str | None = None) -> str | None:
        """Why ``backend`` has no golden of the case (or, given ``kind``, cannot run that file)."""
        entry = self.golden.cases.get(case.id)
        status = entry.backends.get(backend) if entry is not None else None
        if status is None:
            return f"torch {self.golden.version} recorded no {backend} golden"
        if status != "ok":
            return status
        return entry.unrunnable.get(kind, {}).get(backend) if kind else None

    def judge(self, case: Case, golden, obtained, diff) -> tuple[str, str]:
        """The verdict and message of an obtained output: the comparison policy's. A drift with
        figures names how the golden's machine differs from this one: a likely cause."""
        if diff.verdict != Verdict.DRIFT or diff.max_abs_diff is None:  # a shape or type change is no machine's doing
            return diff.verdict, diff.message
        from harness import machine

        golden_machine = machine.of_case(self.golden.manifest, self.golden.cases.get(case.id))
        changed = machine.differences(golden_machine, machine.current())
        shown = ", ".join(changed[:3]) + (", ..." if len(changed) > 3 else "")
        return Verdict.DRIFT, diff.message + (f" (golden made on another machine: {shown})" if changed else "")

    @staticmethod
    def run(case: Case, model, example):
        return case.forward(model, example)

    @staticmethod
    def pytorch_test(case: Case) -> str | None:
        return None

    def machine_skip(self, case: Case) -> str | None:
        """Why every outcome of ``case`` is a skip on this machine (never, in our layout)."""
        return None


class PyTorchLayout:
    """PyTorch's flat ``TestSerialization.<test>[_<sub>].<kind>.pt`` files, judged as its tests judge."""

    name = "pytorch"
    writable = False
    known_drifts = False
    reference = False
    policy = False  # PyTorch's assertEqual / allclose decide

    def __init__(self, golden):
        self.golden = golden

    # -- names ------------------------------------------------------------------------
    @staticmethod
    def stem(case: Case) -> str:
        """The stem of the case's files: its PyTorch test's full name."""
        return case.pytorch.stem

    @classmethod
    def input_file(cls, case: Case) -> str:
        return f"{cls.stem(case)}.input.pt"

    @classmethod
    def artifact_file(cls, case: Case, kind: str) -> str:
        return f"{cls.stem(case)}.{kind}.pt"

    @classmethod
    def expected_file(cls, case: Case, backend: str) -> str:
        return f"{cls.stem(case)}.expected.pt"  # PyTorch keeps one, made under fbgemm

    @classmethod
    def get_attr_file(cls, case: Case) -> str:
        return f"{cls.stem(case)}.get_attr_targets.pt"

    @classmethod
    def sidecar_file(cls, case: Case, kind: str) -> str:
        return sidecar_name(cls.artifact_file(case, kind))

    @staticmethod
    def kind_of(name: str) -> str | None:
        """The artifact kind a file of the directory holds (``<stem>.<kind>.pt``), or None."""
        from harness.catalog import ARTIFACT_KINDS

        parts = name.split(".")
        return parts[-2] if len(parts) > 2 and parts[-1] == "pt" and parts[-2] in ARTIFACT_KINDS else None

    # -- where the set is ---------------------------------------------------------------
    single_set = "pytorch"  # the directory is one set, made by one (often unknown) torch
    manifest_required = False  # until 'bc-harness pin' records one

    @staticmethod
    def set_dir(root: Path, version: str) -> Path:
        return Path(root)

    @staticmethod
    def covers(case: Case) -> bool:
        return case.pytorch is not None

    # -- reading the set ----------------------------------------------------------------
    def case_problem(self, case: Case) -> tuple[str, str] | None:
        if not self.golden.exists(self.input_file(case)):
            return Verdict.MISSING, f"{self.input_file(case)} is not in the directory"
        return None

    def artifacts(self, case: Case) -> list[tuple[str, str | None]]:
        return [(kind, None) for kind in case.artifacts]

    def backend_problem(self, case: Case, backend: str, kind: str | None = None) -> str | None:
        if case.pytorch.fbgemm_only and backend != "fbgemm":
            return f"PyTorch's {case.pytorch.method} runs only when qengine_is_fbgemm()"
        return None

    def judge(self, case: Case, golden, obtained, diff) -> tuple[str, str]:
        """What PyTorch's test concludes: assertEqual or allclose, and the get_attr set."""
        from harness.compare import pytorch_verdict

        if diff.reasons and diff.reasons[0].startswith("get_attr targets"):
            return Verdict.DRIFT, diff.reasons[0]
        failure = pytorch_verdict(golden, obtained, case.pytorch.compare)
        return (Verdict.PASS, "") if failure is None else (Verdict.DRIFT, failure + (f" — {diff.message}" if diff.message else ""))

    @staticmethod
    def run(case: Case, model, example):
        return model(example)  # PyTorch's tests call the module on the input

    @staticmethod
    def pytorch_test(case: Case) -> str | None:
        return case.pytorch.method

    def machine_skip(self, case: Case) -> str | None:
        """PyTorch skips some tests on some CPUs; then so does every outcome of the case here."""
        from harness.compat import has_avx512_vnni

        if case.pytorch.skip_on_avx512_vnni and has_avx512_vnni():
            return f"PyTorch skips {case.pytorch.method} on AVX512-VNNI CPUs (pytorch#59098)"
        return None


LAYOUTS: dict[str, type[Layout]] = {layout.name: layout for layout in (HarnessLayout, PyTorchLayout)}
