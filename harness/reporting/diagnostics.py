"""Failure diagnostics: what a person needs to see when a replayed output differs from its golden."""

from __future__ import annotations

from harness.catalog import Tolerance

#: Rows of the index / golden / obtained / Δ table, and differing leaves, shown at most.
MAX_ROWS = 10
MAX_LEAVES = 4


def describe(golden, obtained, tolerance: Tolerance = Tolerance(), targets: tuple | None = None) -> str:
    """A multi-line account of every differing part of a (possibly nested) output."""
    blocks: list[str] = []
    if targets is not None:
        g, o = set(targets[0]), set(targets[1])
        if g != o:
            blocks.append("get_attr targets differ:\n"
                          f"  added:   {sorted(o - g) or '-'}\n  removed: {sorted(g - o) or '-'}")
    leaves = list(_differing_leaves(golden, obtained, tolerance, "output"))
    for where, g, o in leaves[:MAX_LEAVES]:
        blocks.append(_leaf(where, g, o, tolerance))
    if len(leaves) > MAX_LEAVES:
        blocks.append(f"... and {len(leaves) - MAX_LEAVES} more differing parts")
    return "\n\n".join(blocks)


def _differing_leaves(golden, obtained, tolerance, where):
    from harness.compare import compare

    if isinstance(golden, (tuple, list)) and isinstance(obtained, (tuple, list)) and len(golden) == len(obtained):
        for i, (g, o) in enumerate(zip(golden, obtained)):
            yield from _differing_leaves(g, o, tolerance, f"{where}[{i}]")
        return
    if not compare(golden, obtained, tolerance).ok:
        yield where, golden, obtained


def _leaf(where: str, golden, obtained, tolerance: Tolerance) -> str:
    import torch

    from harness.compare import compare, elements, qparams

    if not (isinstance(golden, torch.Tensor) and isinstance(obtained, torch.Tensor)):
        return f"{where}: golden {_short(golden)}, obtained {_short(obtained)}"
    lines = [f"{where}:"]
    lines.append(f"  dtype    golden {golden.dtype}, obtained {obtained.dtype}")
    lines.append(f"  shape    golden {tuple(golden.shape)}, obtained {tuple(obtained.shape)}")
    if golden.is_quantized or obtained.is_quantized:
        gq = qparams(golden) if golden.is_quantized else "not quantized"
        oq = qparams(obtained) if obtained.is_quantized else "not quantized"
        lines.append(f"  qparams  golden {_short(gq, 120)}")
        lines.append(f"           obtained {'same' if gq == oq else _short(oq, 120)}")
    if golden.shape != obtained.shape or golden.is_quantized != obtained.is_quantized:
        return "\n".join(lines)
    diff = compare(golden, obtained, tolerance, where)
    total = golden.numel()
    el = elements(golden, obtained, tolerance)  # the same rule as the comparison: the same elements
    bad = el.differs
    n_bad = int(bad.sum())
    share = 100.0 * n_bad / total if total else 0.0
    lines.append(f"  differ   {n_bad} of {total} elements ({share:.1f}%)")
    if n_bad:
        abs_bad = el.abs_diff[bad]
        if el.steps is not None:
            steps = el.steps[bad]
            lines.append(f"  |Δ|      max {steps.max().item():.4g} steps ({abs_bad.max().item():.6g}), "
                         f"mean {steps.mean().item():.4g} steps ({abs_bad.mean().item():.6g}) over differing")
        else:
            lines.append(f"  |Δ|      max {abs_bad.max().item():.6g}, mean {abs_bad.mean().item():.6g} over differing")
            if diff.max_ulp_diff is not None:
                lines.append(f"  ulps     {diff.max_ulp_diff:.4g} of the largest magnitude "
                             f"(float rounding allows {tolerance.rounding_ulps}): {diff.verdict}")
        lines.append(_table(golden, _values(golden), _values(obtained), el.delta, bad, el.step_size))
    elif diff.reasons:
        lines.append(f"  {diff.message}")
    return "\n".join(lines)


def _values(t):
    import torch

    return (t.dequantize() if t.is_quantized else t).to(torch.float64)


def _table(golden, g_val, o_val, delta, bad, step) -> str:
    from tabulate import tabulate

    import torch

    order = torch.argsort(delta.abs().masked_fill(~bad, -1).reshape(-1), descending=True)
    shown = [int(i) for i in order[: min(MAX_ROWS, int(bad.sum()))]]
    rows = []
    for flat in shown:
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), golden.shape))
        d = delta.reshape(-1)[flat].item()
        cells = [index, f"{g_val.reshape(-1)[flat].item():.6g}", f"{o_val.reshape(-1)[flat].item():.6g}",
                 f"{d:+.6g}"]
        if step is not None:
            cells.append(f"{d / step.reshape(-1)[flat].item():+.4g}")
        rows.append(cells)
    headers = ["index", "golden", "obtained", "Δ"] + (["Δ steps"] if step is not None else [])
    more = int(bad.sum()) - len(shown)
    text = tabulate(rows, headers=headers, tablefmt="simple")
    text = "\n".join("    " + line for line in text.splitlines())
    return text + (f"\n    ... {more} more differing elements (largest |Δ| shown)" if more > 0 else "")


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
