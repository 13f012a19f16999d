"""Merged report: many replay runs (JSON) as one golden × runtime × backend × case matrix, in HTML and Markdown."""

from __future__ import annotations

import html
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from harness.backends import ordered
from harness.reporting import markdown_row as _row, markdown_text, radar
from harness.reporting.heatmap import heatmaps
from harness.replaying.results import rounding_groups
from harness.verdicts import FAILING, KNOWABLE
from harness.versions import version_key as _vkey

#: worst first: what a cell shows when its artifacts disagree
SEVERITY = ("crash", "load-error", "corrupt", "missing", "drift", "known crash", "known load-error", "known drift",
            "rounding", "pass", "skip")

def status(record: dict) -> str:
    if record.get("known") and record["verdict"] in KNOWABLE:
        return f"known {record['verdict']}"
    return record["verdict"]


@dataclass
class Cell:
    """One (case, golden, backend, runtime): the worst artifact's status and the largest Δ."""

    status: str = "skip"
    steps: float | None = None
    abs_diff: float | None = None
    ulps: float | None = None
    #: the largest distance to the reference kernels over the cell's results (None: no reference)
    ref_steps: float | None = None
    ref_abs: float | None = None
    ref_mismatched: int | None = None
    records: list = field(default_factory=list)

    def add(self, record: dict) -> None:
        self.records.append(record)
        mine = status(record)
        if SEVERITY.index(mine) < SEVERITY.index(self.status) or len(self.records) == 1:
            self.status = mine
        if record.get("max_step_diff") is not None:
            self.steps = max(self.steps or 0.0, record["max_step_diff"])
        if record.get("max_abs_diff") is not None:
            self.abs_diff = max(self.abs_diff or 0.0, record["max_abs_diff"])
        if record.get("max_ulp_diff") is not None and mine == "rounding":
            self.ulps = max(self.ulps or 0.0, record["max_ulp_diff"])
        if record.get("vs_reference_mismatched") is not None:
            self.ref_mismatched = max(self.ref_mismatched or 0, record["vs_reference_mismatched"])
            self.ref_abs = max(self.ref_abs or 0.0, record.get("vs_reference_max_abs_diff") or 0.0)
            if record.get("vs_reference_max_step_diff") is not None:
                self.ref_steps = max(self.ref_steps or 0.0, record["vs_reference_max_step_diff"])

    def figure(self) -> str:
        if self.status in ("pass", "skip") and not self.steps and not self.abs_diff:
            return ""
        if self.status == "rounding" and self.ulps is not None:
            return f"{self.ulps:.2g} ulp"
        if self.steps:
            return f"{self.steps:.3g} st"
        if self.abs_diff:
            return f"|Δ| {self.abs_diff:.2g}"
        return ""


