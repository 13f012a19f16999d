"""Where each torch API lives in each torch version: the one place version differences are handled.

Nothing else here: safe loading is harness.goldens.safeload, warnings harness.notices, backends
harness.backends.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import io
import logging
import re
from typing import Iterator

import torch
from packaging.version import Version

from harness.notices import silent_import


def release(version: str) -> str:
    """'2.13.0+cpu' -> '2.13.0': the public release a golden directory is named by."""
    return Version(version).public



@functools.cache
def torch_release() -> str:
    return release(torch.__version__)


def torch_build() -> str:
    """This torch's version and the git revision it was built from."""
    return f"{torch.__version__} {getattr(torch.version, 'git_version', 'unknown')}"


def cpu_capability() -> str:
    getter = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    if getter is not None:
        return str(getter())
    match = re.search(r"CPU capability usage: (\w+)", torch.__config__.show())
    return match.group(1) if match else "unknown"


def has_avx512_vnni() -> bool:
    """Whether this CPU has AVX512-VNNI (PyTorch's LSTM golden is known to differ there)."""
    probe = getattr(torch.cpu, "_is_vnni_supported", None)
    if probe is not None:
        return bool(probe())
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            return "avx512_vnni" in f.read()
    except OSError:
        return False


# --- quantization namespaces -------------------------------------------------------

def ao():
    """torch.ao.quantization (torch >= 1.10), else the older torch.quantization."""
    try:
        import torch.ao.quantization as q
    except ImportError:  # pragma: no cover - torch < 1.10
        import torch.quantization as q
    return q


def nn_quantized():
    """(nnq, nnqd, nniq): quantized, dynamic-quantized and fused-quantized module packages."""
    try:
        import torch.ao.nn.intrinsic.quantized as nniq
        import torch.ao.nn.quantized as nnq
        import torch.ao.nn.quantized.dynamic as nnqd
    except ImportError:  # pragma: no cover - torch < 1.13 layout
        import torch.nn.intrinsic.quantized as nniq
        import torch.nn.quantized as nnq
        import torch.nn.quantized.dynamic as nnqd
    return nnq, nnqd, nniq


def quantize_fx():
    try:
        import torch.ao.quantization.quantize_fx as qfx
    except ImportError:  # pragma: no cover
        import torch.quantization.quantize_fx as qfx
    return qfx


# --- which artifact kinds each torch version has ----------------------------

#: First torch release able to write and read each artifact kind.
KIND_SINCE = {
    "export": ("2.1", "torch.export archives (.pt2) need torch >= 2.1"),
    "lite": ("1.13", "lite-interpreter files need torch >= 1.13"),
}


@functools.cache
def requirement_problem(package: str) -> str | None:
    """Why ``package`` cannot be imported here (not installed, or built for another torch), or None."""
    if importlib.util.find_spec(package) is None:
        return f"needs {package}, which is not installed"
    try:
        with silent_import():
            importlib.import_module(package)
    except Exception as exc:  # e.g. a torchvision built for another torch: 'operator torchvision::nms does not exist'
        return f"needs {package}, which does not import with torch {torch.__version__}: {str(exc)[:160]}"
    return None


def kind_problem(kind: str) -> str | None:
    """Why this torch cannot write or read artifact ``kind``, or None when it can."""
    since = KIND_SINCE.get(kind)
    if since and Version(torch_release()) < Version(since[0]):
        return since[1]
    return requirement_problem("safetensors") if kind == "safetensors" else None


@functools.lru_cache(maxsize=None)
def dispatch_mode() -> type:
    """The base of the harness's dispatch modes: torch's TorchDispatchMode, less the wrapping that
    torch 2.x puts around a subclass's ``__torch_dispatch__`` to keep torch.compile out of it
    (``_should_skip_dynamo``): its first call imports torch._dynamo, about 800 modules and 2 s per
    process, and the harness never compiles. Older torch has no such hook and ignores it."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class DispatchMode(TorchDispatchMode):
        @classmethod
        def _should_skip_dynamo(cls) -> bool:
            return False

    return DispatchMode


def register_decomposed_ops() -> None:
    """Register quantized_decomposed ops, which a PT2E .pt2 needs before torch.export.load."""
    with contextlib.suppress(ImportError):
        import torch.ao.quantization.fx._decomposed  # noqa: F401


def export_save(model, args) -> bytes:
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(model, args), buffer)
    return buffer.getvalue()


def export_read(data: bytes):
    """A .pt2 archive's ExportedProgram (its deserializer logs a failure as warnings)."""
    register_decomposed_ops()
    log = logging.getLogger("torch.export")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return torch.export.load(io.BytesIO(data))
    finally:
        log.setLevel(level)



