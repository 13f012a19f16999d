"""export artifact: the quantized model as a torch.export archive (.pt2), read with torch.export.load."""

from __future__ import annotations

from .. import flows
from ..compat import export_load, export_save


def save(case, built, example) -> bytes:
    args = example if isinstance(example, tuple) else (example,)
    return export_save(flows.exportable(case, flows.runnable(case, built, example)), args)


def load(case, data: bytes, example, trusted: bool = False):
    if case.flow == "torchao":  # its ops (torch.ops.torchao.*) exist once torchao is imported
        from ..compat_torchao import problem

        if problem():
            raise RuntimeError(problem())
    return export_load(data)
