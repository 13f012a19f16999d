"""scripted artifact: torch.jit.script of the model (then quantized, in the jit and ondevice flows)."""

from __future__ import annotations

from harness.making import flows
from harness.making.artifacts._jit import from_bytes as load_bytes
from harness.making.artifacts._jit import to_bytes


def save(case, built, example) -> bytes:
    return to_bytes(flows.to_script(case, built, example))


def load(case, data: bytes, example, trusted: bool = False):
    return load_bytes(data)
