"""The backend x case matrix: each native backend's distance to the reference kernels.

For every case whose model is an eager module tree, the model is built under each backend (the
same seeded weights), run on the case's input, and compared with the reference kernels' output
for the same weights (computed once, from the model built under fbgemm). A quantized output is
measured in quantization steps; a float one (dequantized or dynamic) in |Δ|.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import flows
from .catalog import Case
from .compare import compare
from .engines import engine, supported_engines
from .notices import quiet


@dataclass
class Cell:
    text: str  # "=" exact, "±N st", "|Δ|x", "n/a", "error"
    exact: bool | None  # None: not compared
    reason: str = ""


def _distance(reference, obtained) -> Cell:
    diff = compare(reference, obtained)
    if diff.ok:
        return Cell("=", True)
    if diff.max_step_diff is not None:
        return Cell(f"±{diff.max_step_diff:g} st", False, diff.message)
    if diff.max_abs_diff is not None:
        return Cell(f"|Δ|{diff.max_abs_diff:.2g}", False, diff.message)
    return Cell("differs", False, diff.message)


def case_row(case: Case, engines: list[str]) -> tuple[dict[str, Cell], str]:
    """{backend: Cell} and, when the reference cannot run the case, the reason."""
    from . import reference

    if case.flow not in reference.FLOWS or not case.check_numerics:
        return {}, f"{case.flow} flow: the reference runs eager module trees and FX graph modules (FX, PT2E)"
    try:
        with quiet(), engine("fbgemm" if "fbgemm" in engines else engines[0]):
            example = flows.make_input(case)
            model = flows.runnable(case, flows.build(case), example)
            expected = reference.reference_output(model, example)
    except reference.Unsupported as exc:
        return {}, str(exc)
    cells = {}
    for backend in engines:
        with quiet(), engine(backend):
            try:
                model = flows.runnable(case, flows.build(case), example)
                cells[backend] = _distance(expected, case.forward(model, example))
            except Exception as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                cells[backend] = Cell("n/a", None, f"{backend} cannot run it: {first[:120]}")
    return cells, ""


def matrix(cases: list[Case], engines: list[str] | None = None) -> str:
    from tabulate import tabulate

    engines = engines or supported_engines()
    rows, skipped, exact, inexact = [], [], 0, []
    for case in cases:
        cells, why = case_row(case, engines)
        if why:
            skipped.append(f"{case.id}: {why}")
            continue
        rows.append([case.id, *(cells[b].text for b in engines)])
        for b in engines:
            if cells[b].exact:
                exact += 1
            elif cells[b].exact is False:
                inexact.append((case.id, b, cells[b].text))
    lines = [tabulate(rows, headers=["case", *engines]), "",
             f"{len(rows)} cases compared: {exact} (case, backend) pairs exact, {len(inexact)} not"]
    lines += [f"  not exact: {c} on {b}: {t}" for c, b, t in inexact]
    if skipped:
        lines += [f"{len(skipped)} cases without a reference:"] + [f"  {s}" for s in skipped]
    return "\n".join(lines)
