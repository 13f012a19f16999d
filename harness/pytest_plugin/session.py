"""The plugin's state for one pytest session (kept in ``config.stash``), and how xdist workers hand it over."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pytest

from harness.replaying.request import Options, RequestError, RunRequest
from harness.verdicts import Verdict

SESSION = pytest.StashKey["GoldenSession"]()


@dataclass
class GoldenSession:
    """Everything the plugin knows during a session; kept in ``config.stash``."""

    config: pytest.Config
    ci: str | None
    update: str | None  # None, "all" or "new"
    catalog: bool
    #: what to replay and how (backends, layout, bound, trust, shard): checked as the CLI's is
    request: RunRequest
    report: Path | None
    prune: bool
    worker: bool
    results: list[dict] = field(default_factory=list)
    used: set = field(default_factory=set)  # (golden version, case id)
    used_backends: set = field(default_factory=set)  # (golden version, case id, backend)
    passed: set = field(default_factory=set)  # nodeids whose call phase passed
    collected: set = field(default_factory=set)  # nodeids collected, selected or not
    collected_files: set = field(default_factory=set)
    catalog_ids: set = field(default_factory=set)
    #: (version, case id, kind, why): artifact kinds a golden holds that its test no longer asks for
    dropped_kinds: list = field(default_factory=list)
    #: the files given to pytest by node id: only part of each was collected (its other tests exist)
    partial_files: set = field(default_factory=set)
    #: this pytest run, shared by its xdist workers (the controller hands it over): golden ids are
    #: claimed under it, so two tests using one id are found across workers
    run_id: str = ""
    writes: list = field(default_factory=list)  # lines saying what was written
    wrote: set = field(default_factory=set)  # nodeids that wrote a golden
    unused: list = field(default_factory=list)  # (version, case id, why, backend or None: the whole case)
    #: (case id, newest golden version replayed, nodeid): checks with goldens from older torch only
    not_current: list = field(default_factory=list)
    require_current: bool = False  # --golden-require-current: such a check fails as missing
    _epoch: int = field(default=0, repr=False)
    _golden_dir: Path | None = field(default=None, repr=False)  # raised when goldens are written: the sandbox's replayers are stale
    _cases: list | None = field(default=None, repr=False)
    _options: Options | None = field(default=None, repr=False)
    _goldens: dict = field(default_factory=dict, repr=False)  # version -> GoldenSet read at collection
    _threads: tuple | None = field(default=None, repr=False)  # xdist worker: (its share, torch's own count)

    def write_command(self, nodeid: str) -> str:
        """The command a manifest records for goldens this session writes for ``nodeid``."""
        return self.command(nodeid, "--golden-update" if self.update == "all" else "--golden-update-new-only")

    def command(self, target: str | None, *flags: str) -> str:
        """A pytest command line to suggest: ``target`` (a node id, or None for the whole suite),
        ``flags``, and the user's own flags that decide where goldens are (--golden-dir,
        --golden-fixtures, --golden-backend, --golden-layout), as they gave them."""
        own = []
        for option, flag in (("golden_dir", "--golden-dir"), ("golden_fixtures", "--golden-fixtures")):
            if self.config.getoption(option):
                own.append(f"{flag}={shlex.quote(self.config.getoption(option))}")
        own += [f"--golden-backend={b}" for b in self.config.getoption("golden_backend") or ()]
        if self.layout != "harness":
            own.append(f"--golden-layout={self.layout}")
        return " ".join(["pytest", *([shlex.quote(target)] if target else []), *flags, *own])

    # -- places ---------------------------------------------------------------------
    @property
    def golden_dir(self) -> Path:
        """--golden-dir, else ini golden_dir, else [tool.bc-harness] goldens, else <rootdir>/serialized.

        Never the harness's own checkout: a user's goldens live in the user's tree."""
        return self._place("golden_dir", "goldens")

    @property
    def fixtures_dir(self) -> Path:
        """--golden-fixtures, else [tool.bc-harness] fixtures, else <rootdir>/fixtures."""
        return self._place("golden_fixtures", "fixtures")

    def resolved_golden_dir(self) -> Path | None:
        """The golden directory, found once (pytest asks for every path it collects); None if it cannot be."""
        if self._golden_dir is None:
            try:
                self._golden_dir = self.golden_dir.resolve()
            except (OSError, ValueError):
                return None
        return self._golden_dir

    def _place(self, option: str, key: str) -> Path:
        from harness.config import DEFAULTS, configured

        config = self.config
        flag = config.getoption(option)
        if flag:
            return Path(flag).resolve()
        ini = config.getini("golden_dir") if option == "golden_dir" else ""
        if ini:
            return (config.rootpath / ini).resolve()
        return (configured(config.rootpath, key) or config.rootpath / DEFAULTS[key]).resolve()

    def obtained_dir(self) -> Path:
        """Where obtained outputs of failures go: beside the report, else pytest's cache; never the store."""
        if self.report is not None:
            return self.report.parent / "golden-obtained"
        cache = getattr(self.config, "cache", None)
        if cache is not None:
            return Path(cache.mkdir("golden-obtained"))

        return Path(tempfile.gettempdir()) / "golden-obtained"

    # -- catalog ----------------------------------------------------------------------
    @property
    def layout_class(self):
        """The harness.goldens.layout class of --golden-layout."""
        from harness.goldens.layout import LAYOUTS

        return LAYOUTS[self.layout]

    def cases(self):
        if self._cases is None:
            from harness.catalog import load_catalog

            self._cases = load_catalog(self.fixtures_dir)
        return self._cases

    def evaluate(self, version: str, case, kind: str, backend: str):
        """One catalog item's Evaluation, judged in this process's crash-safe child
        (harness.sandbox): a result whose loading or running kills the child is a ``crash``, and
        the session goes on with a new child."""
        from harness.replaying.replayer import Evaluation
        from harness.replaying.results import Result
        from harness.sandbox import run_to_end, shared

        options = self.options()
        request = {"context": f"{id(self)}-{self._epoch}", "layout": self.layout, "root": str(self.golden_dir),
                   "fixtures": str(self.fixtures_dir), "options": options, "version": version, "case": case.id,
                   "kind": kind, "backend": backend, "share": self._share()}
        found = []
        given_up = run_to_end(shared(), "harness.replaying.replayer:evaluate_in_child", request, found.append)
        if given_up:
            return Evaluation(Result(case.id, kind, backend, version, runtime(), Verdict.CRASH,
                                     f"the replay worker gave up on it: {given_up}"))
        return found[0]

    # the request's parts the plugin reads
    layout = property(lambda self: self.request.layout)
    backends = property(lambda self: self.request.backends)
    shard = property(lambda self: self.request.shard)
    rounding_ulps = property(lambda self: self.request.bound)
    trust_unverified = property(lambda self: self.request.trust_unverified)
    trust_goldens = property(lambda self: self.request.trust_goldens)

    def options(self, **given) -> Options:
        """The replay options of this session's checks, made from its request once (the project's
        operators and the golden directory's known drifts are read once per session)."""
        if self._options is None:
            try:
                self._options = self.request.options(self.config.rootpath, self.golden_dir)
            except RequestError as exc:
                raise pytest.UsageError(str(exc)) from None
        return replace(self._options, **given)

    def generate(self, case):
        """One catalog case's goldens for the running torch, made in the crash-safe child."""
        from harness.making.generate import generate_isolated

        return generate_isolated(self.fixtures_dir, case, self.backends)

    # -- threads ------------------------------------------------------------------------
    def _share(self) -> int | None:
        """In an xdist worker, torch threads for a catalog item: the worker's share of the cores."""
        if not self.worker:
            return None
        from harness.replaying.shard import cores

        return max(1, cores() // int(self.config.workerinput.get("workercount", 1)))

    def _thread_counts(self) -> tuple[int, int]:
        """(torch threads for a golden check in this xdist worker, torch's own count here)."""
        if self._threads is None:
            import torch

            from harness.replaying.shard import cores

            workers = int(self.config.workerinput.get("workercount", 1))
            self._threads = (max(1, cores() // workers), torch.get_num_threads())
        return self._threads

    def onednn_threads(self) -> int | None:
        """In an xdist worker, onednn replays at torch's own thread count, as a serial run
        would: its dynamic linear rounds differently with another count (harness.replaying.replayer)."""
        return self._thread_counts()[1] if self.worker else None

    @contextmanager
    def checking(self):
        """Around one golden check: in an xdist worker, torch's intra-op threads are the
        worker's share of the cores. N workers on N cores, each with torch's default of N
        threads, oversubscribe them, and every small parallel op then waits for a core (a
        108-element dequantize: 4-8 ms instead of microseconds)."""
        if not self.worker:
            yield
            return
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(self._thread_counts()[0])
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def versions(self) -> tuple[list[str], list[str]]:
        """(golden versions not newer than this torch, directories named like no version)."""
        from harness.compat import torch_release
        from harness.goldens.store import GoldenStore
        from harness.versions import parse_version

        if self.layout_class.single_set:
            return [self.layout_class.single_set], []
        found, stray = GoldenStore(self.golden_dir).versions()
        return [v for v in found if parse_version(v) <= parse_version(torch_release())], stray

    def golden(self, version: str):
        """The golden set ``version`` of this session's store as its manifest vouches for it
        (harness.goldens.store.GoldenSet), or None where the manifest is unreadable (its items say so)."""
        from harness.replaying.replayer import open_golden

        if version not in self._goldens:  # read once per version, not once per case: a manifest may be 16 MiB
            self._goldens[version] = open_golden(self.layout_class, self.golden_dir, version, self.options())
        golden = self._goldens[version]
        return None if golden.manifest_error else golden

    def note_write(self, rewrite: bool, directory: Path, nodeid: str, changes: str = "") -> None:
        """One line per golden written: the absolute directory, so nobody wonders which store it was."""
        self.writes.append(f"{'rewrote' if rewrite else 'wrote'} {directory.resolve()} ({nodeid})"
                           + (f"\n{changes}" if changes else ""))
        self.wrote.add(nodeid)

    def forget(self, version: str) -> None:
        """Drop what was read of the goldens after some were written."""
        self._epoch += 1
        self._goldens.pop(version, None)

    def record(self, result, nodeid: str) -> None:
        self.results.append({**asdict(result), "test": nodeid})
        self.used.add((result.golden_version, result.case))
        self.used_backends.add((result.golden_version, result.case, result.backend))

    # -- xdist ------------------------------------------------------------------------
    def export(self) -> str:
        return json.dumps({
            "results": self.results, "used": sorted(self.used), "used_backends": sorted(self.used_backends),
            "passed": sorted(self.passed),
            "collected": sorted(self.collected), "collected_files": sorted(self.collected_files),
            "catalog_ids": sorted(self.catalog_ids), "writes": self.writes, "not_current": self.not_current,
            "dropped_kinds": self.dropped_kinds, "partial_files": sorted(self.partial_files),
        })

    def merge(self, payload: str) -> None:
        data = json.loads(payload)
        self.results.extend(data["results"])
        self.used.update(tuple(u) for u in data["used"])
        self.used_backends.update(tuple(u) for u in data["used_backends"])
        self.passed.update(data["passed"])
        self.collected.update(data["collected"])
        self.collected_files.update(data["collected_files"])
        self.catalog_ids.update(data["catalog_ids"])
        self.writes.extend(w for w in data["writes"] if w not in self.writes)
        self.not_current.extend(tuple(n) for n in data["not_current"])
        self.dropped_kinds.extend(tuple(d) for d in data["dropped_kinds"] if tuple(d) not in self.dropped_kinds)
        self.partial_files.update(data["partial_files"])

    # -- golden ids -----------------------------------------------------------------------
    def claims_dir(self) -> Path:
        """Where this run's golden ids are claimed (shared by its xdist workers, removed at its end)."""
        return Path(tempfile.gettempdir()) / "bc-harness-claims" / self.run_id

    def claim(self, golden_id: str, nodeid: str) -> str | None:
        """Claim ``golden_id`` for test ``nodeid`` in this run; the node id of another test that
        claimed it first (in any worker), or None. A file per id, created exclusively."""
        directory = self.claims_dir()
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / hashlib.sha256(golden_id.encode()).hexdigest()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            other = path.read_text(encoding="utf-8")
            return other if other and other != nodeid else None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(nodeid)
        return None


def runtime() -> str:
    """The running torch's release."""
    from harness.compat import torch_release

    return torch_release()
