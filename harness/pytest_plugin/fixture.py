"""The ``golden`` fixture: a test's own quantized model checked against its goldens, or written."""

from __future__ import annotations

import copy
import pytest

from harness.backends import BACKENDS
from harness.pytest_plugin.failures import GoldenFailure, failure_text
from harness.pytest_plugin.session import SESSION, GoldenSession, runtime
from harness.verdicts import Verdict


class GoldenChecker:
    """``golden.check(...)``: replay a test's stored goldens, or write them when asked to."""

    def __init__(self, request):
        self.request = request
        self.state: GoldenSession = request.config.stash[SESSION]

    def __repr__(self) -> str:  # as pytest shows the fixture among a failing test's arguments
        return f"<golden fixture of {self.request.node.nodeid}>"

    def check(self, name: str, model, example_inputs, *, artifacts=("state_dict", "scripted", "traced"),
              backends=None, tolerance=None) -> list:
        """Check the quantized ``model`` (a module, or a function building one) against its goldens.

        ``name`` is the golden's stable id: renaming the test or its class does not orphan it.
        Every golden version not newer than the running torch is replayed, under each backend:
        each stored artifact (does the old file still load and give the golden output?) and
        the model as built now (artifact "model": does today's code still give it?).
        Returns the Result records; fails the test on any drift, load error or missing golden.
        """
        __tracebackhide__ = True  # a failure is its message: the plugin's frames tell the user nothing
        nodeid = self.request.node.nodeid
        other = self.state.claim(name, nodeid)
        if other is not None:
            raise GoldenFailure(f"golden id {name!r} is used by two tests in this run: {other} and {nodeid}; each "
                                f"test needs an id of its own (nothing was written or compared for {nodeid})")
        case, backends = self._case(name, model, example_inputs, artifacts, backends, tolerance)
        from harness.goldens.store import GoldenStore
        from harness.versions import parse_version

        store = GoldenStore(self.state.golden_dir)
        versions = [v for v in store.versions()[0] if parse_version(v) <= parse_version(runtime())]
        with self.state.checking():
            evaluations = [ev for version in versions for ev in self._replay(store, version, case, backends)]
            evaluations = self._update(store, case, backends, evaluations)
        for ev in evaluations:
            self.state.record(ev.result, nodeid)
        failed = [e for e in evaluations if e.result.failed]
        unmade = self._kinds(store, case, nodeid) + self._deprecations(evaluations)
        if failed or unmade:
            raise GoldenFailure("\n\n".join(filter(None, [
                failure_text(self.state, failed, case.tolerance, nodeid) if failed else "", *unmade])))
        return [e.result for e in evaluations]

    def _deprecations(self, evaluations) -> list[str]:
        """Under --golden-deprecations=error, the deprecation notices raised while the check loaded
        its goldens and ran them and the model, each with where, as a failure. Otherwise none: the
        checks record warnings and never raise them, whatever -W says."""
        from harness.notices import is_deprecation

        if self.request.config.getoption("golden_deprecations", "record") != "error":
            return []
        found: dict[str, dict[str, None]] = {}
        for e in evaluations:
            for w in e.result.warnings:
                if is_deprecation(w):
                    found.setdefault(w, {})[f"{e.result.artifact} ({e.result.golden_version})"] = None
        if not found:
            return []
        lines = [f"  {w}\n    raised by: {', '.join(where)}" for w, where in found.items()]
        return [f"{len(found)} deprecation notice(s) raised while loading and running its goldens and the model as "
                f"built now (artifact 'model'); --golden-deprecations=error fails the check on them (the results "
                f"themselves are as the golden summary counts them):\n" + "\n".join(lines) +
                "\n  torch's notices name the API on its way out: a notice that only an artifact kind raises (torch.jit.load "
                "for scripted/traced) goes when that kind leaves artifacts=; without the flag they are recorded only"]

    def _kinds(self, store, case, nodeid) -> list[str]:
        """What this torch cannot make of the kinds the test asks for (a failure: never a silent
        skip), and, noted for the summary and --golden-prune, kinds a golden holds that the test no
        longer asks for."""
        unmade = []
        for version in store.versions()[0]:
            golden = store.open(version)
            entry = golden.cases.get(case.id) if not golden.manifest_error else None
            if entry is None or entry.malformed:
                continue
            if version == runtime():
                unmade += [f"artifact {kind!r} was asked for, but torch {version} cannot make it: {why}\n"
                           f"drop it from artifacts= (or mark the test xfail while it cannot)"
                           for kind, why in entry.skipped_artifacts.items()
                           if kind in case.artifacts and not why.startswith("removed: ")]
            for kind in entry.artifacts:
                if kind not in case.artifacts:
                    dropped = (version, case.id, kind, f"{nodeid} no longer asks for it")
                    if dropped not in self.state.dropped_kinds:
                        self.state.dropped_kinds.append(dropped)
        return unmade

    def _case(self, name, model, example_inputs, artifacts, backends, tolerance):
        """The Case a check stands for, and its backends (the call's, the marker's or the session's)."""
        __tracebackhide__ = True
        from harness.catalog import Case, GivenInput, Tolerance
        from harness.versions import parse_version

        marker = self.request.node.get_closest_marker("golden")
        options = dict(marker.kwargs) if marker else {}
        min_torch = options.get("min_torch")
        if min_torch and parse_version(runtime()) < parse_version(str(min_torch)):
            pytest.skip(f"golden {name} needs torch >= {min_torch}")
        backends = backends or options.get("backends") or self.state.backends
        unknown = [b for b in backends or () if b not in BACKENDS]
        if unknown:
            raise ValueError(f"backend {unknown[0]!r} is not one of {', '.join(BACKENDS)}")
        case = Case(name, build=_builder(model), input=GivenInput(example_inputs), artifacts=tuple(artifacts),
                    tolerance=tolerance or Tolerance(), state_dict_zipfile=True, source=self.request.node.nodeid)
        return case, backends

    def _update(self, store, case, backends, evaluations):
        """The evaluations after what the session's update mode does with this torch's own goldens:
        none there is missing (or written, when asked), a drift is rewritten under --golden-update.

        A golden that older torch releases have and this one does not yet (the user upgraded
        torch) is not a failure: the old goldens were replayed, the summary says which are
        missing for this torch, and --golden-require-current makes it a failure instead."""
        version = runtime()
        own = [e for e in evaluations if e.result.golden_version == version]
        rewrite = (self.state.update == "all" and any(e.result.verdict == Verdict.DRIFT for e in own)) or \
            (self.state.update is not None and any(e.result.verdict == Verdict.MISSING for e in own))  # deleted by hand
        if own and not rewrite:
            return evaluations
        if own:
            self._write(store, case, backends, rewrite=True)
            evaluations = [e for e in evaluations if e.result.golden_version != version]
        elif self.state.update:
            self._write(store, case, backends, rewrite=False)
        elif evaluations and not self.state.require_current:
            older = sorted({e.result.golden_version for e in evaluations}, key=_version_key)
            self.state.not_current.append((case.id, older[-1], self.request.node.nodeid))
            return evaluations
        else:
            return evaluations + [self._missing(case, backends, version, bool(evaluations))]
        return evaluations + self._replay(store, version, case, backends)

    def _missing(self, case, backends, version: str, has_older: bool):
        from harness.replaying.replayer import Evaluation
        from harness.replaying.results import Result

        why = " (--golden-require-current: older releases' goldens do not stand in)" if has_older else ""
        return Evaluation(Result(
            case.id, ",".join(case.artifacts), ",".join(backends or ["all"]), version, version, Verdict.MISSING,
            f"no golden {case.id!r} for torch {version}{why}"))

    def _replay(self, store, version, case, backends):
        from harness.goldens.layout import HarnessLayout
        from harness.replaying.replayer import Evaluation, open_replayer
        from harness.replaying.results import whole

        options = self.state.options(backends=backends, onednn_threads=self.state.onednn_threads())
        replayer = open_replayer(HarnessLayout, store.root, version, [case], options)
        golden = replayer.layout.golden
        if golden.manifest_error:
            return [Evaluation(whole(version, runtime(), golden.manifest_error, case=case.id))]
        if case.id not in golden.cases:
            return []
        found = [replayer.evaluate(case, kind, backend)
                 for kind in case.artifacts for backend in replayer.backends_for(case)]
        example = case.input.make()
        return found + [replayer.evaluate_model(case, backend, example) for backend in replayer.backends_for(case)]

    def _write(self, store, case, backends, *, rewrite: bool):
        from harness.making.flows import flow_of
        from harness.making.generate import generate_fresh
        from harness.notices import quiet
        from harness.goldens.store import GoldenError, GoldenExists
        from harness.making.writing import write_goldens

        nodeid = self.request.node.nodeid
        generated = generate_fresh(case, backends)
        with quiet():
            generated.entry.flow = flow_of(case.build())
        if rewrite and self.state.update == "new":  # restoring what was deleted: what exists stays as it is
            current = store.open(runtime(), unsealed_ok=True)
            for name in list(generated.files):
                try:
                    generated.files[name] = current.read(name, kind="text")  # checksum-verified old bytes
                except GoldenError:
                    pass
        try:
            written = write_goldens(store, runtime(), [generated],
                                    self.state.write_command(nodeid), overwrite=rewrite, owner=nodeid)
        except GoldenExists:  # another test (an xdist worker) wrote this golden first: replay against it
            return
        self.state.note_write(rewrite, store.root / runtime() / case.id, nodeid, written.changes)


def _version_key(version: str):
    from harness.versions import parse_version

    return parse_version(version)


def _builder(model):
    """A function that builds a fresh copy of the model (state_dict replay needs a new module)."""
    if isinstance(model, type) or (callable(model) and not hasattr(model, "state_dict")):
        return model  # a function or a class: calling it builds a fresh model

    return lambda: copy.deepcopy(model)


@pytest.fixture
def golden(request) -> GoldenChecker:
    """Check a quantized model against stored goldens: ``golden.check(name, model, inputs)``."""
    return GoldenChecker(request)
