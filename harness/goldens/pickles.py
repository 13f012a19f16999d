"""Reading a pickle's globals without unpickling it, and the allowlists of globals a golden's
pickles may name (harness.goldens.vetting applies them per artifact kind).

pickletools disassembles the stream; every global it would import is collected, whatever the
protocol. STACK_GLOBAL takes its names from the stack: they are followed through the memo when
they were pushed as string literals; a name computed at unpickling time cannot be checked, and
is refused, as is EXT (the copyreg extension registry).
"""

from __future__ import annotations

import io
import pickle
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


#: the most opcodes, memo entries and open marks (nesting) a pickle may have: far above what the
#: catalog writes (its largest pickle, a torchvision model's, has about 25,000 opcodes), far below
#: what costs memory to read (16M memo entries took 1.5 GB)
MAX_PICKLE_OPS = 2_000_000
MAX_MEMO = 200_000
MAX_DEPTH = 1_000


def pickle_globals(stream: bytes, what: str) -> set[str]:
    """Every global one pickle stream names, as ``module.name``, found without unpickling it.

    STACK_GLOBAL takes its names from the stack; they are followed through the memo when they
    were pushed as string literals. Any other source of a name (a computed string), and EXT
    (the copyreg extension registry), make the stream refused: it cannot be checked. A stream
    past the bounds on opcodes, memo entries or nesting is refused before it costs memory.
    """
    names: set[str] = set()
    recent: list[str | None] = []  # what the last ops pushed: a string literal, or None (anything else)
    memo: dict[int, str | None] = {}
    ops = depth = 0
    try:
        for op, arg, _pos in pickletools.genops(stream):
            name = op.name
            ops += 1
            if ops > MAX_PICKLE_OPS:
                raise Refused(f"{what} has more than {MAX_PICKLE_OPS} pickle opcodes (at most that many are read)")
            if name == "MARK":
                depth += 1
                if depth > MAX_DEPTH:
                    raise Refused(f"{what} nests more than {MAX_DEPTH} levels deep")
            elif op.stack_before and op.stack_before[0] is pickletools.markobject:
                depth -= 1
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
                if len(memo) > MAX_MEMO:
                    raise Refused(f"{what} stores more than {MAX_MEMO} memo entries (at most that many are read)")
            elif name in _MEMO_GET:
                recent.append(memo.get(arg))
            else:
                recent.append(None)
            del recent[:-2]
    except Refused:
        raise
    except MemoryError:
        raise Refused(f"{what} cannot be read within this process's memory") from None
    except Exception as exc:  # genops raises ValueError and others on a malformed stream
        raise Refused(f"{what} is not a readable pickle: {type(exc).__name__}: {exc}") from None
    return names


def check_globals(names: set[str], allowed, what: str) -> None:
    bad = sorted(n for n in names if not allowed(n))
    if bad:
        raise Untrusted(f"{what} names {bad[0]}, which is not on the allowlist"
                      + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))


def data_allowed(name: str) -> bool:
    return DATA_GLOBALS.match(name) is not None


# -- what unpickling would allocate ------------------------------------------------------------------

#: bytes per element of each storage class a pickle names (torch.save, TorchScript archives);
#: a storage class not listed counts 16 bytes an element, the widest there is
_ITEM_BYTES = {"Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2, "Char": 1,
               "Byte": 1, "Bool": 1, "ComplexDouble": 16, "ComplexFloat": 8, "QUInt8": 1, "QInt8": 1, "QInt32": 4,
               "QUInt4x2": 1, "QUInt2x4": 1, "Untyped": 1, "UInt16": 2, "UInt32": 4, "UInt64": 8,
               "Float8_e4m3fn": 1, "Float8_e5m2": 1, "Float8_e4m3fnuz": 1, "Float8_e5m2fnuz": 1}


