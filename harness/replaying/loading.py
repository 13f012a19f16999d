"""Loading: what a golden set holds for a case, read once and vetted by the store (its input,
artifacts and expected outputs), and an artifact loaded as a model under the current backend."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field

from harness import stacks
from harness.catalog import Case
from harness.making.flows import artifact_problem
from harness.goldens.safeload import load_weights
from harness.goldens.store import GoldenError
from harness.making.artifacts import KINDS
from harness.notices import Remembered, one_line, quiet
from harness.verdicts import Verdict

#: where the reference's model comes from, in order of preference: the kinds whose model is a
#: module tree or a graph the reference rewrites, then the TorchScript kinds it runs as they are
REFERENCE_SOURCES = ("state_dict", "package", "export", "scripted", "traced", "lite")

#: kinds whose replay re-runs the case's flow on today's torch (a state_dict loads into today's
#: conversion of an FX model; a package re-runs prepare_fx/convert_fx)
REBUILDS = frozenset({"state_dict", "package"})


def runtime_problem(case: Case, kind: str) -> str | None:
    """Why this torch cannot replay ``kind`` of ``case`` at all, or None."""
    # a flow whose every file holds its library's own tensors or ops reads none of them without it
    rebuilt = kind in REBUILDS or stacks.of_case(case).library_files
    if rebuilt and case.build is None:  # a golden of a test's own model, replayed without its test
        return f"its model is built by its test ({case.source}): pytest replays it"
    return artifact_problem(case, kind) or (stacks.build_problem(case) if rebuilt else None)


def error_text(exc: BaseException, verbose: bool, prefix: str = "") -> str:
    """An exception as a result's reason (its traceback printed too under --verbose)."""
    if verbose:
        traceback.print_exception(exc)
    return prefix + one_line(exc)


@dataclass
class CaseFiles:
    """What a case's replay reads once and shares across artifacts and backends."""

    problem: tuple[str, str] | None = None  # (verdict, reason) for every result of the case
    example: object = None
    artifacts: dict = field(default_factory=dict)  # kind -> bytes, or (verdict, reason)
    #: kind -> notices.Remembered of the backend-free part of loading it (the kinds that have one)
    decoded: dict = field(default_factory=dict)
    expected: dict = field(default_factory=dict)
    reference: object = None  # the reference kernels' output, or the reason there is none (str)


class Reader:
    """Reads a golden set's files for its cases through the set's layout, the last few cases' kept."""

    #: how many cases' files are held at once (items of a case usually run together)
    CACHE = 4

    def __init__(self, layout, verbose: bool = False):
        self.layout, self.verbose = layout, verbose
        self._files: dict[str, CaseFiles] = {}

    def files(self, case: Case) -> CaseFiles:
        """Read (once) what every result of a case needs: its standing and its input."""
        files = self._files.get(case.id)
        if files is not None:
            return files
        if len(self._files) >= self.CACHE:
            self._files.pop(next(iter(self._files)))
        files = self._files[case.id] = CaseFiles()
        golden = self.layout.golden
        if golden.manifest_error:  # nothing in a set its manifest cannot vouch for is read
            files.problem = (Verdict.CORRUPT, golden.manifest_error)
            return files
        files.problem = self.layout.case_problem(case)
        if files.problem is None:
            try:
                with quiet():
                    files.example = load_weights(golden.read(self.layout.input_file(case)))
            except GoldenError as exc:
                files.problem = (exc.verdict, f"input: {exc}")
            except Exception as exc:
                files.problem = (Verdict.LOAD_ERROR, error_text(exc, self.verbose, "input: "))
        return files

    def artifact(self, case: Case, kind: str, files: CaseFiles):
        """The artifact's verified bytes, or (verdict, reason)."""
        if kind not in files.artifacts:
            skipped = dict(self.layout.artifacts(case)).get(kind)
            if skipped:
                files.artifacts[kind] = (Verdict.SKIP, skipped)
            else:
                try:
                    files.artifacts[kind] = self.layout.golden.read(self.layout.artifact_file(case, kind), kind=kind)
                except GoldenError as exc:
                    files.artifacts[kind] = (exc.verdict, str(exc))
        return files.artifacts[kind]

    def expected(self, case: Case, backend: str, files: CaseFiles):
        """The golden output for a backend, read once per case; raises GoldenError."""
        if backend not in files.expected:
            try:
                with quiet():
                    files.expected[backend] = load_weights(
                        self.layout.golden.read(self.layout.expected_file(case, backend)))
            except GoldenError as exc:
                files.expected[backend] = exc
            except Exception as exc:
                files.expected[backend] = GoldenError(f"expected output unreadable: {one_line(exc)}")
        value = files.expected[backend]
        if isinstance(value, GoldenError):
            raise value
        return value

    def get_attr_targets(self, case: Case):
        """The get_attr targets a package golden recorded; raises GoldenError (a vetted file torch
        cannot load is corrupt)."""
        try:
            with quiet():
                return load_weights(self.layout.golden.read(self.layout.get_attr_file(case)))
        except GoldenError:
            raise
        except Exception as exc:  # vouched for and vetted, yet torch cannot load it
            raise GoldenError(error_text(exc, self.verbose, "get_attr targets unreadable: ")) from None

    def golden_state(self, case: Case):
        """The golden state_dict of ``case`` where the case keeps one, else None; raises GoldenError."""
        name = self.layout.artifact_file(case, "state_dict")
        if "state_dict" not in case.artifacts or not self.layout.golden.exists(name):
            return None
        return load_weights(self.layout.golden.read(name, kind="state_dict"))


def load(case: Case, kind: str, data: bytes, files: CaseFiles):
    """The artifact loaded under the current backend. A kind whose loading has a backend-free part
    (``decode``: reading a .pt2 archive) does that part once per golden, for every backend; its
    warnings and errors come with each (notices.Remembered)."""
    loader = KINDS[kind]
    if not hasattr(loader, "decode"):
        return loader.load(case, data, files.example)
    if kind not in files.decoded:
        files.decoded[kind] = Remembered(lambda: loader.decode(case, data))
    return loader.from_decoded(case, files.decoded[kind].get())
