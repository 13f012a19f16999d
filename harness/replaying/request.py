"""The run request: what one replay is asked to do, built once by a door (``bc-harness replay``'s
arguments or the pytest plugin's options), checked by one set of rules, and turned into the
``Options`` every replay runs with.

The two doors spell their flags differently (``--backend`` and ``--golden-backend``); a request
carries its door's spelling, so the one check speaks each door's language. A rule that applies to
a replay is written here once; a door adds only what is its own (pytest's update and CI flags, the
CLI's ``--record-costs``). Imports no torch: the plugin's configure step checks a request.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.config import ConfigError, operators as project_operators
from harness.backends import known
from harness.goldens.layout import LAYOUTS


class RequestError(ValueError):
    """A request that cannot run, said in one line with the door's own flag names."""


@dataclass(frozen=True)
class Spelling:
    """How a door names each flag of a request."""

    backend: str
    layout: str
    directory: str
    exact: str
    rounding_ulps: str
    shard: str
    no_forward: str
    versions: str
    result_timeout: str
    jobs: str


CLI = Spelling(backend="--backend", layout="--layout", directory="DIR", exact="--exact",
               rounding_ulps="--rounding-ulps", shard="--shard", no_forward="--no-forward", versions="--golden",
               result_timeout="--result-timeout", jobs="-j")
PLUGIN = Spelling(backend="--golden-backend", layout="--golden-layout", directory="--golden-dir",
                  exact="--golden-exact", rounding_ulps="--golden-rounding-ulps", shard="--golden-shard",
                  no_forward="(forward replay)", versions="(golden versions)", result_timeout="(result timeout)",
                  jobs="-n")


@dataclass
class Options:
    """What a replay runs with: the checked request, with what the project adds (its operators,
    its known drifts). One per run, handed to every worker."""

    backends: list[str] | None = None  # None: every backend this torch supports
    verbose: bool = False
    trust_unverified: bool = False
    #: --trust-goldens: vetting's allowlists waived (harness.goldens.vetting), for goldens the user trusts
    trust_goldens: bool = False
    known: list = field(default_factory=list)  # harness.goldens.known.KnownDrift entries
    forward: bool = True  # also replay goldens of newer torch versions, as information
    patterns: list | None = None  # the -k selection, to tell a deselected golden from a lost one
    #: intra-op threads while replaying on onednn (None: leave torch's). A parallel worker runs
    #: torch single-threaded but sets this to the serial run's count: onednn's dynamic linear
    #: rounds float32 differently with another count (ondevice-conv_linear: 250 of 250
    #: elements by up to 1.2e-07).
    onednn_threads: int | None = None
    #: the float rounding bound of every case, in ulps (harness.compare); None: each case's own.
    #: 0 is --exact: any float difference is a drift
    rounding_ulps: int | None = None
    #: --golden: only these golden versions (None: every one in the store)
    versions: list | None = None
    #: the project's own additions to the operator allowlist ([tool.bc-harness] operators)
    operators: tuple = ()
    #: seconds a worker may spend on one result before it counts as hung and is stopped (a
    #: ``crash``); None: no limit (harness.sandbox)
    result_timeout: float | None = 600.0


@dataclass
class RunRequest:
    """One replay as a door asked for it, before and after ``check``."""

    flags: Spelling
    layout: str = "harness"
    backends: list[str] | None = None
    #: a directory was named for the run (DIR, --golden-dir): a single-set layout needs one
    directory: bool = False
    exact: bool = False
    rounding_ulps: int | None = None
    shard: str | tuple[int, int] | None = None
    trust_unverified: bool = False
    trust_goldens: bool = False
    forward: bool = True
    versions: list[str] | None = None
    patterns: list[str] | None = None
    result_timeout: float = 600.0
    jobs: int | None = None
    verbose: bool = False

    def check(self) -> "RunRequest":
        """The request with its rules applied (backends once each, the shard parsed), or
        RequestError naming the first rule it breaks."""
        f, layout = self.flags, LAYOUTS[self.layout]
        unknown = [b for b in self.backends or () if b not in known()]
        if unknown:
            raise RequestError(f"{f.backend} {unknown[0]!r} is not one of {', '.join(known())}")
        named = f"{f.layout} {self.layout}"
        if layout.single_set and not self.directory:
            raise RequestError(f"{named} needs the directory of PyTorch's files ({f.directory})")
        for flag, given in ((f.no_forward, not self.forward), (f.versions, bool(self.versions)),
                            (f.shard, bool(self.shard))):
            if layout.single_set and given:
                raise RequestError(f"{flag} and {named} conflict: a PyTorch directory is one golden set")
        if self.exact and self.rounding_ulps is not None:
            raise RequestError(f"{f.exact} and {f.rounding_ulps} conflict: {f.exact} is a bound of 0")
        if self.rounding_ulps is not None and self.rounding_ulps < 0:
            raise RequestError(f"{f.rounding_ulps} {self.rounding_ulps}: the bound must be 0 or more")
        if (self.exact or self.rounding_ulps is not None) and not layout.policy:
            flag = f.exact if self.exact else f.rounding_ulps
            raise RequestError(f"{flag} and {named} conflict: PyTorch's files are judged as its tests judge")
        if self.result_timeout < 0:
            raise RequestError(f"{f.result_timeout} {self.result_timeout:g}: the limit must be 0 (none) or more seconds")
        if self.jobs is not None and self.jobs < 1:
            raise RequestError(f"{f.jobs} {self.jobs}: the number of worker processes must be at least 1")
        return replace(self, backends=list(dict.fromkeys(self.backends)) if self.backends else None,
                       shard=self._shard())

    def _shard(self) -> tuple[int, int] | None:
        if not self.shard or isinstance(self.shard, tuple):
            return self.shard or None
        from harness.replaying.shard import parse_shard  # imports no torch, but is only needed when sharding

        try:
            return parse_shard(self.shard)
        except ValueError as exc:
            raise RequestError(f"{self.flags.shard}: {exc}") from None

    @property
    def bound(self) -> int | None:
        """The run's float rounding bound: 0 for exact, the given ulps, or None (each case's)."""
        return 0 if self.exact else self.rounding_ulps

    def options(self, project: Path, goldens: Path | None, **given) -> Options:
        """The Options of a checked request: the project's operators (``[tool.bc-harness]`` at or
        above ``project``) and, where the layout has them, the known drifts of ``goldens``."""
        from harness.goldens.known import KnownDriftError, load as load_known  # parses TOML: only when a run starts

        try:
            extra = tuple(sorted(project_operators(project)))
            known = load_known(goldens) if goldens is not None and LAYOUTS[self.layout].known_drifts else []
        except (ConfigError, KnownDriftError) as exc:
            raise RequestError(str(exc)) from None
        return Options(**{"backends": self.backends, "verbose": self.verbose, "trust_unverified": self.trust_unverified,
                          "trust_goldens": self.trust_goldens, "known": known, "forward": self.forward,
                          "patterns": self.patterns, "rounding_ulps": self.bound, "versions": self.versions,
                          "operators": extra, "result_timeout": self.result_timeout or None, **given})
