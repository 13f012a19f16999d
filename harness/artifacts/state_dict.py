"""state_dict artifact: the module's state, loaded into a module built by today's code."""

from __future__ import annotations

from .. import flows
from ..compat import load_weights, save_bytes


def save(case, built, example) -> bytes:
    model = flows.runnable(case, built, example)
    return save_bytes(model.state_dict(), zipfile=case.state_dict_zipfile)


def load(case, data: bytes, example):
    state = load_weights(data)
    model = flows.build(case)
    model.load_state_dict(state)
    return model
