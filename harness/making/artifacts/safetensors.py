"""safetensors artifact: the module's state as a safetensors file (tensor subclasses flattened by
the case's flow, as that library's users save them), loaded into a module built by today's code.

No pickle: the bytes are the header vetted by harness.goldens.safetensors_file and raw tensors,
read by the safetensors package; the flow rebuilds its tensor subclasses from the metadata."""

from __future__ import annotations

from harness.goldens.safetensors_file import header
from harness.making import flows


def save(case, built, example) -> bytes:
    from safetensors.torch import save as to_bytes

    model = flows.runnable(case, built, example)
    tensors, metadata = flows.to_safetensors(case, model.state_dict())
    # safetensors refuses tensors that share memory or are not contiguous: each is its own copy
    return to_bytes({k: v.detach().contiguous().clone() for k, v in tensors.items()}, metadata=metadata)


def load(case, data: bytes, example, trusted: bool = False):
    """``trusted`` is accepted for the kinds' common signature: a safetensors file runs no code."""
    from safetensors.torch import load as from_bytes

    _, metadata, _ = header(data, "the safetensors file")
    state = flows.from_safetensors(case, from_bytes(data), metadata or None)
    model = flows.skeleton(case, example)
    flows.load_state(case, model, state)
    return model
