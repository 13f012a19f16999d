"""Artifact kinds: how a quantized model is written to bytes and read back.

Each kind is one module with the same verbs: ``save(case, built, example) -> bytes``
and ``load(case, data, example) -> model``; running is ``case.forward(model, example)``.
``CODE_CARRYING`` kinds hold code and are loaded only after their checksum is verified.
"""

from __future__ import annotations

from types import ModuleType

from harness.goldens.vetting import CODE_CARRYING  # noqa: F401  (defined beside the vetting of those kinds)
from harness.making.artifacts import export, lite, package, pte, safetensors, scripted, state_dict, traced

KINDS: dict[str, ModuleType] = {
    "state_dict": state_dict,
    "scripted": scripted,
    "traced": traced,
    "package": package,
    "export": export,
    "lite": lite,
    "safetensors": safetensors,
    "pte": pte,
}