@dataclass
class Report:
    records: list[dict]
    runtimes: list[str]
    goldens: list[str]
    backends: list[str]
    cases: list[str]
    cells: dict  # (case, golden, backend, runtime) -> Cell
    forward: list = field(default_factory=list)  # records of goldens newer than their runtime
    #: matrix rows whose torch could not be installed (harness.releases): not a BC result
    not_installed: list = field(default_factory=list)

    @classmethod
    def load(cls, paths: list[Path]) -> "Report":
        merged: dict[tuple, dict] = {}
        not_installed = []
        for path in paths:
            loaded = json.loads(Path(path).read_text(encoding="utf-8"))
            if isinstance(loaded, dict):  # install-<row>.json: a row whose torch did not install
                entry = loaded["not_installed"]
                not_installed.append({k: str(entry[k]) for k in ("row", "torch", "error")})
                continue
            for record in loaded:
                _check(record)
                key = (record["case"], record["artifact"], record["backend"], record["golden_version"],
                       record["runtime_version"])
                merged[key] = record  # a later file wins for the same result
        everything = list(merged.values())
        records = [r for r in everything if not r.get("forward")]
        forward = [r for r in everything if r.get("forward")]
        cells: dict[tuple, Cell] = defaultdict(Cell)
        for r in records:
            if r["case"] == "*":
                continue
            cells[(r["case"], r["golden_version"], r["backend"], r["runtime_version"])].add(r)
        backends = ordered(r["backend"] for r in records if r["backend"] != "*")
        cases = sorted({r["case"] for r in records if r["case"] != "*"})  # merged shards: same order
        return cls(records, sorted({r["runtime_version"] for r in records}, key=_vkey),
                   sorted({r["golden_version"] for r in records}, key=_vkey), backends, cases, dict(cells), forward,
                   not_installed)

    # -- analysis ---------------------------------------------------------------------
    def drifts(self) -> list[dict]:
        """Every drift, with the first runtime version where it appears and a bisect hint."""
        out = []
        for case in self.cases:
            for golden in self.goldens:
                for backend in self.backends:
                    seen = [(rt, self.cells.get((case, golden, backend, rt))) for rt in self.runtimes]
                    seen = [(rt, c) for rt, c in seen if c is not None]
                    drifting = [rt for rt, c in seen if c.status in ("drift", "known drift")]
                    if not drifting:
                        continue
                    first = drifting[0]
                    before = [rt for rt, c in seen if _vkey(rt) < _vkey(first) and c.status == "pass"]
                    cell = self.cells[(case, golden, backend, first)]
                    out.append({
                        "case": case, "golden": golden, "backend": backend, "first_runtime": first,
                        "known": all(self.cells[(case, golden, backend, rt)].status == "known drift" for rt in drifting),
                        "figure": cell.figure(),
                        "bisect": (before[-1], first) if before else None,
                        "message": next((r["message"] for r in cell.records if r["verdict"] == "drift"), ""),
                    })
        return out

    def counts(self, forward: bool = False) -> dict[tuple[str, str], dict[str, int]]:
        table: dict = defaultdict(lambda: defaultdict(int))
        for r in self.forward if forward else self.records:
            table[(r["golden_version"], r["runtime_version"])][status(r)] += 1
        return table

    def sorted_counts(self, forward: bool = False) -> list:
        """counts() as rows ordered by golden version, then runtime version."""
        return sorted(self.counts(forward).items(), key=lambda kv: (_vkey(kv[0][0]), _vkey(kv[0][1])))

    # -- Markdown ---------------------------------------------------------------------
    def markdown(self) -> str:
        lines = ["# Backward-compatibility report", "",
                 f"Runtime versions: {', '.join(self.runtimes)}. Golden versions: {', '.join(self.goldens)}. "
                 f"{len(self.records)} results.", "", "## Results per golden and runtime version", "",
                 "| golden | runtime | " + " | ".join(SEVERITY) + " |",
                 "|---|---|" + "---|" * len(SEVERITY)]
        for (golden, runtime), counts in self.sorted_counts():
            lines.append(_row(golden, runtime, *(counts.get(s, "") for s in SEVERITY)))
        if self.forward:
            lines += ["", "## Forward compatibility (informational): goldens newer than the runtime", "",
                      "| golden | runtime | " + " | ".join(SEVERITY) + " |", "|---|---|" + "---|" * len(SEVERITY)]
            for (golden, runtime), counts in self.sorted_counts(forward=True):
                lines.append(_row(golden, runtime, *(counts.get(s, "") for s in SEVERITY)))
        if self.not_installed:
            lines += ["", "## Rows not installed (no result: not a backward-compatibility finding)", "",
                      "| row | torch | error |", "|---|---|---|"]
            lines += [_row(n["row"], n["torch"], n["error"][:300]) for n in self.not_installed]
        lines += ["", "## Needs attention", ""]
        found = self.breaks()
        lines += [f"- **{case}** {verdict}, golden {golden} on runtime {runtime} "
                  f"[{', '.join(dict.fromkeys(r['artifact'] for r in members))}] "
                  f"[{', '.join(dict.fromkeys(r['backend'] for r in members))}]: {markdown_text(message[:300])}"
                  for (verdict, golden, runtime, case, message), members in found] or [
            "Nothing unexplained: every failing result is a known, examined entry of known-drifts.toml."]
        lines += ["", *radar.markdown(self.records)]
        lines += self._rounding_markdown()
        warned = self.warning_counts()
        if warned:
            lines += ["", "## Warnings", "", "| results | warning |", "|---:|---|"]
            lines += [_row(n, w[:300]) for w, n, _ in warned]
        lines += ["", "## Drifts", ""]
        drifts = self.drifts()
        if not drifts:
            lines.append("None.")
        for d in drifts:
            hint = f"; passes on {d['bisect'][0]}, drifts on {d['bisect'][1]}: bisect between them" if d["bisect"] else ""
            known = " (known)" if d["known"] else ""
            lines.append(f"- **{d['case']}**, golden {d['golden']}, {d['backend']}{known}: first on runtime "
                         f"{d['first_runtime']}, {d['figure']}{hint}. {d['message']}")
        lines += ["", "## Matrix", ""]
        for backend in self.backends:
            lines += [f"### {backend}", "", "| case | golden | " + " | ".join(self.runtimes) + " |",
                      "|---|---|" + "---|" * len(self.runtimes)]
            for case in self.cases:
                for golden in self.goldens:
                    row = [self.cells.get((case, golden, backend, rt)) for rt in self.runtimes]
                    if not any(row):
                        continue
                    cells = [f"{c.status} {c.figure()}".strip() if c else "" for c in row]
                    lines.append(_row(case, golden, *cells))
            lines.append("")
        return "\n".join(lines) + "\n"

    def _rounding_markdown(self) -> list[str]:
        groups = rounding_groups(self.records)
        if not groups:
            return []
        lines = ["", "## Float rounding by machine pair (shown, not failing)", "",
                 "| golden machine | runtime machine | goldens | runtimes | results | cases | max ulps | max abs Δ |",
                 "|---|---|---|---|---:|---:|---:|---:|"]
        same = "the same machine"
        for g in groups:
            lines.append(_row(g['golden_machine'] or same, g['runtime_machine'] or same, ", ".join(g['goldens']),
                              ", ".join(g['runtimes']), g['results'], len(g['cases']), f"{g['max_ulp']:.3g}",
                              f"{g['max_abs']:.3g}"))
        return lines

    def _rounding_html(self) -> list[str]:
        e = html.escape
        groups = rounding_groups(self.records)
        if not groups:
            return []
        parts = ["<p>Float outputs within the rounding bound of their golden: "
                 "shown, not failing (<code>--exact</code> fails them).</p><table><tr><th>golden machine</th>"
                 "<th>runtime machine</th><th>goldens</th><th>runtimes</th><th>results</th><th>cases</th>"
                 "<th>max ulps</th><th>max |Δ|</th></tr>"]
        for g in groups:
            parts.append(f"<tr class='rounding'><td>{e(g['golden_machine'] or 'the same machine')}</td>"
                         f"<td>{e(g['runtime_machine'] or 'the same machine')}</td>"
                         f"<td>{e(', '.join(g['goldens']))}</td>"
                         f"<td>{e(', '.join(g['runtimes']))}</td><td>{g['results']}</td>"
                         f"<td title='{e(', '.join(g['cases']))}'>{len(g['cases'])}</td><td>{g['max_ulp']:.3g}</td>"
                         f"<td>{g['max_abs']:.3g}</td></tr>")
        parts.append("</table>")
        return parts

    # -- HTML -------------------------------------------------------------------------
    def html(self) -> str:
        e = html.escape
        parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
                 f"<title>Backward-compatibility report</title><style>{_STYLE}</style></head><body>",
                 "<h1>Backward-compatibility report</h1>",
                 f"<p>{len(self.records)} results from runtime versions <b>{e(', '.join(self.runtimes))}</b> "
                 f"over goldens from <b>{e(', '.join(self.goldens))}</b>.</p>",
                 "<h2>Results per golden and runtime version</h2>", *self._html_counts()]
        if self.forward:
            parts += ["<h2>Forward compatibility (informational)</h2><p>Goldens newer than the runtime "
                      "that replayed them; never a failure.</p>", *self._html_counts(forward=True)]
        if self.not_installed:
            parts += ["<h2>Rows not installed</h2><p>Their torch could not be installed: no result, and not a "
                      "backward-compatibility finding.</p><table><tr><th>row</th><th>torch</th><th>error</th></tr>",
                      *(f"<tr><td>{e(n['row'])}</td><td>{e(n['torch'])}</td><td><pre>{e(n['error'])}</pre></td></tr>"
                        for n in self.not_installed), "</table>"]
        # what a reader looks at first: the breaks nobody has explained, then the heatmaps; the
        # long lists (known drifts, rounding, warnings, the whole matrix) folded below
        parts += [*self._html_breaks(), *radar.html_parts(self.records), *heatmaps(self), *self._html_drifts(),
                  *(_folded("Float rounding by machine pair", self._rounding_html()) if self._rounding_html() else []),
                  *_folded("Warnings", self._html_warnings()),
                  *_folded("Matrix: every case, golden and runtime per backend", self._html_matrix()),
                  "</body></html>"]
        return "\n".join(parts)

    def breaks(self) -> list[tuple[tuple, list[dict]]]:
        """Failing results no known entry explains, grouped by (verdict, golden, runtime, case, message)."""
        groups: dict[tuple, list[dict]] = {}
        for r in self.records:
            if r["verdict"] in FAILING and not r.get("known"):
                key = (r["verdict"], r["golden_version"], r["runtime_version"], r["case"], r.get("message") or "")
                groups.setdefault(key, []).append(r)
        return sorted(groups.items(), key=lambda kv: (_vkey(kv[0][1]), _vkey(kv[0][2]), kv[0][3]))

    def warning_counts(self) -> list[tuple[str, int, list[str]]]:
        """Each distinct warning: how many results raised it, and in which cases."""
        seen: dict[str, list] = {}
        for r in self.records:
            for w in r.get("warnings") or ():
                entry = seen.setdefault(w, [0, {}])
                entry[0] += 1
                entry[1][r["case"]] = None
        return sorted(((w, n, list(cases)) for w, (n, cases) in seen.items()), key=lambda t: (-t[1], t[0]))

    def _html_breaks(self) -> list[str]:
        e = html.escape
        found = self.breaks()
        if not found:
            return ["<h2>Needs attention</h2>", "<p class='pass'>Nothing unexplained: every failing result is "
                    "a known, examined entry of known-drifts.toml.</p>"]
        parts = [f"<h2>Needs attention: {sum(len(m) for _, m in found)} results nobody has explained</h2>",
                 "<table><tr><th>verdict</th><th>golden</th><th>runtime</th><th>case</th><th>artifacts</th>"
                 "<th>backends</th><th>reason</th></tr>"]
        for (verdict, golden, runtime, case, message), members in found:
            parts.append(f"<tr class='{_css(verdict)}'><td>{e(verdict)}</td><td>{e(golden)}</td><td>{e(runtime)}</td>"
                         f"<td>{e(case)}</td><td>{e(', '.join(dict.fromkeys(r['artifact'] for r in members)))}</td>"
                         f"<td>{e(', '.join(dict.fromkeys(r['backend'] for r in members)))}</td>"
                         f"<td>{e(message[:300])}</td></tr>")
        return parts + ["</table>"]

    def _html_warnings(self) -> list[str]:
        e = html.escape
        counts = self.warning_counts()
        if not counts:
            return ["<p>No warnings were raised.</p>"]
        parts = ["<table><tr><th>results</th><th>warning</th><th>cases</th></tr>"]
        parts += [f"<tr><td>{n}</td><td>{e(w[:300])}</td><td>{e(', '.join(cases[:8]))}"
                  f"{e(f' +{len(cases) - 8}') if len(cases) > 8 else ''}</td></tr>" for w, n, cases in counts]
        return parts + ["</table>"]

    def _html_counts(self, forward: bool = False) -> list[str]:
        """Verdict counts per (golden, runtime): coloured for backward results, plain for forward ones."""
        e = html.escape
        parts = ["<table><tr><th>golden</th><th>runtime</th>" + "".join(f"<th>{s}</th>" for s in SEVERITY) + "</tr>"]
        for (golden, runtime), counts in self.sorted_counts(forward):
            parts.append(f"<tr><td>{e(golden)}</td><td>{e(runtime)}</td>" + "".join(
                f"<td class='{_css(s) if counts.get(s) and not forward else ''}'>{counts.get(s, '')}</td>"
                for s in SEVERITY) + "</tr>")
        return parts + ["</table>"]

    def _html_drifts(self) -> list[str]:
        """Every drift with its first runtime and bisect hint; folded, since the breaks are above."""
        e = html.escape
        drifts = self.drifts()
        if not drifts:
            return ["<h2>Drifts</h2>", "<p>No drift.</p>"]
        known = sum(1 for d in drifts if d["known"])
        parts = ["<table><tr><th>case</th><th>golden</th><th>backend</th><th>first runtime</th>"
                 "<th>largest Δ</th><th>bisect hint</th><th>detail</th></tr>"]
        for d in drifts:
            hint = (f"passes on {d['bisect'][0]}, drifts on {d['bisect'][1]}" if d["bisect"]
                    else "drifts on every runtime tried")
            parts.append(f"<tr class='{'known' if d['known'] else 'drift'}'><td>{e(d['case'])}</td>"
                         f"<td>{e(d['golden'])}</td><td>{e(d['backend'])}</td><td>{e(d['first_runtime'])}</td>"
                         f"<td>{e(d['figure'])}</td><td>{e(hint)}</td>"
                         f"<td>{'known: ' if d['known'] else ''}{e(d['message'][:160])}</td></tr>")
        return _folded(f"Drifts: {len(drifts)}, {known} of them known", parts + ["</table>"])

    def _html_matrix(self) -> list[str]:
        e = html.escape
        parts = []
        for backend in self.backends:
            parts.append(f"<h3>{e(backend)}</h3><table><tr><th>case</th><th>golden</th>"
                         + "".join(f"<th>{e(rt)}</th>" for rt in self.runtimes) + "</tr>")
            for case in self.cases:
                for golden in self.goldens:
                    row = [self.cells.get((case, golden, backend, rt)) for rt in self.runtimes]
                    if any(row):
                        parts.append(f"<tr><td>{e(case)}</td><td>{e(golden)}</td>" + "".join(
                            f"<td class='{_css(c.status)}'>{e(c.status)} {e(c.figure())}</td>" if c else "<td></td>"
                            for c in row) + "</tr>")
            parts.append("</table>")
        return parts


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:24px;color:#212121;max-width:1400px}"
    "table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ddd;padding:3px 8px;"
    "font-size:13px;text-align:left}th{background:#f5f5f5}"
    ".drift{background:#ffcdd2;font-weight:600}.known{background:#fff3c4}.pass{color:#2e7d32}"
    ".bad{background:#e1bee7;font-weight:600}.skip{color:#9e9e9e}.rounding{background:#e0f2f1}"
    ".cases{display:flex;flex-wrap:wrap;gap:18px}.case{border:1px solid #e0e0e0;padding:8px;border-radius:6px}"
    ".case h3{font-size:13px;margin:0 0 4px}.legend span{display:inline-block;margin-right:14px}"
    "details summary h2{display:inline;cursor:pointer}details{margin:12px 0}"
    ".sw{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}"
)


def _css(state: str) -> str:
    return {"pass": "pass", "rounding": "rounding", "drift": "drift", "known drift": "known", "known load-error": "known",
            "known crash": "known", "skip": "skip"}.get(state, "bad")


_TEXT_FIELDS = ("case", "artifact", "backend", "golden_version", "runtime_version", "verdict")


def _check(record) -> None:
    """A results file's record has the fields the report reads, of their types; ValueError otherwise."""
    if not isinstance(record, dict):
        raise ValueError(f"a record is a {type(record).__name__}, not an object")
    bad = [f for f in _TEXT_FIELDS if not isinstance(record.get(f), str)]
    if record.get("flow") is not None and not isinstance(record.get("flow"), str):
        bad.append("flow")
    found = record.get("warnings", [])
    if not (isinstance(found, list) and all(isinstance(w, str) for w in found)):
        bad.append("warnings")
    if bad:
        raise ValueError(f"a record's {', '.join(bad)} {'is' if len(bad) == 1 else 'are'} not of the expected type")


def _folded(title: str, body: list[str]) -> list[str]:
    """A section a reader opens when wanted: its title always visible, its body folded."""
    return [f"<details><summary><h2>{html.escape(title)}</h2></summary>", *body, "</details>"]