def lite_save(script_module) -> bytes:
    """A lite-interpreter file of ``script_module``. torch deprecates the format (2.11 on): writing
    it is what the harness is for, so that notice is not raised here (a replay records the notices
    loading and running a .ptl raise)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Lite Interpreter is deprecated", category=DeprecationWarning)
        return bytes(script_module._save_to_buffer_for_lite_interpreter())


def lite_load(data: bytes):
    from torch.jit.mobile import _load_for_lite_interpreter

    return _load_for_lite_interpreter(io.BytesIO(data))


# --- weights_only loading of packed parameters ---------------------------------------

@contextlib.contextmanager
def allow_script_objects(refused: type[Exception]) -> Iterator[None]:
    """Admit torch.ScriptObject to weights_only loading for one load (torch >= 2.4); older
    torch versions cannot, and raise ``refused`` saying so."""
    serialization = torch.serialization
    if hasattr(serialization, "safe_globals"):  # torch >= 2.5
        with serialization.safe_globals([torch.ScriptObject]):
            yield
        return
    if hasattr(serialization, "add_safe_globals"):  # torch 2.4: process-wide, so put it back
        before = list(serialization.get_safe_globals())
        serialization.add_safe_globals([torch.ScriptObject])
        try:
            yield
        finally:
            serialization.clear_safe_globals()
            serialization.add_safe_globals(before)
        return
    raise refused(f"torch {torch.__version__} cannot admit packed parameters to a weights_only load "
                  "(needs torch >= 2.4)")


def registered_safe_globals() -> frozenset[str]:
    """Qualified names of what this process's torch admits to weights_only loading beyond its
    built-ins: the safe globals torch and the libraries imported so far have registered."""
    getter = getattr(torch.serialization, "get_safe_globals", None)
    names = set()
    for item in (getter() if getter else []):
        if isinstance(item, tuple):  # (object, the name it is pickled under)
            names.add(item[1])
            continue
        module, qualname = getattr(item, "__module__", None), getattr(item, "__qualname__", None)
        if module and qualname:
            names.add(f"{module}.{qualname}")
    return frozenset(names)


# --- what a release writes into its archives (facts read off the committed goldens) ------------

#: records torch's writer puts at the root of every zip archive it writes, from the release that first
#: did: 1.13.1's and 2.0.1's archives have no ``byteorder``, 2.4.1's and every later one's have it
ARCHIVE_RECORD_SINCE = {"byteorder": "2.1"}
#: the torch.export schema version (major, minor) each release writes into a .pt2; torch.export
#: (and so any .pt2) exists from 2.1 on
EXPORT_SCHEMA = {"2.4": (5, 3), "2.8": (8, 8), "2.10": (8, 15), "2.13": (8, 20), "2.14": (8, 20), "2.15": (8, 20)}
EXPORT_SINCE = "2.1"


def written_by_problem(claimed: str, records: set[str] | None, schema: tuple | None = None) -> str | None:
    """Why an archive cannot have been written by torch ``claimed`` (the release its golden set says
    made it), or None: a torch.save or TorchScript archive holding ``records`` (its members' last path
    parts), or a .pt2 (``records`` None: its format changed apart) of torch.export ``schema``."""
    try:
        version = Version(claimed)
    except ValueError:
        return None  # a foreign directory: no release to hold it to
    for record, since in ARCHIVE_RECORD_SINCE.items() if records is not None else ():
        if (record in records) != (version >= Version(since)):
            written = f"before {since}" if record not in records else f"{since} or later"
            return (f"it has {'no' if record not in records else 'a'} {record} record, so torch {written} "
                    f"wrote it, not torch {claimed}")
    if records is None and version < Version(EXPORT_SINCE):
        return f"it is a torch.export archive, and torch {claimed} has no torch.export"
    if schema is None:
        return None
    minor = (version.major, version.minor)
    known = sorted((tuple(int(p) for p in k.split(".")), v) for k, v in EXPORT_SCHEMA.items())
    below = [v for k, v in known if k <= minor]  # a release writes no newer schema than the next one
    above = [v for k, v in known if k >= minor]  # known, and no older one than the release before it
    if (below and tuple(schema) < below[-1]) or (above and tuple(schema) > above[0]):
        expected = below[-1] if below and below[-1] == (above[0] if above else None) else None
        return (f"its torch.export schema is {schema[0]}.{schema[1]}, and torch {claimed} writes "
                + (f"{expected[0]}.{expected[1]}" if expected else "another"))
    return None
