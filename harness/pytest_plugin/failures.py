"""What a failing golden check shows: numeric diagnostics per result, and the obtained output saved."""

from __future__ import annotations

import re
from pathlib import Path

from harness.pytest_plugin.session import GoldenSession
from harness.verdicts import Verdict


class GoldenFailure(AssertionError):
    """A golden result that failed; its text is the whole failure report. Public as
    ``harness.pytest_plugin.GoldenFailure``, and named so in a failure's last line."""


GoldenFailure.__module__ = "harness.pytest_plugin"

def failure_text(state: GoldenSession, evaluations, tolerance, nodeid: str) -> str:
    """Numeric diagnostics of failed evaluations, then how to accept them; obtained outputs are saved.

    Results that fail the same way (one drift on four backends) are one paragraph naming
    their backends, with the diagnostics of the first: the reader sees each finding once.
    """
    from harness.reporting.diagnostics import describe
    from harness.notices import quiet
    from harness.pytest_plugin.session import runtime

    groups: dict[tuple, list] = {}
    for ev in evaluations:
        r = ev.result
        groups.setdefault((r.golden_version, r.case, r.artifact, r.verdict, r.message), []).append(ev)
    parts, detailed = [], 0
    for (version, case, artifact, verdict, message), members in groups.items():
        ev = members[0]
        head = f"golden {version} · {case} · {artifact} · {', '.join(e.result.backend for e in members)}: {verdict}"
        if message:
            head += f" — {message}"
        if verdict == Verdict.CRASH and ev.result.runtime_machine:
            head += f"\non {ev.result.runtime_machine}; to record it as known: a [[crash]] entry in " \
                    f"{state.golden_dir / 'known-drifts.toml'} with the CPUs it was seen on (docs/versions.md, Known drifts)"
        if ev.obtained is None or detailed >= 3:
            parts.append(head)
            continue
        detailed += 1
        with quiet():
            body = describe(ev.golden, ev.obtained, tolerance, ev.targets)
        saved = [p for p in (_save_obtained(state, nodeid, e) for e in members) if p]
        where = f"\nobtained output saved to {saved[0]}" + (f" (and {len(saved) - 1} more beside it)"
                                                         if len(saved) > 1 else "") if saved else ""
        parts.append(head + ("\n" + body if body else "") + where)
    return "\n\n".join(parts + _how_to_accept(state, evaluations, nodeid, runtime()))


def _how_to_accept(state: GoldenSession, evaluations, nodeid: str, version: str) -> list[str]:
    """What a person does about it: the command that accepts a change of this torch's golden, and
    for an older torch's golden (a backward-compatibility finding) the file that records it."""
    drifts = {e.result.golden_version for e in evaluations if e.result.verdict == Verdict.DRIFT}
    lines = []
    if version in drifts:
        lines.append(f"to accept this change (rewrites the torch {version} golden and prints what changed): "
                     f"{state.command(nodeid, '--golden-update')}")
    if any(e.result.verdict == Verdict.MISSING and e.result.golden_version == version for e in evaluations):
        lines.append(f"to write it (what exists stays as it is): {state.command(nodeid, '--golden-update-new-only')}")
    older = sorted(drifts - {version})
    if older:
        lines.append(f"a drift against the goldens of torch {', '.join(older)} is a change across torch releases: "
                     f"to accept it, record it in {state.golden_dir / 'known-drifts.toml'} with its figures and "
                     "reason (docs/versions.md, Known drifts)")
    return lines


def _save_obtained(state: GoldenSession, nodeid: str, ev) -> Path | None:
    from harness.notices import quiet
    from harness.goldens.safeload import save_bytes
    from harness.goldens.store import atomic_write

    r = ev.result
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]
    path = state.obtained_dir() / safe / f"{r.golden_version}-{r.case}-{r.artifact}-{r.backend}.pt"
    try:
        with quiet():
            atomic_write(path, save_bytes(ev.obtained))
    except Exception:
        return None
    return path
