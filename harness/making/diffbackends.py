"""The backend x case matrix: each native backend's distance to the reference kernels.

For every case whose output is checked, the model is built under each backend (the same seeded
weights), run on the case's input, and compared with the reference kernels' output for the same
weights (computed once, from the model built under fbgemm). A quantized output is measured in
quantization steps; a float output that is the dequantized result of the model's last quantized
tensor in steps of that tensor's scale; any other float output in |Δ| (float rounding when within
the case's bound).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from harness import stacks
from harness.notices import one_line
from harness.making import flows
from harness.catalog import Case, Tolerance
from harness.compare import compare
from harness.backends import using, supported_backends
from harness.notices import quiet
from harness.verdicts import Verdict

#: how a (case, backend) pair stands against the reference, in the order a summary lists them
GRADES = ("exact", "one step", "rounding", "beyond")


@dataclass
class Cell:
    text: str  # "=" exact, "±N st", "|Δ|x", "differs", "n/a"
    grade: str | None  # one of GRADES; None: not compared
    reason: str = ""

    @property
    def exact(self) -> bool | None:
        return None if self.grade is None else self.grade == "exact"


def _distance(reference, obtained, step: float | None, dequantized: bool = False) -> Cell:
    """``step``: the scale of the quantized tensor a float ``obtained`` was dequantized from;
    ``dequantized``: the case's runtime returns dequantized values (harness.catalog.Tolerance)."""
    diff = compare(reference, obtained, Tolerance(dequantized=dequantized))
    if diff.ok:
        return Cell("=", "exact")
    steps = diff.max_step_diff
    if steps is None and step and diff.max_abs_diff is not None and diff.verdict == Verdict.DRIFT:
        steps = round(diff.max_abs_diff / step, 3)  # dequantized values: whole steps, up to float rounding
    if steps is not None:
        steps = round(steps, 3)  # a dequantized output's steps carry its float rounding
        return Cell(f"±{steps:g} st", "one step" if steps <= 1 else "beyond", diff.message)
    if diff.verdict == Verdict.ROUNDING:
        return Cell(f"|Δ|{diff.max_abs_diff:.2g}", "rounding", diff.message)
    if diff.max_abs_diff is not None:
        return Cell(f"|Δ|{diff.max_abs_diff:.2g}", "beyond", diff.message)
    return Cell("differs", "beyond", diff.message)


def _run_native(case: Case, model, example):
    """The model's output, and the scale its float output was dequantized from (None when the
    output is not the result of a per-tensor dequantize)."""
    import torch

    from harness.compat import dispatch_mode

    if stacks.of_case(case).backends:  # a runtime of the stack's own runs it, not torch's dispatcher
        return case.forward(model, example), None

    class LastDequantize(dispatch_mode()):
        def __init__(self):
            super().__init__()
            self.out, self.scale = None, None

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func is torch.ops.aten.dequantize.self and args[0].qscheme() == torch.per_tensor_affine:
                self.out, self.scale = out, args[0].q_scale()
            return out

    watch = LastDequantize()
    with watch:
        out = case.forward(model, example)
    return out, (watch.scale if out is watch.out else None)


def case_row(case: Case, backends: list[str], crashed: dict | None = None, at=None) -> tuple[dict[str, Cell], str]:
    """{backend: Cell} and, when the reference cannot run the case, the reason. In a crash-safe
    child, ``at`` hears each step's key and ``crashed`` holds the steps that killed one."""
    from harness import reference

    crashed = crashed or {}
    backends = stacks.case_backends(case, None, backends)  # a stack's own backends, where its flow has them
    if not case.check_numerics:
        return {}, "it checks loading only: no output to compare"
    unable = stacks.build_problem(case)
    if unable:
        return {}, f"not built here: {unable}"
    if ("reference",) in crashed:
        return {}, f"building it and running the reference crashed the process: {crashed[('reference',)]}"
    if at is not None:
        at(("reference",))
    try:
        with quiet(), using("fbgemm" if "fbgemm" in backends else backends[0]):
            example = flows.make_input(case)
            try:
                model = flows.runnable(case, flows.build(case), example)
            except Exception as exc:  # what generation records as not makeable here (a config this release lacks)
                return {}, f"not built here: {one_line(exc)}"
            expected = reference.reference_output(stacks.of_case(case).reference_model(model), example, case.forward)
    except reference.Unsupported as exc:
        return {}, str(exc)
    cells = {}
    for backend in backends:
        if ("backend", backend) in crashed:
            cells[backend] = Cell("crash", None, f"{backend} crashed the process: {crashed[('backend', backend)]}")
            continue
        if at is not None:
            at(("backend", backend))
        with quiet(), using(backend):
            try:
                model = flows.runnable(case, flows.build(case), example)
                cells[backend] = _distance(expected, *_run_native(case, model, example), case.tolerance.dequantized)
            except Exception as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                cells[backend] = Cell("n/a", None, f"{backend} cannot run it: {first[:120]}")
    return cells, ""


