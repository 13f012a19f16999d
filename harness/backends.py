"""Quantized backends: the one order they are reported in, which this torch has, and switching.

"Backend" is the harness's one word for what torch calls a quantized engine
(``torch.backends.quantized.engine``): fbgemm, x86, qnnpack, onednn. A stack may declare backends
of its own (harness.stacks: a runtime's delegates, chosen when its model runs, not a torch
engine): its flows' cases run under those instead. Importing this module imports no torch (the
pytest plugin validates --golden-backend with it).
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

#: Quantized backends in the order the harness reports them. fbgemm first: it is the backend
#: PyTorch's own suite generates with, and the one cross-backend figures refer to.
BACKENDS = ("fbgemm", "x86", "qnnpack", "onednn")
#: Every backend a result can name, in report order: the backends, then "any" (outputs that do
#: not depend on the backend: observers, QAT state).
BACKEND_ORDER = (*BACKENDS, "any")


def known() -> tuple[str, ...]:
    """Every backend a run may name: torch's quantized engines, then the stacks' own."""
    from harness import stacks

    return BACKENDS + stacks.own_backends()


def ordered(backends: Iterable[str]) -> list[str]:
    """``backends`` in report order (the stacks' own after torch's); names the harness does not
    know go last, sorted."""
    from harness import stacks

    order = (*BACKENDS, *stacks.own_backends(), "any")
    names = set(backends)
    return [b for b in order if b in names] + sorted(names - set(order))


def supported_backends() -> list[str]:
    """Quantized backends this torch build can run, in report order."""
    import torch

    have = set(torch.backends.quantized.supported_engines)
    return [name for name in BACKENDS if name in have]


_current: list[str | None] = [None]


def current() -> str | None:
    """The backend the innermost ``using`` block runs under (None outside any): how a stack's flow
    learns which of its own backends to run."""
    return _current[-1]


@contextlib.contextmanager
def using(name: str | None) -> Iterator[None]:
    """Run a block under backend ``name`` (None or 'any': leave torch's engine as it is; a stack's
    own backend: recorded for ``current``, torch's engine left as it is)."""
    _current.append(name)
    try:
        if name not in BACKENDS:
            yield
            return
        with _engine(name):
            yield
    finally:
        _current.pop()


@contextlib.contextmanager
def _engine(name: str) -> Iterator[None]:
    import torch

    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = before
