"""Golden set names and runtime versions: parsing and ordering. No torch here.

A golden set is named by the torch release that made it (``2.13.0``). A set made beside a stack
library release other than the one that pairs with that torch (harness.stacks ``set_label``)
carries it as a PEP 440 local label: ``2.13.0+lib.0.17.0`` is torch 2.13.0 with the library
``lib`` at 0.17.0. Which torch a set is from (newer than the running one or not) reads the release alone;
sets sort by the whole name, so a torch release's labelled sets follow its own.
"""

from __future__ import annotations

from packaging.version import InvalidVersion, Version


def _full(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def parse_version(text: str) -> Version | None:
    """The torch release of a golden set's name (its label left out), or None when the name is
    no version."""
    found = _full(text)
    return Version(found.public) if found is not None else None


def set_label(text: str) -> str | None:
    """The label of a golden set's name (``lib.0.17.0``), or None."""
    found = _full(text)
    return found.local if found is not None else None


def version_key(text: str):
    """Sort key of a golden or runtime version ('2.13.0', '2.13.0+lib.0.17.0',
    'pytorch@2.4.1'); other names last."""
    found = _full(text.split("@")[-1])
    return (0, found, text) if found is not None else (1, Version("0"), text)
