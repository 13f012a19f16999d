"""Migration parity: what a user of the legacy flows keeps, and what moves, when they migrate.

For every case of a legacy flow (``Flow.legacy``: torch.ao.quantization's eager, FX, JIT and
on-device flows), each successor the stacks offer (``harness.stacks.Successor``: PT2E programs
and runtimes, a library's quantization configs; docs/migration.md names them) is
made from the same float model, calibrated on the same data (the case's input, as the legacy build
calibrates), and its output compared with the legacy model's under each of torch's quantized
backends; both are compared with the float model's output too.

One unit for every figure: steps of the int8 grid that spans the float model's output on the
case's input (its range / 255), the step a per-tensor static quantization of that output takes.
A legacy model's own output grid would not do: dynamic models output floats.

Each case runs in a crash-safe child (harness.sandbox): a legacy model that crashes torch under
one backend gives that backend's rows a ``crash`` note, and the rest goes on.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

from harness import stacks
from harness.backends import BACKENDS, using

#: the int8 grid's levels over the float output's range: the unit of every figure
LEVELS = 255
#: the legacy quantizations a successor may replace (Successor.modes)
STATIC, DYNAMIC = "static-int8", "dynamic-int8"


@dataclass
class Row:
    """One legacy case under one backend against one successor (or a note where there is none)."""

    case: str
    flow: str
    #: the legacy model's quantization (_mode): static-int8, dynamic-int8, dynamic-float16, weight-only,
    #: float (nothing quantized: a folding case), or "" where unknown
    mode: str
    backend: str
    successor: str
    artifact: str = ""
    #: max |legacy - successor| in steps, and in value
    steps: float | None = None
    max_abs: float | None = None
    #: max |legacy - float| and max |successor - float|, in steps
    legacy_error: float | None = None
    successor_error: float | None = None
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def legacy_cases(cases: list) -> list:
    """The cases of the legacy flows."""
    return [c for c in cases if stacks.of_case(c).legacy]


def migrate(cases: list, fixtures: Path, backends: list[str] | None = None, jobs: int = 1,
            on_row: Callable[[Row], None] = lambda row: None) -> list[Row]:
    """Every legacy case's rows, each case in a crash-safe child (``jobs`` at once), in case order."""
    from concurrent.futures import ThreadPoolExecutor

    chosen = [c.id for c in legacy_cases(cases)]
    backends = [b for b in (backends or BACKENDS) if b in BACKENDS]
    flows = {c.id: c.flow for c in cases}
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        done = pool.map(lambda case_id: _in_child(case_id, flows[case_id], fixtures, backends), chosen)
        rows = []
        for found in done:
            for row in found:
                on_row(row)
            rows += found
    return rows


def _in_child(case_id: str, flow: str, fixtures: Path, backends: list[str]) -> list[Row]:
    from harness.sandbox import run_to_end

    rows: list[Row] = []
    payload = {"case": case_id, "fixtures": str(fixtures), "backends": backends}
    given_up = run_to_end(_box(), "harness.making.migration:_case_rows", payload, rows.append)
    if given_up:
        rows = [Row(case_id, flow, "", "", "", note=f"not measured: {given_up}")]
    return rows


#: each pool thread's own Sandbox: threads never share a child
_LOCAL = threading.local()


def _box():
    from harness.sandbox import Sandbox

    if not hasattr(_LOCAL, "box"):
        _LOCAL.box = Sandbox()
    return _LOCAL.box


def _case_rows(payload: dict, at) -> Iterator[Row]:
    """In a child: the rows of one case (all at its end, so that a crash leaves none half-given);
    what a crash killed (payload["crashed"]: key -> cause) is a note, not tried again."""
    from harness.catalog import load_catalog

    case = next(c for c in load_catalog(Path(payload["fixtures"])) if c.id == payload["case"])
    yield from _rows(case, payload["backends"], payload.get("crashed", {}), at)


