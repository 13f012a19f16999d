"""Where each torch API lives in each torch version: the one place version differences are handled."""

from __future__ import annotations

import contextlib
import functools
import io
import pickletools
import re
import warnings
import zipfile
from typing import Iterator

import torch
from packaging.version import Version

from .catalog import ENGINE_ORDER, PT2E_IN_TORCHAO
from .store import parse_version  # noqa: F401 (one torch-free definition, re-exported)


#: torchbind classes a quantized state_dict may legitimately pickle. Their
#: unpickling only re-packs weights; anything else named in a pickle is refused.
_SAFE_TORCHBIND = re.compile(
    r"__torch__\.torch\.classes\.(?:quantized\.(?:Linear|Conv[123]d|EmbeddingBag)PackedParamsBase"
    r"|rnn\.CellParamsBase)$"
)


def release(version: str) -> str:
    """'2.13.0+cpu' -> '2.13.0': the public release a golden directory is named by."""
    return Version(version).public



@functools.cache
def torch_release() -> str:
    return release(torch.__version__)


def supported_engines() -> list[str]:
    """Quantized engines this torch build can run, in report order."""
    have = set(torch.backends.quantized.supported_engines)
    return [name for name in ENGINE_ORDER if name in have]


@contextlib.contextmanager
def engine(name: str | None) -> Iterator[None]:
    """Run a block under quantized engine ``name`` (None or 'any': leave it as it is)."""
    if name in (None, "any"):
        yield
        return
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = before


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


def linear_relu_functional():
    """PyTorch's LinearReluFunctional, the module its package BC test saves."""
    from torch.testing._internal.quantization_torch_package_models import LinearReluFunctional

    return LinearReluFunctional


# --- which flows and artifact kinds each torch version has ----------------------------

#: First torch release with each flow's APIs (the catalog's floor is 1.13 for the rest).
FLOW_SINCE = {
    "pt2e": ("2.1", "pt2e (prepare_pt2e / convert_pt2e) needs torch >= 2.1"),
}
#: First torch release able to write and read each artifact kind.
KIND_SINCE = {
    "export": ("2.1", "torch.export archives (.pt2) need torch >= 2.1"),
    "lite": ("1.13", "lite-interpreter files need torch >= 1.13"),
}


def flow_problem(flow: str) -> str | None:
    """Why this torch cannot make or run ``flow``, or None when it can."""
    since = FLOW_SINCE.get(flow)
    if since and Version(torch_release()) < Version(since[0]):
        return since[1]
    if flow == "pt2e":
        try:
            pt2e()
        except ImportError as exc:
            return str(exc)
    return None


def kind_problem(kind: str) -> str | None:
    """Why this torch cannot write or read artifact ``kind``, or None when it can."""
    since = KIND_SINCE.get(kind)
    if since and Version(torch_release()) < Version(since[0]):
        return since[1]
    return None


def flow_table(flows, kinds) -> dict:
    """{"flows": {flow: problem}, "kinds": {kind: problem}} for this torch (None: supported)."""
    return {"flows": {f: flow_problem(f) for f in flows}, "kinds": {k: kind_problem(k) for k in kinds}}


class PT2E:
    """The PT2E entry points of this torch: prepare/convert, the x86 quantizer, capture."""

    def __init__(self, quantize_pt2e, x86_quantizer, move_to_eval, where: str):
        self.prepare_pt2e = quantize_pt2e.prepare_pt2e
        self.prepare_qat_pt2e = quantize_pt2e.prepare_qat_pt2e
        self.convert_pt2e = quantize_pt2e.convert_pt2e
        self.x86 = x86_quantizer
        self.move_to_eval = move_to_eval
        self.where = where

    def quantizer(self, is_qat: bool = False):
        config = self.x86.get_default_x86_inductor_quantization_config(is_qat=is_qat)
        return self.x86.X86InductorQuantizer().set_global(config)

    @staticmethod
    def capture(model, args):
        """The pre-dispatch graph PT2E quantizes: export_for_training's, or export's from 2.9 on."""
        if Version(torch_release()) >= Version("2.9"):
            return torch.export.export(model, args).module()
        if hasattr(torch.export, "export_for_training"):  # 2.5 - 2.8
            # strict (dynamo) capture: torch.ao's convert_pt2e folds QAT conv-bn by the
            # source_fn_stack metadata only dynamo records (KeyError in 2.8 otherwise)
            return torch.export.export_for_training(model, args, strict=True).module()
        from torch._export import capture_pre_autograd_graph  # 2.1 - 2.4

        return capture_pre_autograd_graph(model, args)


