"""What a failing golden check shows: numeric diagnostics per result, and the obtained output saved."""

from __future__ import annotations

from pathlib import Path

from .session import GoldenSession


class GoldenFailure(Exception):
    """A golden result that failed; its text is the whole failure report."""

def failure_text(state: GoldenSession, evaluations, tolerance, nodeid: str) -> str:
    """Numeric diagnostics of failed evaluations; obtained outputs are saved for inspection."""
    from ..diagnostics import describe
    from ..notices import quiet

    parts, detailed = [], 0
    for ev in evaluations:
        r = ev.result
        head = f"golden {r.golden_version} · {r.case} · {r.artifact} · {r.backend}: {r.verdict}"
        if r.message:
            head += f" — {r.message}"
        if ev.obtained is None or detailed >= 3:
            parts.append(head)
            continue
        detailed += 1
        with quiet():
            body = describe(ev.golden, ev.obtained, tolerance, ev.targets)
        saved = _save_obtained(state, nodeid, ev)
        parts.append(head + ("\n" + body if body else "") + (f"\nobtained output saved to {saved}" if saved else ""))
    return "\n\n".join(parts)


def _save_obtained(state: GoldenSession, nodeid: str, ev) -> Path | None:
    import re

    from ..notices import quiet
    from ..safeload import save_bytes
    from ..store import atomic_write

    r = ev.result
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]
    path = state.obtained_dir() / safe / f"{r.golden_version}-{r.case}-{r.artifact}-{r.backend}.pt"
    try:
        with quiet():
            atomic_write(path, save_bytes(ev.obtained))
    except Exception:
        return None
    return path
