"""A golden set's manifest: its typed form, read from JSON and written to JSON here and nowhere else.

``manifest.json``::

    {"format": 1,
     "torch": ..., "python": ..., "cpu_capability": ..., "fingerprint": {...}, "command": ..., (info)
     "pinned": true,                                   (only in a pinned foreign directory)
     "cases": {"<case id>": {<CaseEntry>}, ...},
     "files": {"<path>": {"sha256": "...", "size": N}, ...},
     "golden_files": N,                                (how many files the set holds)
     "removed": {"<case id>": "<why>", ...}}           (cases removed by a command, and why)

The golden count makes a set that shrinks by hand (files deleted with their entries, a case
marked skipped) fail: only the store's commands lower it, and they record why.

A manifest is untrusted input like the files it vouches for. A manifest that is not a JSON
object with a ``files`` table is unusable as a whole (ManifestError); a malformed case entry or
file entry spoils only that case or that file (``malformed`` says why), and is written back as
it was found. Keys this harness does not know are kept, in entries and in the header alike.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

NAME = "manifest.json"
FORMAT = 1


class ManifestError(ValueError):
    """The manifest as a whole cannot be used."""


def _is_str_map(value, of=str) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, of) for k, v in value.items())


#: what an artifact kind or a backend may be called in an entry: a short lowercase word (every
#: kind and backend the harness writes is one), so that a forged entry cannot name thousands of
#: them (each a promised result, a pytest item) or put control characters on a terminal
_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
#: the most artifact kinds, and backends, an entry may name
_MOST_NAMES = 32


#: the fields whose keys or items name artifact kinds or backends
_NAMED = ("artifacts", "skipped_artifacts", "backends", "unrunnable", "warnings")


def _are_names(values) -> bool:
    return len(values) <= _MOST_NAMES and all(isinstance(v, str) and _NAME.fullmatch(v) for v in values)


class _JsonView(Mapping):
    """Reads as the JSON object ``to_json`` makes (``x["key"]``, ``x.get(...)``, ``dict(x)``)."""

    def to_json(self):
        raise NotImplementedError

    def __getitem__(self, key):
        return self.to_json()[key]

    def __iter__(self):
        return iter(self.to_json())

    def __len__(self):
        return len(self.to_json())


#: CaseEntry's JSON fields, in the order they are written, with the check each value must pass
_CHECKS = {
    "description": lambda v: isinstance(v, str),
    "flow": lambda v: isinstance(v, str),
    "source": lambda v: isinstance(v, str),
    "artifacts": lambda v: isinstance(v, list) and _are_names(v),
    "skipped_artifacts": lambda v: _is_str_map(v) and _are_names(v),
    "backends": lambda v: _is_str_map(v) and _are_names(v),
    "warnings": lambda v: isinstance(v, dict) and _are_names(v) and all(isinstance(x, list) for x in v.values()),
    "pytorch_test": lambda v: v is None or isinstance(v, str),
    "skipped": lambda v: v is None or isinstance(v, str),
    "owner": lambda v: v is None or isinstance(v, str),
    "unrunnable": lambda v: isinstance(v, dict) and _are_names(v) and all(_is_str_map(x) and _are_names(x)
                                                                          for x in v.values()),
    "machine": lambda v: v is None or isinstance(v, dict),
    "made_with": lambda v: v is None or (_is_str_map(v) and len(v) <= _MOST_NAMES),
}


@dataclass
class CaseEntry(_JsonView):
    """What a golden set records of one case. Reads as its JSON object too (``entry["flow"]``)."""

    description: str = ""
    flow: str = ""
    source: str = ""
    #: the artifact kinds whose files were made
    artifacts: list[str] = field(default_factory=list)
    #: kind -> why this torch could not make it
    skipped_artifacts: dict[str, str] = field(default_factory=dict)
    #: backend -> "ok" (its expected output was recorded), or why not
    backends: dict[str, str] = field(default_factory=dict)
    #: backend -> the warnings worth reading that making its golden raised
    warnings: dict[str, list[str]] = field(default_factory=dict)
    #: PyTorch's file stem for the case, where it is one of PyTorch's tests
    pytorch_test: str | None = None
    #: why this torch could not make the case at all
    skipped: str | None = None
    #: the pytest node id whose golden.check wrote it (the plugin's goldens)
    owner: str | None = None
    #: kind -> backend -> why that backend cannot load or run the kind's file (checked when written)
    unrunnable: dict[str, dict[str, str]] = field(default_factory=dict)
    #: the fingerprint of the machine that made the case (harness.machine); the set's own where
    #: absent (cases made before entries recorded it). A set grows case by case, on many machines
    machine: dict | None = None
    #: what the case's flow records of the libraries that made it (harness.stacks Flow.record):
    #: a library's release, the config it was quantized with, whether its compiled kernels loaded
    made_with: dict[str, str] | None = None
    #: keys this harness does not know, kept as they are
    extra: dict = field(default_factory=dict)
    #: why the entry on disk is unusable; ``raw`` then holds it as found, and it is written back so
    malformed: str | None = None
    raw: object = None

    def made(self, backend: str) -> bool:
        return self.backends.get(backend) == "ok"

    @classmethod
    def from_json(cls, raw) -> "CaseEntry":
        if not isinstance(raw, dict):
            return cls(malformed=f"it is a {type(raw).__name__}, not a table", raw=raw)
        bad = [key for key, check in _CHECKS.items() if key in raw and not check(raw[key])]
        if bad:
            names = (f", or names more than {_MOST_NAMES} artifact kinds or backends or one that is not a short "
                     "lowercase word") if bad[0] in _NAMED else ""
            return cls(malformed=f"its {bad[0]!r} has the wrong type{names}", raw=raw)
        known = {k: raw[k] for k in _CHECKS if k in raw}
        return cls(**known, extra={k: v for k, v in raw.items() if k not in _CHECKS})

    def to_json(self) -> dict:
        if self.malformed is not None:
            return self.raw
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name in _CHECKS}
        out = {k: v for k, v in out.items() if v is not None and not (k == "unrunnable" and not v)}
        return {**out, **self.extra}


def file_entry(data: bytes) -> dict:
    """A file's manifest entry: its sha256 and size."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def file_problem(entry) -> str | None:
    """Why a file entry read from disk is unusable, or None."""
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) \
            or not isinstance(entry.get("size"), int) or isinstance(entry.get("size"), bool):
        return "its manifest entry is malformed (it needs a sha256 string and a size)"
    return None