class _Stub:
    """Whatever a pickle builds that is not a tensor: it takes every call and every item, and holds nothing."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Stub()

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, value):
        pass

    def extend(self, values):
        pass


#: the most dimensions a tensor may claim, and the largest size one dimension may have
MAX_DIMS, MAX_DIM = 64, 1 << 48


def numel(size) -> int:
    """The elements of a tensor of ``size``: a short list of non-negative integers, or the stream
    cannot be measured (ValueError); the product stops growing past any bound."""
    if not isinstance(size, (tuple, list)) or len(size) > MAX_DIMS or \
            not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_DIM for n in size):
        raise ValueError(f"a tensor size that is not a short list of sizes: {str(size)[:80]}")
    total = 1
    for n in size:
        total = min(total * n, 1 << 62)
    return total


class _Storage:
    def __init__(self, item_bytes: int, numel: int):
        self.item_bytes, self.numel = item_bytes, numel


class _Meter:
    """Unpickles with stubs: records, for every tensor the stream would make, the bytes of its
    logical size (a view with stride 0 counts its full size: any operator on it allocates that)."""

    def __init__(self):
        self.tensors = 0
        self.logical = 0
        self.largest = 0

    def tensor(self, storage, _offset=0, size=(), *_rest, **_kwargs):
        item = storage.item_bytes if isinstance(storage, _Storage) else 8
        return self._count(numel(size) * item)

    def _count(self, nbytes: int):
        self.tensors += 1
        self.logical = min(self.logical + nbytes, 1 << 62)
        self.largest = max(self.largest, nbytes)
        return _Stub()

    def wrapper(self, _cls=None, _dtype=None, size=(), *_rest, **_kwargs):
        return self._count(numel(size) * 8)

    def sparse(self, _layout=None, data=(), *_rest):
        """A sparse tensor counts as dense: an operator that densifies it allocates that."""
        sizes = [d for d in data if isinstance(d, (tuple, list))] if isinstance(data, (tuple, list)) else []
        if not sizes:
            raise ValueError("a sparse tensor without its size")
        return self._count(numel(sizes[-1]) * 8)

    def find(self, module: str, name: str):
        qualified = f"{module}.{name}"
        if qualified in ("torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2",
                         "torch._utils._rebuild_tensor_v3", "torch._utils._rebuild_qtensor"):
            return self.tensor
        if qualified == "torch._utils._rebuild_wrapper_subclass":
            return self.wrapper
        if qualified == "torch._utils._rebuild_sparse_tensor":
            return self.sparse
        if qualified == "torch.Size":
            return lambda sizes=(): tuple(sizes)
        if qualified in ("torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state"):
            return lambda data, *_a, **_k: data
        if qualified == "torch._tensor._rebuild_from_type_v2":
            return lambda function, _type, args, _state: function(*args)
        if module == "torch" and name.endswith("Storage"):
            return _Storage(_ITEM_BYTES.get(name[:-len("Storage")] or "Untyped", 16), 0)
        return _Stub

    @staticmethod
    def storage(pid):
        """A persistent id ('storage', storage class, key, location, numel, ...) as a storage."""
        if isinstance(pid, tuple) and len(pid) >= 5 and isinstance(pid[1], _Storage):
            numel = pid[4] if isinstance(pid[4], int) else 0
            return _Storage(pid[1].item_bytes, numel)
        return _Storage(16, 0)


def tensor_bytes(stream: bytes, what: str) -> tuple[int, int]:
    """(the logical bytes of every tensor one pickle stream would make, the largest one's), found by
    unpickling it with stubs: no global it names is imported, no tensor is allocated. Call it on a
    stream whose globals were checked and whose size was bounded (pickle_globals)."""
    meter = _Meter()

    class Dry(pickle.Unpickler):
        def find_class(self, module, name):
            return meter.find(module, name)

        def persistent_load(self, pid):
            return meter.storage(pid)

    try:
        Dry(io.BytesIO(stream)).load()
    except MemoryError:
        raise Refused(f"{what} cannot be read within this process's memory") from None
    except Exception as exc:
        raise Refused(f"{what}: what it would allocate cannot be measured ({type(exc).__name__}: {exc})") from None
    return meter.logical, meter.largest
