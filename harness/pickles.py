"""Reading a pickle's globals without unpickling it, and the allowlists of globals a golden's
pickles may name (harness.vetting applies them per artifact kind).

pickletools disassembles the stream; every global it would import is collected, whatever the
protocol. STACK_GLOBAL takes its names from the stack: they are followed through the memo when
they were pushed as string literals; a name computed at unpickling time cannot be checked, and
is refused, as is EXT (the copyreg extension registry).
"""

from __future__ import annotations

import pickletools
import re


class Refused(Exception):
    """A golden that is not loaded: too big, or not the format its kind is."""


class Untrusted(Refused):
    """A golden that is not loaded by default: it carries code beyond the allowlists."""


#: globals a data pickle (torch.save of tensors, state_dicts, containers) may name: what torch's
#: own weights_only unpickler admits, and the quantization packed parameters' ScriptObject
DATA_GLOBALS = re.compile(
    r"(?:collections\.(?:OrderedDict|Counter)"
    r"|builtins\.(?:set|frozenset|bytearray|slice|complex)"
    r"|_codecs\.encode"
    r"|torch\._utils\._rebuild_(?:tensor|tensor_v2|tensor_v3|parameter|parameter_with_state|qtensor"
    r"|sparse_tensor|nested_tensor|meta_tensor_no_storage|wrapper_subclass|device_tensor_from_numpy)"
    r"|torch\._tensor\._rebuild_from_type_v2|torch\.serialization\._get_layout"
    r"|torch\.nn\.parameter\.Parameter|torch\.Tensor|torch\.Size|torch\.device|torch\.(?:_C\.)?ScriptObject"
    r"|torch\.storage\.(?:TypedStorage|UntypedStorage)|torch\.(?:\w+Storage)"
    r"|torch\.(?:per_tensor_affine|per_channel_affine|per_channel_affine_float_qparams"
    r"|per_tensor_symmetric|per_channel_symmetric)"
    r"|torch\.(?:contiguous_format|channels_last|channels_last_3d|preserve_format)"
    r"|torch\.(?:strided|sparse_coo|sparse_csr|_mkldnn)"
    r"|torch\.(?:float|double|half|bfloat16|complex32|complex64|complex128|cfloat|cdouble|uint8|int8|int16"
    r"|short|int32|int|int64|long|bool|quint8|qint8|qint32|quint4x2|quint2x4|float16|float32|float64"
    r"|float8_e4m3fn|float8_e5m2|float8_e4m3fnuz|float8_e5m2fnuz|uint16|uint32|uint64|u?int[1-7]))$"
)

#: TorchScript archives: their own classes (``__torch__.*``, whose code is TorchScript in the
#: archive, run by the TorchScript interpreter, not Python) and the TorchScript unpickler's helpers
TORCHSCRIPT_GLOBALS = re.compile(r"(?:__torch__\.[\w.]+|torch\.jit\._pickle\.\w+)$")


_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING",
               "STRING"}
_MEMO_PUT = {"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"}
_MEMO_GET = {"GET", "BINGET", "LONG_BINGET"}


#: Python 2 module names that unpickling maps to Python 3's (pickle's fix_imports), as unpickling would
_PYTHON2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


def _python3_name(module: str, name: str) -> str:
    return f"{_PYTHON2_MODULES.get(module, module)}.{name}"


def pickle_globals(stream: bytes, what: str) -> set[str]:
    """Every global one pickle stream names, as ``module.name``, found without unpickling it.

    STACK_GLOBAL takes its names from the stack; they are followed through the memo when they
    were pushed as string literals. Any other source of a name (a computed string), and EXT
    (the copyreg extension registry), make the stream refused: it cannot be checked.
    """
    names: set[str] = set()
    recent: list[str | None] = []  # what the last ops pushed: a string literal, or None (anything else)
    memo: dict[int, str | None] = {}
    try:
        for op, arg, _pos in pickletools.genops(stream):
            name = op.name
            if name in ("GLOBAL", "INST"):
                names.add(_python3_name(*arg.split(" ", 1)))
                recent.append(None)
            elif name == "STACK_GLOBAL":
                if len(recent) < 2 or recent[-1] is None or recent[-2] is None:
                    raise Untrusted(f"{what} names a global it computes while unpickling")
                names.add(_python3_name(recent[-2], recent[-1]))
                recent[-2:] = [None]
            elif name.startswith("EXT"):
                raise Untrusted(f"{what} names a global through the copyreg extension registry")
            elif name in _STRING_OPS:
                recent.append(arg if isinstance(arg, str) else None)
            elif name in _MEMO_PUT:
                key = len(memo) if name == "MEMOIZE" else arg
                memo[key] = recent[-1] if recent else None
            elif name in _MEMO_GET:
                recent.append(memo.get(arg))
            else:
                recent.append(None)
            del recent[:-2]
    except Refused:
        raise
    except Exception as exc:  # genops raises ValueError and others on a malformed stream
        raise Refused(f"{what} is not a readable pickle: {exc}") from None
    return names


def check_globals(names: set[str], allowed, what: str) -> None:
    bad = sorted(n for n in names if not allowed(n))
    if bad:
        raise Untrusted(f"{what} names {bad[0]}, which is not on the allowlist"
                      + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))


def data_allowed(name: str) -> bool:
    return DATA_GLOBALS.match(name) is not None
