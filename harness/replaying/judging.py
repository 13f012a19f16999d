"""Judging: an obtained output against its golden, the fbgemm golden and the reference kernels,
as a verdict with its figures (what "differs" means is harness.compare's; the layout's policy
turns a difference into a verdict)."""

from __future__ import annotations

from dataclasses import replace

from harness.catalog import Case, Tolerance
from harness.compare import Diff, compare, compare_state
from harness.goldens.store import GoldenError
from harness.backends import using
from harness.notices import one_line, quiet
from harness.replaying.loading import CaseFiles, Reader
from harness.replaying.running import today_state


def tolerance(case: Case, rounding_ulps: int | None):
    """The case's tolerance, with the run's rounding bound where one was given (--exact: 0)."""
    return case.tolerance if rounding_ulps is None else replace(case.tolerance, rounding_ulps=rounding_ulps)


def figures(diff: Diff, cross: Diff | None, to_reference: Diff | None) -> dict:
    """A Result's figures: against the golden, the fbgemm golden and the reference."""
    return dict(
        max_abs_diff=diff.max_abs_diff, max_step_diff=diff.max_step_diff,
        mismatched=diff.mismatched, total=diff.total, max_ulp_diff=diff.max_ulp_diff,
        vs_fbgemm_max_abs_diff=cross.max_abs_diff if cross else None,
        vs_fbgemm_max_step_diff=cross.max_step_diff if cross else None,
        vs_fbgemm_mismatched=cross.mismatched if cross else None,
        vs_reference_max_abs_diff=to_reference.max_abs_diff if to_reference else None,
        vs_reference_max_step_diff=to_reference.max_step_diff if to_reference else None,
        vs_reference_mismatched=to_reference.mismatched if to_reference else None,
    )


def judge(layout, reader: Reader, case: Case, backend: str, golden, obtained, diff: Diff, files: CaseFiles,
          reference) -> tuple[str, str, dict]:
    """(verdict, message, figures) of an obtained output; ``reference`` is the reference kernels'
    output, or why there is none (a str)."""
    verdict, message = layout.judge(case, golden, obtained, diff)
    cross = versus_fbgemm(reader, case, backend, obtained, files)
    # the default bounds, in the case's terms of what is comparable (a runtime's dequantized output)
    terms = Tolerance(dequantized=case.tolerance.dequantized)
    to_reference = None if isinstance(reference, str) or reference is None else compare(reference, obtained, terms)
    return verdict, message, figures(diff, cross, to_reference)


def versus_fbgemm(reader: Reader, case: Case, backend: str, obtained, files: CaseFiles) -> Diff | None:
    """The obtained output against the fbgemm golden (exact), or None where there is none."""
    if backend in ("fbgemm", "any"):
        return None
    try:
        fbgemm = reader.expected(case, "fbgemm", files)
    except GoldenError:
        return None
    return compare(fbgemm, obtained)


def state_diff(reader: Reader, case: Case, example, backend_name: str | None, bound):
    """Today's model's state_dict against the golden one (where the case keeps one), so a changed
    weight, scale or zero point is caught even where it does not reach the output: a Diff, None
    where there is none to compare, a GoldenError where the golden's cannot be read. Both are made
    under ``backend_name`` (packed weights unpack with that backend's float types)."""
    try:
        with quiet(), using(backend_name):
            golden = reader.golden_state(case)
            if golden is None:
                return None
            current = today_state(case, example)
    except GoldenError as exc:
        return exc
    except Exception as exc:
        return GoldenError(f"the golden state_dict cannot be compared: {one_line(exc)}")
    return compare_state(golden, current, bound) if isinstance(golden, dict) else None