def _rows(case, backends: list[str], crashed: dict, at) -> list[Row]:
    import torch

    from harness.making import flows
    from harness.notices import one_line, quiet

    flow = stacks.of_case(case)
    problem = stacks.build_problem(case)
    if problem:
        return [Row(case.id, case.flow, "", "", "", note=f"not built here: {problem}")]
    with quiet():
        example = flows.make_input(case)
        torch.manual_seed(case.seed + 1)
        float_module = flow.float_model(case)
        if float_module is None:
            return [Row(case.id, case.flow, "", "", "", note="no float model: its build makes the quantized module "
                                                            "itself (or trains it), with no float model declared")]
        args = example if isinstance(example, tuple) else (example,)
        float_out = _flat(float_module.eval()(*args))
    unit = float(float_out.max() - float_out.min()) / LEVELS if float_out.numel() else 0.0
    unit = unit or 1.0
    legacy, mode = {}, ""
    for backend in backends:
        key = (case.id, backend)
        if key in crashed:
            legacy[backend] = f"crash: {crashed[key]}"
            continue
        at(key)
        try:
            with quiet(), using(backend):
                model = flows.runnable(case, flows.build(case), example)
                legacy[backend] = _flat(case.forward(model, example))
                mode = mode or _mode(case, model)
        except Exception as exc:  # noqa: BLE001 - a backend that cannot build or run it is a note
            legacy[backend] = f"legacy model failed: {one_line(exc)}"
    rows = []
    for successor in stacks.successors():
        made = _successor_output(case, successor, example, mode, crashed, at)
        for backend in backends:
            rows.append(_row(case, mode, backend, successor, legacy[backend], made, float_out, unit))
    return rows or [Row(case.id, case.flow, mode, "", "", note="no successor is installed")]


def _successor_output(case, successor, example, mode: str, crashed: dict, at):
    """The successor's output on the example (a flat float tensor), or why there is none."""
    import torch

    from harness.notices import one_line, quiet, silent_import

    if mode not in successor.modes:
        return f"replaces {' and '.join(successor.modes)} quantization, not {mode or 'this model'}'s"
    key = (case.id, successor.name)
    if key in crashed:
        return f"crash: {crashed[key]}"
    why = successor.problem()
    if why:
        return f"not installed: {why}"
    at(key)
    args = example if isinstance(example, tuple) else (example,)
    try:
        with quiet():
            torch.manual_seed(case.seed + 1)
            module = stacks.of_case(case).float_model(case)
            why = successor.covers(module)
            if why:
                return why
            with silent_import():  # a runtime's log lines on a failure: its exception says it in one line
                model = successor.make(module, example, dynamic=mode != STATIC)  # a module of its own
                return _flat(model(*args))
    except Exception as exc:  # noqa: BLE001 - a model the successor cannot take is a finding, said
        return f"{successor.name} cannot make it: {one_line(exc)}"


def _row(case, mode, backend, successor, legacy, made, float_out, unit) -> Row:
    row = Row(case.id, case.flow, mode, backend, successor.name, successor.artifact)
    if isinstance(legacy, str) or isinstance(made, str):
        row.note = legacy if isinstance(legacy, str) else made
        return row
    if legacy.shape != made.shape or legacy.shape != float_out.shape:
        row.note = f"outputs differ in size: legacy {legacy.numel()}, successor {made.numel()}"
        return row
    row.max_abs = float((legacy - made).abs().max()) if legacy.numel() else 0.0
    row.steps = row.max_abs / unit
    row.legacy_error = float((legacy - float_out).abs().max()) / unit if legacy.numel() else 0.0
    row.successor_error = float((made - float_out).abs().max()) / unit if made.numel() else 0.0
    return row


def _flat(out):
    """Every tensor of an output (nested in tuples, lists, dicts), dequantized, as one float vector."""
    import torch

    found = []

    def walk(value):
        if isinstance(value, torch.Tensor):
            found.append((value.dequantize() if value.is_quantized else value).detach().float().flatten())
        elif isinstance(value, (tuple, list)):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    walk(out)
    return torch.cat(found) if found else torch.zeros(0)


def _mode(case, model) -> str:
    """How the legacy model quantizes, read from the model itself: static-int8, dynamic-int8,
    dynamic-float16, weight-only (quantized embeddings) or float (nothing quantized)."""
    import torch

    if isinstance(model, torch.jit.ScriptModule):
        names = [n for n in dict.fromkeys(("forward", case.method)) if hasattr(model, n)]
        text = "\n".join(str(getattr(model, n).graph) for n in names)
        kinds = []
    else:
        modules = list(model.modules()) if isinstance(model, torch.nn.Module) else []
        kinds = [type(m).__module__ for m in modules if ".quantized" in type(m).__module__]
        text = "\n".join(kinds) + str(getattr(model, "graph", ""))
    if "quantiz" not in text:
        return "float"
    if kinds and all("embedding_ops" in k for k in kinds) or "embedding_bag_byte" in text or "embedding_4bit" in text:
        return "weight-only"
    if "_dynamic" in text or ".dynamic." in text or case.method != "forward":  # the on-device flow's quantized_forward is dynamic PTQ
        half = "fp16" in text or any(getattr(getattr(m, "_packed_params", None), "dtype", None) == torch.float16
                                     or getattr(m, "dtype", None) == torch.float16 for m in getattr(model, "modules", list)())
        return "dynamic-float16" if half else DYNAMIC
    return STATIC
