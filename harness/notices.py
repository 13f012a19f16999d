"""Warnings and log noise: silenced while models load and run, and the few worth reporting kept."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings
from typing import Iterator


@contextlib.contextmanager
def quiet() -> Iterator[list[warnings.WarningMessage]]:
    """Keep warnings off the terminal and hand them back for reporting: Python's warnings, and
    the ones torch's C++ code prints straight to file descriptor 2 ("[W... file.cpp:N] Warning:
    ..."), which are read back from a temporary file and handed back as RuntimeWarnings."""
    with warnings.catch_warnings(record=True) as caught, _native_warnings() as native, _every_time():
        warnings.simplefilter("always")
        yield caught
    caught.extend(warnings.WarningMessage(text, RuntimeWarning, NATIVE, 0) for text in native)


@contextlib.contextmanager
def _every_time() -> Iterator[None]:
    """torch's once-per-process warnings (TORCH_WARN_ONCE, TypedStorage's) raised every time:
    a result's warnings then do not depend on which results ran before it in its process."""
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "set_warn_always"):
        yield
        return
    storage = getattr(torch, "storage", None)
    typed = getattr(storage, "_set_always_warn_typed_storage_removal", None)
    before = torch.is_warn_always_enabled()
    typed_before = getattr(storage, "_get_always_warn_typed_storage_removal", lambda: False)()
    torch.set_warn_always(True)
    if typed:
        typed(True)
    try:
        yield
    finally:
        torch.set_warn_always(before)
        if typed:
            typed(typed_before)


_NATIVE = re.compile(r"^\[W[^\]]*\] Warning: (.*?)(?: \(function [^)]*\))?$")


_sink = {"file": None, "depth": 0}


@contextlib.contextmanager
def _native_warnings() -> Iterator[list[str]]:
    """What C++ code writes to file descriptor 2 meanwhile: its warning lines are returned, any
    other output is written back to the real stderr unchanged. Only the outermost of nested
    calls redirects; one temporary file per process serves them all."""
    found: list[str] = []
    if _sink["depth"]:
        yield found
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable descriptor 2 (an embedded interpreter): nothing to catch
        yield found
        return
    if _sink["file"] is None:
        _sink["file"] = tempfile.TemporaryFile()
        atexit.register(_sink["file"].close)
    sink = _sink["file"]
    sink.seek(0)
    sink.truncate()
    os.dup2(sink.fileno(), 2)
    _sink["depth"] += 1
    try:
        yield found
    finally:
        _sink["depth"] -= 1
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)
        os.close(saved)
        if os.fstat(sink.fileno()).st_size:
            sink.seek(0)
            other = []
            for line in sink.read().decode(errors="replace").splitlines():
                match = _NATIVE.match(line.strip())
                (found.append(match.group(1)) if match else other.append(line))
            if other:
                os.write(2, ("\n".join(other) + "\n").encode())


_WHERE = re.compile(r"\s*\(Triggered internally at [^)]*\)\.?$")

#: torch-internal notices that say nothing about a model or its torch (quantize_jit reads .grad)
_NOISE = ("The .grad attribute of a Tensor that is not a leaf Tensor is being accessed",)


#: where torch's C++ warnings read from file descriptor 2 are said to come from
NATIVE = "torch (C++)"
#: what marks a notice as a deprecation whatever its category: torch raises its C++ deprecations
#: (the quantized dtypes' in 2.13) as UserWarnings
_DEPRECATION_TEXT = re.compile(r"\bdeprecat|\bwill be removed\b|\bno longer supported\b", re.IGNORECASE)
_CATEGORY = re.compile(r"^(\w+Warning|C\+\+ warning)(?: \(deprecation\))?: ")


#: a result keeps at most this many distinct warnings, each at most this long: a golden's code can
#: raise any number of any text, and a report must stay readable
MAX_WARNINGS, MAX_WARNING_CHARS = 50, 500
#: control characters (terminal escapes) and bidirectional overrides: never carried into a report
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def runtime_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    """The distinct warnings raised, one line each, named by category ("UserWarning: ...";
    "C++ warning: ..." for what torch's C++ code printed itself). A deprecation notice raised
    under another category is marked so ("UserWarning (deprecation): ..."): for a compatibility
    tool an API on its way out is a finding. Control characters are dropped, and a result keeps at
    most MAX_WARNINGS of at most MAX_WARNING_CHARS characters (the rest counted in one line)."""
    seen: dict[str, None] = {}
    dropped = 0
    for w in caught:
        whole = str(w.message).strip()
        text = " ".join(_UNPRINTABLE.sub(" ", whole.splitlines()[0]).split()) if whole else ""
        text = _WHERE.sub("", text)  # the same warning raised from C++ and from Python reads alike
        if not text or text.startswith(_NOISE):
            continue
        category = "C++ warning" if w.filename == NATIVE else w.category.__name__
        if not issubclass(w.category, (DeprecationWarning, FutureWarning)) and _DEPRECATION_TEXT.search(whole):
            category += " (deprecation)"
        text = f"{category}: {text}"[:MAX_WARNING_CHARS]
        if text in seen:
            continue
        if len(seen) >= MAX_WARNINGS:
            dropped += 1
            continue
        seen[text] = None
    return list(seen) + ([f"RuntimeWarning: {dropped} more distinct warnings, not kept"] if dropped else [])


def is_deprecation(line: str) -> bool:
    """Whether one of runtime_warnings' lines is a deprecation notice (older records, whose lines
    carry no category, are judged by their text)."""
    named = _CATEGORY.match(line)
    if named:
        return named.group(0).startswith(("DeprecationWarning", "FutureWarning", "PendingDeprecationWarning")) \
            or "(deprecation)" in named.group(0)
    return bool(_DEPRECATION_TEXT.search(line))


def message(line: str) -> str:
    """One of runtime_warnings' lines without its category."""
    return _CATEGORY.sub("", line, count=1)


@contextlib.contextmanager
def silent_import() -> Iterator[None]:
    """Import a package whose import logs to stderr (a stack's library may report its optional CUDA
    kernels' load failures, which say nothing here): logging, warnings and file descriptor 2 muted."""
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


class Remembered:
    """A value made once and handed out many times, with the Python warnings its making gave
    given again at each hand-out: a result's warnings do not depend on whether it came first.
    An exception raised while making it is raised again at each hand-out."""

    def __init__(self, make):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                self.value, self.error = make(), None
            except Exception as exc:  # noqa: BLE001 - handed to each caller in turn
                self.value, self.error = None, exc
        self.warned = list(caught)

    def get(self):
        for w in self.warned:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if self.error is not None:
            raise self.error
        return self.value


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def one_line(exc: BaseException) -> str:
    """An exception as one line of a result's reason: its type and its telling line.

    torch.load's refusal under weights_only opens with several lines of advice; the line that
    says what was refused ("WeightsUnpickler error: Unsupported global: ...") is the finding.
    """
    text = _ANSI.sub("", str(exc)).strip()
    if isinstance(exc, MemoryError) or "can't allocate memory" in text:
        first = text.splitlines()[0][:200] if text else ""
        return f"{type(exc).__name__}: out of memory: the replay worker's memory bound was reached" + \
            (f" ({first})" if first else "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    telling = next((line for line in lines if line.startswith("WeightsUnpickler error:")), None)
    if telling:
        first = telling.split(". ")[0].rstrip(".")
        return f"{type(exc).__name__}: weights_only load refused: {first.split(': ', 1)[1]}"[:300]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]