@functools.cache
def pt2e() -> PT2E:
    """PT2E from torchao (torch >= 2.10) or torch.ao.quantization (2.1 - 2.9); ImportError says why."""
    if Version(torch_release()) >= Version(PT2E_IN_TORCHAO):
        try:
            with _quiet_import():
                import torchao.quantization.pt2e as ao_pt2e
                import torchao.quantization.pt2e.quantize_pt2e as qp
                import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86
        except ImportError as exc:
            raise ImportError(f"pt2e on torch >= {PT2E_IN_TORCHAO} needs torchao "
                              f"(pip install 'bc-harness[pt2e]'): {exc}") from exc
        return PT2E(qp, x86, ao_pt2e.move_exported_model_to_eval, "torchao.quantization.pt2e")
    import torch.ao.quantization.quantize_pt2e as qp
    import torch.ao.quantization.quantizer.x86_inductor_quantizer as x86

    return PT2E(qp, x86, torch.ao.quantization.move_exported_model_to_eval, "torch.ao.quantization")


@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    """torchao's import logs its optional CUDA kernels' load failures; those say nothing here."""
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


def register_decomposed_ops() -> None:
    """Register quantized_decomposed ops, which a PT2E .pt2 needs before torch.export.load."""
    with contextlib.suppress(ImportError):
        import torch.ao.quantization.fx._decomposed  # noqa: F401


def export_save(model, args) -> bytes:
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(model, args), buffer)
    return buffer.getvalue()


def export_load(data: bytes):
    """The module of a .pt2 archive's program (its deserializer logs a failure as warnings)."""
    import logging

    register_decomposed_ops()
    log = logging.getLogger("torch.export")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return torch.export.load(io.BytesIO(data)).module()
    finally:
        log.setLevel(level)


def lite_save(script_module) -> bytes:
    return bytes(script_module._save_to_buffer_for_lite_interpreter())


def lite_load(data: bytes):
    from torch.jit.mobile import _load_for_lite_interpreter

    return _load_for_lite_interpreter(io.BytesIO(data))


def ondevice_dynamic_jit():
    """torch.ao.quantization.quantize_jit._quantize_ondevice_dynamic_jit."""
    from torch.ao.quantization.quantize_jit import _quantize_ondevice_dynamic_jit

    return _quantize_ondevice_dynamic_jit


# --- safe loading ------------------------------------------------------------------

class UnsafeGolden(Exception):
    """A pickle names something the safe loader will not construct."""


def _pickle_streams(data: bytes) -> list[bytes]:
    """The pickle streams of a torch.save file: data.pkl of a zip archive, or the legacy
    format's leading pickles (magic number, protocol, sys info, payload)."""
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return [archive.read(n) for n in archive.namelist() if n.endswith(".pkl")]
    buffer, streams = io.BytesIO(data), []
    for _ in range(4):
        start = buffer.tell()
        for _op in pickletools.genops(buffer):
            pass
        streams.append(data[start:buffer.tell()])
    return streams


def _torchbind_classes(data: bytes) -> set[str]:
    """Names of the torchbind classes a torch.save file would construct."""
    names = set()
    try:
        for stream in _pickle_streams(data):
            for op, arg, _pos in pickletools.genops(stream):
                if isinstance(arg, str) and arg.startswith("__torch__.torch.classes."):
                    names.add(arg)
    except (ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UnsafeGolden(f"not a readable torch.save file: {exc}") from exc
    return names


def load_weights(data: bytes, *, trusted: bool = False):
    """Load tensors / state_dicts / plain containers from bytes without running pickled code.

    Uses ``weights_only=True``. Quantized packed parameters pickle as torchbind
    ScriptObjects; those are allowed only when every torchbind class the pickle names is
    one of the known quantization packed-param classes. ``trusted`` is only for bytes this
    process has just made itself.
    """
    if trusted:
        return torch.load(io.BytesIO(data), weights_only=False)
    names = _torchbind_classes(data)
    unknown = sorted(n for n in names if not _SAFE_TORCHBIND.match(n))
    if unknown:
        raise UnsafeGolden(f"refusing to unpickle torchbind class {unknown[0]}")
    buffer = io.BytesIO(data)
    if not names:
        return torch.load(buffer, weights_only=True)
    with _allow_script_objects():
        return torch.load(buffer, weights_only=True)


class CannotLoadSafely(UnsafeGolden):
    """This torch has no way to admit packed parameters to a weights_only load."""


@contextlib.contextmanager
def _allow_script_objects() -> Iterator[None]:
    """Admit torch.ScriptObject to weights_only loading for one load (torch >= 2.4)."""
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
    raise CannotLoadSafely(
        f"torch {torch.__version__} cannot admit packed parameters to a weights_only load (needs torch >= 2.4)")


def save_bytes(obj, *, zipfile: bool = True) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=zipfile)
    return buffer.getvalue()
