"""Quantized backends: the one order they are reported in, which this torch has, and switching.

"Backend" is the harness's one word for what torch calls a quantized engine
(``torch.backends.quantized.engine``): fbgemm, x86, qnnpack, onednn. Importing this module
imports no torch (the pytest plugin validates --golden-backend with it).
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


def ordered(backends: Iterable[str]) -> list[str]:
    """``backends`` in report order; names the harness does not know go last, sorted."""
    names = set(backends)
    return [b for b in BACKEND_ORDER if b in names] + sorted(names - set(BACKEND_ORDER))


def supported_backends() -> list[str]:
    """Quantized backends this torch build can run, in report order."""
    import torch

    have = set(torch.backends.quantized.supported_engines)
    return [name for name in BACKENDS if name in have]


@contextlib.contextmanager
def using(name: str | None) -> Iterator[None]:
    """Run a block under quantized backend ``name`` (None or 'any': leave it as it is)."""
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
