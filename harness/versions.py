"""Torch versions as golden directories and reports name them: parsing and ordering. No torch here."""

from __future__ import annotations

from packaging.version import InvalidVersion, Version


def parse_version(text: str) -> Version | None:
    """A directory name's torch version, or None when it is named like no version."""
    try:
        return Version(text)
    except InvalidVersion:
        return None


def version_key(text: str):
    """Sort key of a golden or runtime version ('2.13.0', 'pytorch@2.4.1'); other names last."""
    found = parse_version(text.split("@")[-1])
    return (0, found, text) if found is not None else (1, Version("0"), text)
