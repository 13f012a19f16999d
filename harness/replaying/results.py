"""Result records: one verdict per (case, artifact, backend, golden version), and how they are shown."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.compare import ulps_text
from harness.verdicts import COMPARED, FAILING, Verdict
from harness.versions import version_key

#: every verdict, in the order summaries show them (their meanings: harness.verdicts)
VERDICTS = tuple(Verdict)


@dataclass
class Result:
    case: str
    artifact: str
    backend: str
    golden_version: str
    runtime_version: str
    verdict: Verdict
    message: str = ""
    max_abs_diff: float | None = None
    max_step_diff: float | None = None
    mismatched: int | None = None
    total: int | None = None
    #: the largest float difference in ulps of its tensor's largest magnitude (harness.compare)
    max_ulp_diff: float | None = None
    #: the same figures against the fbgemm golden: the cross-backend question
    vs_fbgemm_max_abs_diff: float | None = None
    vs_fbgemm_max_step_diff: float | None = None
    vs_fbgemm_mismatched: int | None = None
    #: the same figures against the project's reference kernels (harness.reference)
    vs_reference_max_abs_diff: float | None = None
    vs_reference_max_step_diff: float | None = None
    vs_reference_mismatched: int | None = None
    warnings: list[str] = field(default_factory=list)
    layout: str = "harness"
    pytorch_test: str | None = None
    #: the reason, when a known-drifts entry covers this drift (it then does not fail)
    known: str | None = None
    #: the golden comes from a newer torch than the runtime: forward compatibility,
    #: reported separately and never failing a run
    forward: bool = False
    #: where the golden's machine fingerprint differs from the runtime's (harness.machine), both
    #: described; None where the output was obtained on the machine that made the golden
    golden_machine: str | None = None
    runtime_machine: str | None = None
    #: the case's flow (harness.stacks): the deprecation radar groups results by flow and kind
    flow: str | None = None

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}")
        self.verdict = Verdict(self.verdict)

    @property
    def failed(self) -> bool:
        return self.verdict in FAILING and not self.forward and not self.known




def whole(version: str, runtime: str, message: str, *, case: str = "*", verdict: Verdict = Verdict.CORRUPT,
          **fields) -> Result:
    """A result about a whole golden set, or a whole case of it (an unusable manifest, a misnamed
    directory, a malformed entry): no one artifact or backend, so both are ``*``."""
    return Result(case, "*", "*", version, runtime, verdict, message, **fields)


def summary(results: list[Result]) -> str:
    counts = Counter(r.verdict for r in results)
    known = Counter(r.verdict for r in results if r.known)
    ulps = max((r.max_ulp_diff or 0.0 for r in results if r.verdict == Verdict.ROUNDING), default=0.0)
    notes = {v: f" ({known[v]} known)" for v in known}
    notes[Verdict.ROUNDING] = f" (at most {ulps_text(ulps)})"
    parts = [f"{counts[v]} {v}" + (notes.get(v, "")) for v in VERDICTS if counts[v]]
    status = "FAILED" if any(r.failed for r in results) else "OK"
    return f"{status}: {len(results)} results: " + (", ".join(parts) if parts else "none")


def write_json(results: list[Result], path: Path) -> None:
    records = [asdict(r) for r in results]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")


def _steps(value) -> str:
    if value is None:
        return "?"
    return f"{value:.3g}"


def _cell(r: Result) -> str:
    """One backend's cell: the verdict, its step figure, and the distance to fbgemm."""
    text = f"known {r.verdict}" if r.known else r.verdict
    if r.verdict == Verdict.ROUNDING and r.max_ulp_diff is not None:
        text += f" {r.max_ulp_diff:.2g}ulp"
    if r.verdict == Verdict.DRIFT:
        text += f" {_steps(r.max_step_diff)}st" if r.max_step_diff is not None else (
            f" |Δ|{r.max_abs_diff:.2g}" if r.max_abs_diff is not None else "")
    if r.backend != "fbgemm" and r.verdict in COMPARED and r.vs_fbgemm_mismatched:
        if r.vs_fbgemm_max_step_diff is not None:
            text += f" [fbgemm ±{_steps(r.vs_fbgemm_max_step_diff)}st]"
        elif r.vs_fbgemm_max_abs_diff is not None:
            text += f" [fbgemm |Δ|{r.vs_fbgemm_max_abs_diff:.2g}]"
    if r.verdict in COMPARED and r.vs_reference_mismatched is not None:
        text += " ref=" if not r.vs_reference_mismatched else (
            f" ref±{_steps(r.vs_reference_max_step_diff)}st" if r.vs_reference_max_step_diff is not None
            else f" ref|Δ|{r.vs_reference_max_abs_diff:.2g}" if r.vs_reference_max_abs_diff is not None
            else " ref≠ (another shape)")
    return text


