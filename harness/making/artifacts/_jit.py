"""Shared by the TorchScript kinds: saving a ScriptModule to bytes and loading it back."""

from __future__ import annotations

import io


def to_bytes(script_module) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.jit.save(script_module, buffer)
    return buffer.getvalue()


def from_bytes(data: bytes):
    import torch

    return torch.jit.load(io.BytesIO(data))
