"""The HTML report's heatmaps: per case, an inline SVG of golden rows × runtime columns, one
coloured strip per backend, then a reference column (each backend's distance to the reference
kernels) and the row's largest Δ."""

from __future__ import annotations

import html

COLOURS = {"pass": "#2e7d32", "rounding": "#80cbc4", "known drift": "#f9a825", "known load-error": "#ef6c00",
           "drift": "#c62828", "load-error": "#6a1b9a", "crash": "#000000", "known crash": "#4e342e",
           "corrupt": "#6a1b9a", "missing": "#6a1b9a", "skip": "#9e9e9e"}

#: the reference column's shades: how far the native output is from the reference kernels'
REFERENCE_COLOURS = {"exact": "#1b5e20", "within one step": "#8bc34a", "further": "#ff7043",
                     "no reference": "#e0e0e0"}


def reference_grade(cells) -> tuple[str, str]:
    """(grade, figure) of the largest distance to the reference over ``cells`` (report Cells)."""
    measured = [c for c in cells if c.ref_mismatched is not None]
    if not measured:
        return "no reference", "no reference output for this case"
    if all(c.ref_mismatched == 0 for c in measured):
        return "exact", "bit-exact to the reference"
    steps = [c.ref_steps for c in measured if c.ref_steps is not None]
    largest = max(c.ref_abs or 0.0 for c in measured)
    if steps and len(steps) == len(measured) and max(steps) <= 1:
        return "within one step", f"within {max(steps):g} step of the reference"
    return "further", (f"up to {max(steps):g} steps" if steps else f"|Δ| {largest:.2g}") + " from the reference"


def heatmaps(report) -> list[str]:
    e = html.escape
    legend = "".join(f"<span><i class='sw' style='background:{COLOURS[s]}'></i>{s}</span>"
                     for s in ("pass", "rounding", "known drift", "drift", "load-error", "crash", "skip"))
    ref_legend = "".join(f"<span><i class='sw' style='background:{c}'></i>{g}</span>"
                         for g, c in REFERENCE_COLOURS.items())
    parts = [f"<h2>Max Δ per case</h2><p class='legend'>{legend} — rows: golden version, columns: runtime "
             f"version; each square is split by backend ({e(', '.join(report.backends))}); the number is the "
             f"largest Δ of the row.</p><p class='legend'>Column <b>ref</b>, each backend's distance to the "
             f"reference kernels over the row's runtimes: {ref_legend}</p><div class='cases'>"]
    parts += [f"<div class='case'><h3>{e(case)}</h3>{heatmap(report, case)}</div>" for case in report.cases]
    return parts + ["</div>"]


def _strip(x, y, width, height, colour, title) -> str:
    return (f"<rect x='{x:.1f}' y='{y}' width='{width:.1f}' height='{height}' fill='{colour}'>"
            f"<title>{html.escape(title)}</title></rect>")


def heatmap(report, case: str) -> str:
    """An inline SVG: golden rows × runtime columns, one coloured strip per backend, then the
    reference column."""
    cells, backends, runtimes = report.cells, report.backends, report.runtimes
    goldens = [g for g in report.goldens if any((case, g, b, rt) in cells for b in backends for rt in runtimes)]
    cw, ch, left, top = 64, 22, 70, 18
    ref_x = left + cw * len(runtimes) + 6
    width, height = ref_x + cw + 70, top + ch * len(goldens) + 4
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' "
           f"aria-label='{html.escape(case)} heatmap'>"]
    for j, rt in enumerate(runtimes):
        out.append(f"<text x='{left + j * cw + cw / 2}' y='12' font-size='10' text-anchor='middle'>{html.escape(rt)}</text>")
    out.append(f"<text x='{ref_x + cw / 2}' y='12' font-size='10' text-anchor='middle' font-weight='bold'>ref</text>")
    for i, golden in enumerate(goldens):
        y = top + i * ch
        out.append(f"<text x='{left - 6}' y='{y + 15}' font-size='10' text-anchor='end'>{html.escape(golden)}</text>")
        worst = 0.0
        for j, rt in enumerate(runtimes):
            present = [b for b in backends if (case, golden, b, rt) in cells]
            for k, b in enumerate(present):
                cell = cells[(case, golden, b, rt)]
                w = (cw - 4) / len(present)
                out.append(_strip(left + j * cw + k * w, y, w - 1, ch - 3, COLOURS.get(cell.status, '#000'),
                                  f"{b}: {cell.status} {cell.figure()}"))
                worst = max(worst, cell.steps or 0.0, cell.abs_diff or 0.0)
        present = [b for b in backends if any((case, golden, b, rt) in cells for rt in runtimes)]
        for k, b in enumerate(present):
            grade, figure = reference_grade([cells[(case, golden, b, rt)] for rt in runtimes
                                             if (case, golden, b, rt) in cells])
            w = (cw - 4) / len(present)
            out.append(_strip(ref_x + k * w, y, w - 1, ch - 3, REFERENCE_COLOURS[grade], f"{b} vs reference: {figure}"))
        label = f"{worst:.2g}" if worst else "0"
        out.append(f"<text x='{ref_x + cw + 6}' y='{y + 15}' font-size='10'>Δ {label}</text>")
    out.append("</svg>")
    return "".join(out)
