"""Result records: one verdict per (case, artifact, backend, golden version), and how they are shown."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

VERDICTS = ("pass", "drift", "load-error", "missing", "corrupt", "skip")
FAILING = frozenset({"drift", "load-error", "missing", "corrupt"})


@dataclass
class Result:
    case: str
    artifact: str
    backend: str
    golden_version: str
    runtime_version: str
    verdict: str
    message: str = ""
    max_abs_diff: float | None = None
    max_step_diff: float | None = None
    mismatched: int | None = None
    total: int | None = None
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

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}")

    @property
    def failed(self) -> bool:
        return self.verdict in FAILING and not self.forward and not self.known


def summary(results: list[Result]) -> str:
    counts = Counter(r.verdict for r in results)
    known = Counter(r.verdict for r in results if r.known)
    parts = [f"{counts[v]} {v}" + (f" ({known[v]} known)" if known[v] else "") for v in VERDICTS if counts[v]]
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
    if r.verdict == "drift":
        text += f" {_steps(r.max_step_diff)}st" if r.max_step_diff is not None else (
            f" |Δ|{r.max_abs_diff:.2g}" if r.max_abs_diff is not None else "")
    if r.backend != "fbgemm" and r.verdict in ("pass", "drift") and r.vs_fbgemm_mismatched:
        if r.vs_fbgemm_max_step_diff is not None:
            text += f" [fbgemm ±{_steps(r.vs_fbgemm_max_step_diff)}st]"
        elif r.vs_fbgemm_max_abs_diff is not None:
            text += f" [fbgemm |Δ|{r.vs_fbgemm_max_abs_diff:.2g}]"
    if r.verdict in ("pass", "drift") and r.vs_reference_mismatched is not None:
        text += " ref=" if not r.vs_reference_mismatched else (
            f" ref±{_steps(r.vs_reference_max_step_diff)}st" if r.vs_reference_max_step_diff is not None
            else f" ref|Δ|{r.vs_reference_max_abs_diff:.2g}")
    return text


def table(results: list[Result]) -> str:
    """A row per (golden version, case, artifact), a column per backend."""
    from tabulate import tabulate

    backends: list[str] = []
    for name in ("fbgemm", "x86", "qnnpack", "onednn", "any"):
        if any(r.backend == name for r in results):
            backends.append(name)
    backends += sorted({r.backend for r in results} - set(backends))
    rows: dict[tuple, dict[str, str]] = {}
    for r in results:
        rows.setdefault((r.golden_version, r.case, r.artifact), {})[r.backend] = _cell(r)
    body = [[*key, *(cells.get(b, "") for b in backends)] for key, cells in rows.items()]
    return tabulate(body, headers=["golden", "case", "artifact", *backends], tablefmt="simple")


def details(results: list[Result], limit: int = 40) -> str:
    """The reasons the table cannot show: one line per distinct (verdict, case, reason).

    Results that share a reason (a skip on three backends, say) are folded into one
    line that names their artifacts and backends, failures before skips.
    """
    groups: dict[tuple, list[Result]] = {}
    for r in results:
        if r.verdict != "pass" and r.message:
            message = r.message + (f" [known: {r.known}]" if r.known else "")
            groups.setdefault((r.verdict, r.golden_version, r.case, message), []).append(r)
    order = sorted(groups, key=lambda k: (k[0] == "skip", VERDICTS.index(k[0])))
    lines = []
    for verdict, golden, case, message in order:
        members = groups[(verdict, golden, case, message)]
        artifacts = ",".join(dict.fromkeys(r.artifact for r in members))
        backends = ",".join(dict.fromkeys(r.backend for r in members))
        lines.append(f"{verdict:<10} {golden} {case} [{artifacts}] [{backends}]: {message}")
    if len(lines) > limit:
        lines = lines[:limit] + [f"... {len(lines) - limit} more in the JSON report (--json FILE)"]
    return "\n".join(lines)
