"""Quantized engines: the one order they are reported in, which this torch has, and switching.

Importing this module imports no torch (the pytest plugin validates --golden-backend with it).
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

#: Quantized engines in the order the harness reports them. fbgemm first: it is the engine
#: PyTorch's own suite generates with, and the one cross-backend figures refer to.
ENGINE_ORDER = ("fbgemm", "x86", "qnnpack", "onednn")
#: Every backend a result can name, in report order: the engines, then "any" (outputs that do
#: not depend on the engine: observers, QAT state).
BACKEND_ORDER = (*ENGINE_ORDER, "any")


def ordered(backends: Iterable[str]) -> list[str]:
    """``backends`` in report order; names the harness does not know go last, sorted."""
    names = set(backends)
    return [b for b in BACKEND_ORDER if b in names] + sorted(names - set(BACKEND_ORDER))


def supported_engines() -> list[str]:
    """Quantized engines this torch build can run, in report order."""
    import torch

    have = set(torch.backends.quantized.supported_engines)
    return [name for name in ENGINE_ORDER if name in have]


@contextlib.contextmanager
def engine(name: str | None) -> Iterator[None]:
    """Run a block under quantized engine ``name`` (None or 'any': leave it as it is)."""
    if name in (None, "any"):
        yield
        return
    import torch

    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = before