_STRUCTURE = ("format", "pinned", "cases", "files", "golden_files", "removed")


@dataclass
class Manifest(_JsonView):
    """A golden set's manifest. Reads as its JSON object too (``manifest["torch"]``)."""

    #: how the set was made: torch, python, platform, cpu_capability, fingerprint, command, ...
    info: dict = field(default_factory=dict)
    cases: dict[str, CaseEntry] = field(default_factory=dict)
    #: path (relative to the set) -> {"sha256": ..., "size": ...}, as found on disk
    files: dict[str, dict] = field(default_factory=dict)
    pinned: bool = False
    format: int = FORMAT
    #: the golden count as read (None: the manifest records none; written anew from ``files``)
    golden_files: int | None = None
    #: case id -> why a command removed it
    removed: dict[str, str] = field(default_factory=dict)

    @property
    def torch(self) -> str | None:
        """The torch release that made the set (or, pinned, that the user says made it)."""
        return self._text("torch")

    @property
    def set_name(self) -> str | None:
        """The set the manifest is of: its torch release, with its label (harness.versions) if any."""
        label = self._text("label")
        return self.torch + "+" + label if self.torch is not None and label else self.torch

    @property
    def cpu_capability(self) -> str | None:
        return self._text("cpu_capability")

    @property
    def avx512_vnni(self) -> bool | None:
        value = self.info.get("avx512_vnni")
        return value if isinstance(value, bool) else None

    @property
    def fingerprint(self) -> dict | None:
        """The machine that made the set (harness.machine), when recorded and well-formed."""
        from harness.machine import well_formed

        return well_formed(self.info.get("fingerprint"))

    def _text(self, key: str) -> str | None:
        value = self.info.get(key)
        return value if isinstance(value, str) else None

    @classmethod
    def parse(cls, text: str) -> "Manifest":
        """A manifest from its JSON; ManifestError when it cannot be used at all."""
        from harness.catalog import valid_case_id
        from harness.goldens.layout import valid_file_name
        from harness.notices import one_line

        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ManifestError(f"it is not JSON this harness can read: {one_line(exc)}") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("files"), dict):
            raise ManifestError("it has no 'files' table")
        cases = raw.get("cases", {})
        if not isinstance(cases, dict):
            raise ManifestError("its 'cases' is not a table")
        bad = next((c for c in cases if not valid_case_id(c)), None)
        if bad is not None:
            raise ManifestError(f"it names case {bad[:80]!r}, which is no valid case id")
        bad = next((n for n in raw["files"] if not valid_file_name(n)), None)
        if bad is not None:
            raise ManifestError(f"it vouches for {bad[:80]!r}, which is no valid golden file name")
        count, removed = raw.get("golden_files"), raw.get("removed", {})
        if count is not None and (not isinstance(count, int) or isinstance(count, bool)):
            raise ManifestError("its 'golden_files' is not a number")
        if not _is_str_map(removed):
            raise ManifestError("its 'removed' is not a table of reasons")
        return cls(info={k: v for k, v in raw.items() if k not in _STRUCTURE},
                   cases={k: CaseEntry.from_json(v) for k, v in cases.items()},
                   files=dict(raw["files"]), pinned=raw.get("pinned") is True,
                   format=raw.get("format", FORMAT), golden_files=count, removed=dict(removed))

    def set_problem(self, version: str | None, *, unsealed_ok: bool = False) -> str | None:
        """Why the set as a whole cannot be trusted to be what it was made as, or None.

        ``version``: the directory's torch release, which the manifest must name (None: a
        pinned foreign directory). ``unsealed_ok``: a set without a golden count is accepted
        (the writer and ``bc-harness seal`` record it).
        """
        if version is not None and self.set_name != version:  # pinned or not: a manifest cannot switch it off
            return (f"it says torch {self.set_name} made the set, but it is the manifest of directory "
                    f"{version}: a set moved or swapped by hand replays against the wrong release")
        if self.golden_files is None:
            return None if unsealed_ok else (
                "it records no golden count (sets written before the count was kept): "
                "run 'bc-harness seal' once to record it")
        if len(self.files) != self.golden_files:
            return (f"it vouches for {len(self.files)} files, but the set was written with "
                    f"{self.golden_files}: goldens were removed by hand, not by a command that records it")
        from harness.goldens.layout import case_of

        vouched = {case_of(name) for name in self.files}
        hidden = sorted(c for c, e in self.cases.items() if e.skipped and not e.malformed and c in vouched)
        if hidden:
            return f"it marks case {hidden[0]} skipped yet vouches for its files"
        return None

    def to_json(self) -> dict:
        out: dict = {"format": self.format, **self.info}
        if self.pinned:
            out["pinned"] = True
        if self.cases or not self.pinned:
            out["cases"] = {k: self.cases[k].to_json() for k in sorted(self.cases)}
        out["files"] = dict(sorted(self.files.items()))
        out["golden_files"] = len(self.files)
        if self.removed:
            out["removed"] = dict(sorted(self.removed.items()))
        return out

    def dump(self) -> bytes:
        return (json.dumps(self.to_json(), indent=1) + "\n").encode()

    def merged(self, cases: Mapping, files: dict[str, bytes], info: dict) -> "Manifest":
        """This manifest with ``cases`` (entries or their JSON) made anew from ``files``: the
        cases named lose the files they no longer have, the others keep theirs; ``info`` replaces
        the header."""
        from harness.goldens.layout import case_of

        from harness.machine import of_manifest

        kept = {name: entry for name, entry in self.files.items() if case_of(name) not in cases}
        kept.update({name: file_entry(data) for name, data in files.items()})
        entries = {k: v for k, v in self.cases.items() if k not in cases}
        made_by = of_manifest(self) if self.info else None
        if made_by and made_by.get("cpu_capability"):  # the header is the new writer's: each case keeps its machine

            entries = {k: dataclasses.replace(v, machine=made_by) if v.malformed is None and v.machine is None else v
                       for k, v in entries.items()}
        entries.update({k: as_entry(v) for k, v in cases.items()})
        removed = {k: v for k, v in self.removed.items() if k not in cases}
        return Manifest(info=dict(info), cases=entries, files=kept, format=FORMAT, removed=removed)

    def without(self, case_ids, why: str) -> "Manifest":
        """This manifest without the given cases and their files; ``why`` is recorded for each."""
        from harness.goldens.layout import case_of

        gone = set(case_ids)
        return Manifest(info=dict(self.info), cases={k: v for k, v in self.cases.items() if k not in gone},
                        files={n: e for n, e in self.files.items() if case_of(n) not in gone},
                        pinned=self.pinned, format=self.format,
                        removed={**self.removed, **{c: why for c in sorted(gone)}})


    def without_backends(self, backends: Mapping[str, list[str]], why: str) -> "Manifest":
        """This manifest without some backends' expected outputs (case -> backends); each such
        backend is recorded as removed, with ``why``, so its replay is a skip that says so."""
        from harness.goldens.layout import HarnessLayout

        cases, gone = dict(self.cases), set()
        for case_id, names in backends.items():
            entry = cases[case_id]
            cases[case_id] = dataclasses.replace(entry, backends={
                b: (f"removed: {why}" if b in names else s) for b, s in entry.backends.items()})
            gone.update(HarnessLayout.expected_name(case_id, b) for b in names)
        return Manifest(info=dict(self.info), cases=cases,
                        files={n: e for n, e in self.files.items() if n not in gone},
                        pinned=self.pinned, format=self.format, removed=dict(self.removed))


    def without_artifacts(self, kinds: Mapping[str, list[str]], why: str) -> "Manifest":
        """This manifest without some artifact kinds of cases (case -> kinds) and their files (the
        kind's file and its sidecar); each is recorded as removed, with ``why``."""
        from harness.goldens.layout import case_dir, file_name, sidecar_name

        cases, gone = dict(self.cases), set()
        for case_id, names in kinds.items():
            entry = cases[case_id]
            cases[case_id] = dataclasses.replace(
                entry, artifacts=[k for k in entry.artifacts if k not in names],
                skipped_artifacts={**entry.skipped_artifacts, **{k: f"removed: {why}" for k in names}})
            for kind in names:
                name = f"{case_dir(case_id)}/{file_name(kind)}"
                gone.update({name, sidecar_name(name)})
        return Manifest(info=dict(self.info), cases=cases,
                        files={n: e for n, e in self.files.items() if n not in gone},
                        pinned=self.pinned, format=self.format, removed=dict(self.removed))


def as_entry(value) -> CaseEntry:
    """A CaseEntry, from one or from its JSON (a caller's plain dict)."""
    return value if isinstance(value, CaseEntry) else CaseEntry.from_json(dict(value))
