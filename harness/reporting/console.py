"""What ``bc-harness replay`` prints for a person: an overview, then what needs attention.

The overview is a matrix of verdict counts per golden version and backend. Below it, the
results that fail the run come first, each reason once; then the known ones, one line per
known-drifts entry; skips, float rounding and warnings are one line each. Every row and
every reason is one flag away (``-v``), and all of it is in ``--json``.
"""

from __future__ import annotations

from collections import Counter

from harness.notices import is_deprecation
from harness.replaying.results import VERDICTS, Result, details, rounding_summary, summary, table
from harness.compare import ulps_text
from harness.versions import version_key
from harness.verdicts import Verdict

#: the longest a known entry's reason is shown in the folded view (``-v`` shows it whole)
REASON_CHARS = 110


def overview(results: list[Result]) -> str:
    """Verdict counts per (golden version, backend); a known drift or load-error says so."""
    from tabulate import tabulate

    from harness.backends import ordered

    counts = Counter((r.golden_version, r.backend, r.verdict) for r in results)
    known = Counter((r.golden_version, r.backend, r.verdict) for r in results if r.known)
    present = [v for v in VERDICTS if any(k[2] == v for k in counts)]
    rows, previous = [], None
    for golden in sorted({r.golden_version for r in results}, key=version_key):
        for backend in ordered({r.backend for r in results if r.golden_version == golden}):
            cells = [_count(counts[(golden, backend, v)], known[(golden, backend, v)]) for v in present]
            rows.append([golden if golden != previous else "", backend, *cells])
            previous = golden
    return tabulate(rows, headers=["golden", "backend", *present], tablefmt="simple",
                    colalign=("left", "left", *["right"] * len(present)))


def _count(n: int, known: int) -> str:
    if not n:
        return ""
    if known == n:
        return f"{n} known"
    return f"{n} ({known} known)" if known else str(n)


def attention(results: list[Result], limit: int = 25) -> list[str]:
    """The results that fail the run, each reason once; then the known ones, folded per entry."""
    failing = [r for r in results if r.failed]
    lines = []
    if failing:
        reasons = details(failing, limit=limit).splitlines()
        lines += [f"Needs attention: {len(failing)} results fail the run ({len(reasons)} reason{'s' if len(reasons) != 1 else ''}):",
                  *(f"  {line}" for line in reasons)]
    else:
        lines.append("Needs attention: nothing unexplained.")
    lines += _known(results)
    return lines


def _known(results: list[Result]) -> list[str]:
    """One line per known-drifts entry that covered something: verdict, count, where, why."""
    groups: dict[str, list[Result]] = {}
    for r in results:
        if r.known:
            groups.setdefault(r.known, []).append(r)
    if not groups:
        return []
    total = sum(len(g) for g in groups.values())
    lines = [f"Known, examined and not failing (known-drifts.toml): {total} results, {len(groups)} entries:"]
    for reason, members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        verdicts = "/".join(dict.fromkeys(r.verdict for r in members))
        goldens = _span(sorted({r.golden_version for r in members}, key=version_key))
        cases = list(dict.fromkeys(r.case for r in members))
        named = ", ".join(cases[:2]) + (f" +{len(cases) - 2}" if len(cases) > 2 else "")
        short = reason if len(reason) <= REASON_CHARS else reason[:REASON_CHARS].rsplit(" ", 1)[0] + " …"
        lines.append(f"  {verdicts:<10} {len(members):>4}  goldens {goldens}, {named}: {short}")
    return lines


def _span(versions: list[str]) -> str:
    return versions[0] if len(versions) == 1 else f"{versions[0]}–{versions[-1]}"


def one_liners(results: list[Result]) -> list[str]:
    """Skips, float rounding and warnings, a line each: counted, never failing; -v has them all."""
    lines = []
    skips = [r for r in results if r.verdict == Verdict.SKIP]
    if skips:
        reasons = len({r.message for r in skips})
        lines.append(f"Skipped: {len(skips)} results that cannot be judged here, for {reasons} reason{'s' if reasons != 1 else ''} (-v lists them)")
    rounding = [r for r in results if r.verdict == Verdict.ROUNDING]
    if rounding:
        worst = max(r.max_ulp_diff or 0.0 for r in rounding)
        lines.append(f"Float rounding: {len(rounding)} results within the bound, at most {ulps_text(worst)} "
                     "(not failing; --exact fails them; -v: per machine pair)")
    warned = [r for r in results if r.warnings]
    if warned:
        distinct = Counter(w for r in warned for w in r.warnings)
        deprecations = sum(1 for w in distinct if is_deprecation(w))
        lines.append(f"Warnings: {len(distinct)} distinct ({deprecations} deprecations) in {len(warned)} results "
                     "(the report and --json list them)")
    return lines


def render(results: list[Result], *, every_row: bool, quiet: bool, elapsed: float) -> str:
    """The whole output of a replay: backward results, then forward ones, then the summary line."""
    backward = [r for r in results if not r.forward]
    forward = [r for r in results if r.forward]
    blocks: list[str] = []
    if every_row:
        if not quiet and backward:
            blocks.append(table(backward))
        blocks += [b for b in (details(backward, limit=10**9), rounding_summary(backward)) if b]
    else:
        if not quiet and backward:
            blocks.append(overview(backward))
        blocks.append("\n".join(attention(backward) + one_liners(backward)))
    if forward:
        head = "Forward compatibility (informational, never fails the run): goldens newer than this torch"
        body = table(forward) if every_row and not quiet else ""
        sets = sorted({r.golden_version for r in forward}, key=version_key)
        counts = [f"  golden {v}: {summary([r for r in forward if r.golden_version == v]).split(': ', 1)[1]}"
                  for v in sets]
        blocks.append("\n".join(x for x in (head, body, *counts) if x))
    if backward or not forward:
        blocks.append(f"{summary(backward)} in {elapsed:.1f} s")
    else:  # only newer sets were asked for (--golden): nothing here can fail the run
        blocks.append(f"OK: no golden set older than this torch was replayed; {len(forward)} forward results "
                      f"above, informational, in {elapsed:.1f} s")
    return "\n\n".join(blocks)
