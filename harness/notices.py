"""Warnings and log noise: silenced while models load and run, and the few worth reporting kept."""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator


@contextlib.contextmanager
def quiet() -> Iterator[list[warnings.WarningMessage]]:
    """Silence torch's deprecation chatter; the warnings are handed back for reporting."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


#: torch-internal notices that say nothing about a model's numerics (quantize_jit reads .grad)
_NOISE = ("The .grad attribute of a Tensor that is not a leaf Tensor is being accessed",)


def runtime_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    """The warnings worth a reader's attention (not deprecation or migration notices)."""
    seen: list[str] = []
    for w in caught:
        text = str(w.message).strip().splitlines()[0] if str(w.message).strip() else ""
        if not text or issubclass(w.category, (DeprecationWarning, FutureWarning)):
            continue
        if "migrat" in text.lower() or "deprecat" in text.lower() or text in seen:
            continue
        if text.startswith(_NOISE):
            continue
        seen.append(text)
    return seen


@contextlib.contextmanager
def silent_import() -> Iterator[None]:
    """Import a package whose import logs to stderr (torchao reports its optional CUDA kernels'
    load failures, which say nothing here): logging, warnings and file descriptor 2 muted."""
    import logging
    import os

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(2)
    os.dup2(devnull, 2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
        root.setLevel(level)
