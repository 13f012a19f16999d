"""lite artifact: the TorchScript model saved for the lite interpreter (.ptl), as a phone runs it."""

from __future__ import annotations

from harness.making import flows
from harness.compat import lite_load, lite_save


def save(case, built, example) -> bytes:
    return lite_save(flows.to_script(case, built, example))


def load(case, data: bytes, example, trusted: bool = False):
    return lite_load(data)
