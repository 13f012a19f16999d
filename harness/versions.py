"""Golden set names and runtime versions: parsing and ordering. No torch here.

A golden set is named by the torch release that made it (``2.13.0``). A set made beside a stack
library release other than the one that pairs with that torch (harness.stacks ``set_label``)
carries it as a PEP 440 local label: ``2.13.0+lib.0.17.0`` is torch 2.13.0 with the library
``lib`` at 0.17.0. Which torch a set is from (newer than the running one or not) reads the release alone;
sets sort by the whole name, so a torch release's labelled sets follow its own.
"""

from __future__ import annotations

from packaging.version import InvalidVersion, Version


def full_version(text: str) -> Version | None:
    """A golden set's name as a whole version, its label included, or None."""
    try:
        return Version(text)
    except InvalidVersion:
        return None


def requirement_name(requirement: str) -> str:
    """The package a pip requirement names (``lib==1.0``, ``lib>=2``: lib)."""
    return requirement.split("=", 1)[0].split("<", 1)[0].split(">", 1)[0]


def parse_version(text: str) -> Version | None:
    """The torch release of a golden set's name (its label left out), or None when the name is
    no version."""
    found = full_version(text)
    return Version(found.public) if found is not None else None


def canonical_set_name(text: str) -> bool:
    """Whether ``text`` names a golden set the one way it is written: a version in PEP 440's
    normal form (``2.13.0+lib.0.17.0``; not ``v2.13.0``, ``2.13.0+LIB-0.17.0`` or a name
    with white space), so that no two directories are one set and a set is compared by name."""
    found = full_version(text)
    return found is not None and str(found) == text


def set_label(text: str) -> str | None:
    """The label of a golden set's name (``lib.0.17.0``), or None."""
    found = full_version(text)
    return found.local if found is not None else None


def version_key(text: str):
    """Sort key of a golden or runtime version ('2.13.0', '2.13.0+lib.0.17.0',
    'pytorch@2.4.1'); other names last."""
    found = full_version(text.split("@")[-1])
    return (0, found, text) if found is not None else (1, Version("0"), text)


def library_label(library: str, installed: str | None, paired: str | None) -> str | None:
    """The label (``<library>.<release>``) a set made beside ``installed`` of a stack's library
    carries: None where none is installed or it is the release that pairs with the set's torch."""
    if installed is None or installed == paired:
        return None
    return f"{library}." + installed.split("+", 1)[0]
