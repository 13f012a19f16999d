"""Migration parity as a reader sees it: a row per legacy case, backend and successor, and a summary
per legacy quantization and successor (harness.making.migration computes the rows)."""

from __future__ import annotations

import statistics

from harness.making.migration import LEVELS, Row

_UNIT = (f"Steps: of the int8 grid spanning the float model's output on the case's input (its range / {LEVELS}). "
         "legacy-successor: the largest difference between the two models' outputs, over the backends the "
         "legacy model ran under; vs float: each one's largest difference from the float model's output.")


def _fig(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def measured(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.steps is not None]


def summary(rows: list[Row]) -> list[list]:
    """Per (legacy quantization, successor): cases measured, and the median and largest figures."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in measured(rows):
        groups.setdefault((row.mode, f"{row.successor} ({row.artifact})"), []).append(row)
    out = []
    for (mode, successor), found in sorted(groups.items()):
        steps = [r.steps for r in found]
        out.append([mode, successor, len({r.case for r in found}),
                    f"{statistics.median(steps):.2f} ({max(steps):.2f})",
                    f"{statistics.median(r.legacy_error for r in found):.2f}",
                    f"{statistics.median(r.successor_error for r in found):.2f}"])
    return out


SUMMARY_HEADERS = ["legacy", "successor", "cases", "legacy-successor steps, median (max)",
                   "legacy vs float, median", "successor vs float, median"]


def per_case(rows: list[Row]) -> list[list]:
    """One line per case and successor: the worst backend's figures, or the note where none."""
    lines: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        lines.setdefault((row.case, row.successor), []).append(row)
    out = []
    for (case, successor), found in lines.items():
        first = found[0]
        done = measured(found)
        if done:
            worst = max(done, key=lambda r: r.steps)
            figures = [_fig(worst.steps) + f" ({worst.backend})", _fig(max(r.legacy_error for r in done)),
                       _fig(worst.successor_error), "; ".join(f"{r.backend}: {r.note}" for r in found if r.note)[:200]]
        else:  # the reason that holds whatever the backend first: a backend's own failure says less
            notes = sorted((r.note for r in found), key=lambda n: n.startswith(("legacy model failed", "crash")))
            figures = ["", "", "", notes[0][:200]]
        out.append([case, first.flow, first.mode, f"{successor} ({first.artifact})" if successor else "", *figures])
    return out


CASE_HEADERS = ["case", "flow", "legacy", "successor", "legacy-successor steps (worst backend)",
                "legacy vs float", "successor vs float", "why none / notes"]


def text(rows: list[Row]) -> str:
    from tabulate import tabulate

    return "\n\n".join([tabulate(per_case(rows), headers=CASE_HEADERS), tabulate(summary(rows), headers=SUMMARY_HEADERS),
                        _UNIT, _count(rows)])


def markdown(rows: list[Row]) -> str:
    """The per-case table and the summary, as docs/migration.md carries them."""
    def table(headers, body):
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        return lines + ["| " + " | ".join(str(c).replace("|", "\\|") for c in line) + " |" for line in body]

    return "\n".join([*table(SUMMARY_HEADERS, summary(rows)), "", _UNIT, "", _count(rows), "",
                      *table(CASE_HEADERS, [[f"`{line[0]}`", *line[1:]] for line in per_case(rows)])]) + "\n"


def _count(rows: list[Row]) -> str:
    cases = {r.case for r in rows}
    done = {r.case for r in measured(rows)}
    return (f"{len(cases)} legacy cases: {len(done)} with a successor measured, "
            f"{len(cases - done)} with none (each says why).")
