"""A golden's numbers as text, written beside its files, so a pull request that changes goldens
shows a reviewer values, shapes and qparams instead of changed sha256 sums.

The text is a description, never an input: replay compares the ``.pt`` files, and the manifest
vouches for the text like for any other file of the set.
"""

from __future__ import annotations

import re

#: how many leading values of a tensor are written out
SHOWN = 8


def describe(value, indent: str = "") -> list[str]:
    """Lines describing a value: tensors with dtype, shape, qparams, range and leading values;
    containers element by element; anything else by its type and a short repr."""
    import torch

    if isinstance(value, torch.Tensor):
        return [indent + _tensor(value)]
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            inner = describe(item, indent + "  ")
            lines += [f"{indent}{key}: {inner[0].strip()}"] + inner[1:] if len(inner) == 1 else \
                [f"{indent}{key}:"] + inner
        return lines or [indent + "{}"]
    if isinstance(value, (list, tuple)):
        lines = []
        for i, item in enumerate(value):
            inner = describe(item, indent + "  ")
            lines += [f"{indent}[{i}] {inner[0].strip()}"] + inner[1:] if len(inner) == 1 else \
                [f"{indent}[{i}]"] + inner
        return lines or [indent + "()"]
    if isinstance(value, torch.ScriptObject):  # packed parameters: described by the state they pickle
        try:
            state = value.__getstate__()
        except Exception:
            return [f"{indent}ScriptObject {value._type().qualified_name()}"]
        inner = describe(state, indent + "  ")
        return [f"{indent}ScriptObject {value._type().qualified_name()}, state:"] + inner
    text = re.sub(r" at 0x[0-9a-f]+", "", repr(value))  # no addresses: the text must be reproducible
    return [f"{indent}{type(value).__name__} {text[:100]}"]


def _tensor(t) -> str:
    import torch

    shape = tuple(t.shape)
    flatten = getattr(type(t), "__tensor_flatten__", None)
    if flatten is not None and type(t) not in (torch.Tensor, torch.nn.Parameter):
        # a tensor subclass (a library's quantized weights): the plain tensors it is made of
        inner = flatten(t)[0]
        return f"{type(t).__name__} {t.dtype} {shape}: " + "; ".join(
            f"{name} {_tensor(getattr(t, name))}" for name in inner)
    if t.is_quantized:
        if t.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            qparams = f"scale {t.q_scale():.9g} zero_point {t.q_zero_point()}"
        else:
            scales = t.q_per_channel_scales().tolist()
            points = t.q_per_channel_zero_points().tolist()
            qparams = (f"per-channel axis {t.q_per_channel_axis()} scales {_list(scales)} "
                       f"zero_points {_list(points, '{}')}")
        ints = t.int_repr().flatten().tolist()
        return f"{t.dtype} {shape} {qparams}; int {_stats(ints, '{}')}"
    if t.is_floating_point():
        return f"{t.dtype} {shape}; {_stats(t.detach().float().flatten().tolist(), '{:.6g}')}"
    return f"{t.dtype} {shape}; {_stats(t.flatten().tolist(), '{}')}"


def _stats(values: list, fmt: str) -> str:
    if not values:
        return "empty"
    head = " ".join(fmt.format(v) for v in values[:SHOWN]) + (" ..." if len(values) > SHOWN else "")
    return f"min {fmt.format(min(values))} max {fmt.format(max(values))}; first {head}"


def _list(values: list, fmt: str = "{:.6g}") -> str:
    return "[" + " ".join(fmt.format(v) for v in values[:SHOWN]) + (" ...]" if len(values) > SHOWN else "]")


def summary_text(case_id: str, parts: dict[str, object]) -> str:
    """The text file of one case: each part (input, state_dict, expected per backend) described;
    a part whose bytes equal an earlier part's says so instead of repeating it."""
    lines = [f"# {case_id}: what its goldens hold (for review; replay compares the .pt files)"]
    for name, value in parts.items():
        if isinstance(value, str):  # "same as <part>"
            lines.append(f"{name}: {value}")
            continue
        body = describe(value, "  ")
        lines += [f"{name}: {body[0].strip()}"] + body[1:] if len(body) == 1 else [f"{name}:"] + body
    return "\n".join(lines) + "\n"
