"""export artifact: the quantized model as a torch.export archive (.pt2), read with torch.export.load.

Reading an archive does not depend on the quantized backend (a program holds no packed
weights), so a replay reads it once per golden (``decode``) and makes each backend's module
from that program (``from_decoded``).
"""

from __future__ import annotations

from harness.making import flows
from harness.compat import export_read, export_save


def save(case, built, example) -> bytes:
    args = example if isinstance(example, tuple) else (example,)
    return export_save(flows.exportable(case, flows.runnable(case, built, example)), args)


def decode(case, data: bytes):
    """The archive's ExportedProgram: the backend-free part of loading."""
    missing = flows.library_problem(case)  # its operators exist once its library is imported
    if missing:
        raise RuntimeError(missing)
    return export_read(data)


def from_decoded(case, program):
    """A fresh module of the program, for one backend's run (as the case's flow runs a program)."""
    return flows.from_program(case, program)


def load(case, data: bytes, example, trusted: bool = False):
    return from_decoded(case, decode(case, data))
