"""The pickle streams a golden holds, each vetted before anything unpickles it: a torch.save
file's streams (bounded), the globals a data pickle may name (torch's weights_only built-ins, and
a stack's library classes its installed release registers as safe), and what a stream would
allocate. The kinds' own vetting (harness.goldens.vetting, harness.goldens.exported) calls these.
"""

from __future__ import annotations

import io
import pickletools

from harness import stacks
from harness.goldens.archives import Archive, is_zip
from harness.goldens.pickles import Refused, check_globals, data_allowed, pickle_globals, tensor_bytes



#: the pickles torch's legacy (non-zip) reader loads one after the other: magic number, protocol,
#: sys info, the payload, and the storage keys (a fifth pickle.load: a reviewer's attack showed
#: it ran unvetted when only four were read)
LEGACY_PICKLES = 5
#: the number a legacy torch.save file's first pickle holds (torch.serialization.MAGIC_NUMBER)
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def torch_save_streams(data: bytes, what: str = "the file") -> list[bytes]:
    """The pickle streams of a torch.save file (bounded): the ``.pkl`` members of its zip
    archive, or the legacy format's leading pickles (LEGACY_PICKLES: every one torch loads)."""
    if is_zip(data):
        archive = Archive(data, what)
        return [archive.read(n) for n in archive.named(".pkl")]
    buffer, streams = io.BytesIO(data), []
    for _ in range(LEGACY_PICKLES):
        start = buffer.tell()
        try:
            for _op in pickletools.genops(buffer):
                pass
        except Exception as exc:
            raise Refused(f"{what} is not a readable torch.save file: {exc}") from None
        streams.append(data[start:buffer.tell()])
    return streams


class NotAdmitted(Refused):
    """A checkpoint naming a library class that the installed release does not register as safe
    to load: what ``torch.load(weights_only=True)`` itself would refuse. A load error of that
    checkpoint on this install (a finding), not a hostile file."""


def check_data_globals(names: set[str], what: str) -> None:
    """Every global a data pickle names must be torch's weights_only built-ins, or a class of torch
    or of a stack's library (harness.stacks: its checkpoints name their own tensor subclasses) that
    this process's releases register as safe globals: weights_only loading admits exactly those."""
    outside = {n for n in names if not data_allowed(n)}
    if not outside:
        return
    owners = stacks.libraries()
    foreign = {n for n in outside if n.split(".", 1)[0] not in ("torch", *owners)}
    check_globals(foreign, lambda _n: False, what)  # refused without importing anything
    for library in {n.split(".", 1)[0] for n in outside} & set(owners):
        owners[library].library_problem(library)  # imports it where it can be: it registers its classes
    from harness.compat import registered_safe_globals  # imports torch: vetting is imported by the plugin, which must not

    unregistered = sorted(outside - registered_safe_globals())
    named_libraries = [n for n in unregistered if n.split(".", 1)[0] in owners]
    if named_libraries:
        first = named_libraries[0]
        library = first.split(".", 1)[0]
        version = owners[library].versions().get(library)
        named = first + (f" (and {len(named_libraries) - 1} more)" if len(named_libraries) > 1 else "")
        why = (f"which {library} {version} does not register as a safe global" if version
               else f"and {library} cannot be imported here to register it")
        raise NotAdmitted(f"weights_only loading refuses {what}: it names {named}, {why}")
    check_globals(set(unregistered), lambda _n: False, what)


def vet_stream(stream: bytes, where: str, check) -> int:
    """Vet one pickle stream: its globals (``check(names, where)``, or None where the allowlists are
    waived) and then what it would allocate; returns its tensors' logical bytes."""
    found = pickle_globals(stream, where)
    if check is not None:
        check(found, where)
    return tensor_bytes(stream, where)[0]


def allowed_by(allowed):
    """A ``check`` for vet_stream from a predicate on one global's name."""
    return lambda found, where: check_globals(found, allowed, where)


def vet_data(data: bytes, what: str, trusted: bool) -> int:
    check = None if trusted else check_data_globals
    return sum(vet_stream(stream, what, check) for stream in torch_save_streams(data, what))


