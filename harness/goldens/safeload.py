"""Loading golden bytes without running what they carry, and saving tensors to bytes.

Golden files are untrusted input. Tensors, state_dicts and expected outputs load with
``weights_only=True``; quantized packed parameters pickle as torchbind ScriptObjects, admitted
only when every torchbind class the pickle names is one of the known quantization classes.
Code-carrying files (TorchScript, packages, programs) are never loaded here: they are read only
after their checksum matches the manifest (harness.goldens.store).
"""

from __future__ import annotations

import io
import pickletools

#: torchbind classes a quantized state_dict may legitimately pickle (their unpickling only re-packs
#: weights): the ones TorchScript code may name too; anything else named in a pickle is refused
from harness.goldens.operators import TORCHBIND as _SAFE_TORCHBIND


class UnsafeGolden(Exception):
    """A pickle names something the safe loader will not construct."""


class CannotLoadSafely(UnsafeGolden):
    """This torch has no way to admit packed parameters to a weights_only load."""


def _torchbind_classes(data: bytes) -> set[str]:
    """Names of the torchbind classes a torch.save file would construct."""
    from harness.goldens.pickles import Refused
    from harness.goldens.streams import torch_save_streams

    names = set()
    try:
        for stream in torch_save_streams(data):  # bounded: harness.goldens.vetting
            for op, arg, _pos in pickletools.genops(stream):
                if isinstance(arg, str) and arg.startswith("__torch__.torch.classes."):
                    names.add(arg)
    except Refused as exc:
        raise UnsafeGolden(str(exc)) from exc
    except (ValueError, EOFError) as exc:
        raise UnsafeGolden(f"not a readable torch.save file: {exc}") from exc
    return names


def load_weights(data: bytes, *, trusted: bool = False):
    """Load tensors / state_dicts / plain containers from bytes without running pickled code.

    Uses ``weights_only=True``. Quantized packed parameters pickle as torchbind
    ScriptObjects; those are allowed only when every torchbind class the pickle names is
    one of the known quantization packed-param classes. ``trusted`` is only for bytes this
    process has just made itself.
    """
    import torch

    from harness.compat import allow_script_objects

    if trusted:
        return torch.load(io.BytesIO(data), weights_only=False)
    names = _torchbind_classes(data)
    unknown = sorted(n for n in names if not _SAFE_TORCHBIND.match(n))
    if unknown:
        raise UnsafeGolden(f"refusing to unpickle torchbind class {unknown[0]}")
    buffer = io.BytesIO(data)
    if not names:
        return torch.load(buffer, weights_only=True)
    with allow_script_objects(CannotLoadSafely):
        return torch.load(buffer, weights_only=True)


def save_bytes(obj, *, zipfile: bool = True) -> bytes:
    """``torch.save`` to bytes, in the zipfile format or (``zipfile=False``) the legacy one."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=zipfile)
    return buffer.getvalue()