@dataclass
class Matrix:
    backends: list[str]
    rows: list[tuple[Case, dict[str, Cell], str]]  # (case, cells, why not compared)

    @property
    def compared(self) -> list[tuple[Case, dict[str, Cell]]]:
        return [(case, cells) for case, cells, why in self.rows if not why]

    def tally(self, backend: str) -> Counter:
        return Counter(cells[backend].grade for _, cells in self.compared if backend in cells and cells[backend].grade)


def measure(cases: list[Case], backends: list[str] | None = None, fixtures=None) -> Matrix:
    """Every case's row; in a crash-safe child (harness.sandbox) where the catalog's ``fixtures``
    directory is given, so that a backend that crashes on a case is a cell, not the end."""
    backends = backends or supported_backends()
    # the columns: torch's backends where a case runs under them, then the stacks' own that cases run under
    columns = (backends if any(not stacks.of_case(c).backends for c in cases) else []) + \
        [b for b in stacks.own_backends() if any(b in stacks.of_case(c).backends for c in cases)]
    if fixtures is None:
        return Matrix(columns, [(case, *case_row(case, backends)) for case in cases])
    from harness.sandbox import Sandbox, run_to_end

    rows, box = [], Sandbox()
    try:
        for case in cases:
            found = []
            given_up = run_to_end(box, "harness.making.diffbackends:_row_in_child",
                                  {"fixtures": str(fixtures), "case": case.id, "backends": backends}, found.append)
            rows.append((case, *(found[0] if found else ({}, f"its worker gave up: {given_up}"))))
    finally:
        box.close()
    return Matrix(columns, rows)


def _row_in_child(request: dict, at):
    from harness.catalog import load_catalog

    case = next(c for c in load_catalog(Path(request["fixtures"])) if c.id == request["case"])
    yield case_row(case, request["backends"], request["crashed"], at)


def summary(m: Matrix) -> list[str]:
    """Per backend: how many cases are exact, within one step, float rounding, beyond."""
    lines = [f"{len(m.compared)} of {len(m.rows)} cases compared with the reference; per backend:"]
    for backend in m.backends:
        tally = m.tally(backend)
        crashed = sum(1 for _, cells in m.compared if backend in cells and cells[backend].text == "crash")
        lines.append(f"  {backend:8} " + ", ".join(f"{tally[g]} {g}" for g in GRADES)
                     + f" (of {sum(tally.values())} it runs)" + (f"; {crashed} crashed" if crashed else ""))
    return lines


def matrix(cases: list[Case], backends: list[str] | None = None, fixtures=None) -> str:
    from tabulate import tabulate

    m = measure(cases, backends, fixtures)
    table = [[case.id, *(cells[b].text if b in cells else "" for b in m.backends)] for case, cells in m.compared]
    lines = [tabulate(table, headers=["case", *m.backends]), "", *summary(m)]
    lines += [f"  not exact: {case.id} on {b}: {cells[b].text} ({cells[b].grade})"
              for case, cells in m.compared for b in m.backends if b in cells and cells[b].grade not in (None, "exact")]
    lines += [f"  crashed: {case.id} on {b}: {cells[b].reason}"
              for case, cells in m.compared for b in m.backends if b in cells and cells[b].text == "crash"]
    skipped = [(case, why) for case, _, why in m.rows if why]
    if skipped:
        lines += [f"{len(skipped)} cases without a reference:"] + [f"  {case.id}: {why}" for case, why in skipped]
    return "\n".join(lines)


def markdown(cases: list[Case], backends: list[str] | None = None, fixtures=None) -> str:
    """The per-case table of docs/reference.md: each backend's distance, or why there is none."""
    m = measure(cases, backends, fixtures)
    lines = ["| case | " + " | ".join(m.backends) + " |", "|---|" + "---|" * len(m.backends)]
    for case, cells, why in m.rows:
        texts = ([f"not computable: {why}"] + [""] * (len(m.backends) - 1) if why
                 else [("" if b not in cells else cells[b].text if cells[b].grade or cells[b].text == "crash"
                        else "cannot run") for b in m.backends])
        lines.append(f"| `{case.id}` | " + " | ".join(t.replace("|", "\\|") for t in texts) + " |")
    return "\n".join(lines + ["", *summary(m)]) + "\n"
