"""Artifact kinds: how a quantized model is written to bytes and read back.

Each kind is one module with the same verbs: ``save(case, built, example) -> bytes``
and ``load(case, data, example) -> model``; running is ``case.forward(model, example)``.
``CODE_CARRYING`` kinds hold code and are loaded only after their checksum is verified.
"""

from __future__ import annotations

from types import ModuleType

from . import export, lite, package, scripted, state_dict, traced

KINDS: dict[str, ModuleType] = {
    "state_dict": state_dict,
    "scripted": scripted,
    "traced": traced,
    "package": package,
    "export": export,
    "lite": lite,
}

#: Kinds that hold code (or a program that names ops and classes to run) and are loaded only
#: after their checksum matches the manifest.
CODE_CARRYING = frozenset({"scripted", "traced", "package", "export", "lite"})