def table(results: list[Result]) -> str:
    """A row per (golden version, case, artifact), a column per backend."""
    from tabulate import tabulate

    from harness.backends import ordered

    backends = ordered(r.backend for r in results)
    rows: dict[tuple, dict[str, str]] = {}
    for r in results:
        rows.setdefault((r.golden_version, r.case, r.artifact), {})[r.backend] = _cell(r)
    body = [[*key, *(cells.get(b, "") for b in backends)] for key, cells in rows.items()]
    return tabulate(body, headers=["golden", "case", "artifact", *backends], tablefmt="simple")


def details(results: list[Result], limit: int = 40) -> str:
    """The reasons the table cannot show: one line per distinct (verdict, case, reason).

    Results that share a reason (a skip on three backends, say) are folded into one
    line that names their artifacts and backends, failures before skips. Rounding results
    are summed up by rounding_summary instead, per machine pair.
    """
    groups: dict[tuple, list[Result]] = {}
    for r in results:
        if r.verdict not in (Verdict.PASS, Verdict.ROUNDING) and r.message:
            message = r.message + (f" [known: {r.known}]" if r.known else "")
            groups.setdefault((r.verdict, r.golden_version, r.case, message), []).append(r)
    order = sorted(groups, key=lambda k: (k[0] == Verdict.SKIP, VERDICTS.index(k[0])))
    lines = []
    for verdict, golden, case, message in order:
        members = groups[(verdict, golden, case, message)]
        artifacts = ",".join(dict.fromkeys(r.artifact for r in members))
        backends = ",".join(dict.fromkeys(r.backend for r in members))
        lines.append(f"{verdict:<10} {golden} {case} [{artifacts}] [{backends}]: {message}")
    if len(lines) > limit:
        lines = lines[:limit] + [f"... {len(lines) - limit} more in the JSON report (--json FILE)"]
    return "\n".join(lines)


def rounding_groups(records) -> list[dict]:
    """Rounding results (Result objects or their JSON records) grouped by (golden machine,
    runtime machine): golden and runtime versions, count, cases, largest ulps and |Δ|, and the
    most elements of one result that differ."""
    groups: dict[tuple, dict] = {}
    for r in records:
        r = asdict(r) if isinstance(r, Result) else r
        if r["verdict"] != Verdict.ROUNDING:
            continue
        key = (r.get("golden_machine"), r.get("runtime_machine"))
        g = groups.setdefault(key, {"golden_machine": key[0], "runtime_machine": key[1], "goldens": set(),
                                    "runtimes": set(), "results": 0, "cases": {}, "max_ulp": 0.0,
                                    "max_abs": 0.0, "max_elements": (0, 0)})
        g["goldens"].add(r["golden_version"])
        g["runtimes"].add(r["runtime_version"])
        g["results"] += 1
        g["cases"][r["case"]] = None
        g["max_ulp"] = max(g["max_ulp"], r.get("max_ulp_diff") or 0.0)
        g["max_abs"] = max(g["max_abs"], r.get("max_abs_diff") or 0.0)
        g["max_elements"] = max(g["max_elements"], (r.get("mismatched") or 0, r.get("total") or 0))
    for g in groups.values():
        g["goldens"] = sorted(g["goldens"], key=version_key)
        g["runtimes"] = sorted(g["runtimes"], key=version_key)
        g["cases"] = list(g["cases"])
    return sorted(groups.values(), key=lambda g: ([version_key(v) for v in g["goldens"]], g["golden_machine"] or ""))


def rounding_summary(records, cases_shown: int = 6) -> str:
    """Every rounding result, summed up per machine pair; empty when there is none."""
    groups = rounding_groups(records)
    if not groups:
        return ""
    total = sum(g["results"] for g in groups)
    worst = max(g["max_ulp"] for g in groups)
    lines = [f"Float rounding, shown and not failing (--exact fails it): {total} results, at most {ulps_text(worst)} "
             "of an output's largest magnitude"]
    for g in groups:
        versions = ", ".join(g["goldens"])
        if g["golden_machine"] is None:
            lines.append(f"  goldens {versions}, replayed on the machine that made them (thread count, call order)")
        else:
            lines.append(f"  goldens {versions} made on: {g['golden_machine']}")
            lines.append(f"  {'replayed on:':>{len(versions) + 17}} {g['runtime_machine']}")
        cases = ", ".join(g["cases"][:cases_shown]) + (f", +{len(g['cases']) - cases_shown} more"
                                                        if len(g["cases"]) > cases_shown else "")
        bad, of = g["max_elements"]
        n = len(g["cases"])
        lines.append(f"      {g['results']} results in {n} case{'' if n == 1 else 's'}, at most {ulps_text(g['max_ulp'])} "
                     f"(max |Δ| {g['max_abs']:.3g}, up to {bad} of {of} elements): {cases}")
    return "\n".join(lines)
