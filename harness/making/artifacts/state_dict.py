"""state_dict artifact: the module's state, loaded into a module built by today's code."""

from __future__ import annotations

from harness.making import flows
from harness.goldens.safeload import load_weights, save_bytes


def save(case, built, example) -> bytes:
    model = flows.runnable(case, built, example)
    return save_bytes(model.state_dict(), zipfile=case.state_dict_zipfile)


def load(case, data: bytes, example, trusted: bool = False):
    """``trusted``: bytes this process just made (generation's round-trip check), not a golden."""
    state = load_weights(data, trusted=trusted)
    model = flows.skeleton(case, example)
    flows.load_state(case, model, state)
    return model
