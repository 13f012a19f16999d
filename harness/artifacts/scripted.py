"""scripted artifact: torch.jit.script of the model (quantized by quantize_jit in the jit flow)."""

from __future__ import annotations

from .. import flows
from ._jit import from_bytes as load_bytes
from ._jit import to_bytes


def save(case, built, example) -> bytes:
    import torch

    module = torch.jit.script(built)
    if case.flow == "jit":
        module = flows.quantize_jit(module, example)
    return to_bytes(module)


def load(case, data: bytes, example, trusted: bool = False):
    return load_bytes(data)
