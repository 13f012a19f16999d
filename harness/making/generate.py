"""Generating goldens: every artifact of a case, and its expected output under each backend.

Nothing here writes to disk: a Generated holds the files (named by harness.goldens.layout) and the
manifest entry; harness.making.writing puts them in the store.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import os
import pickle
import platform
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness import __version__, stacks
from harness.making import flows
from harness.making.artifacts import KINDS
from harness.making.artifacts.reproducible import reproducible
from harness.catalog import Case
from harness.compat import cpu_capability, has_avx512_vnni, torch_release
from harness.backends import using, supported_backends
from harness.goldens.layout import HarnessLayout as Names
from harness.goldens.layout import PyTorchLayout
from harness.goldens.manifest import CaseEntry
from harness.notices import quiet, runtime_warnings
from harness.notices import one_line
from harness.goldens.safeload import save_bytes
from harness.versions import parse_version, set_label
from harness.goldens.vetting import CODE_CARRYING, embedded_code


@dataclass
class Generated:
    """One case's golden files (name relative to the version directory -> bytes) and manifest entry."""

    case: Case
    files: dict[str, bytes] = field(default_factory=dict)
    entry: CaseEntry = field(default_factory=CaseEntry)


#: extra calls of each backend's model at generation, to refuse a non-reproducible golden
REPEATS = 4


def generation_info(command: str) -> dict:
    """The manifest's description of the machine and torch that made a golden set."""
    import torch

    from harness import machine

    label = set_label(stacks.own_set())
    return {
        "torch": torch_release(),
        **({"label": label} if label else {}),
        "torch_full_version": torch.__version__,
        "libraries": stacks.versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_capability": cpu_capability(),
        "avx512_vnni": has_avx512_vnni(),
        "fingerprint": machine.current(),
        "harness": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }


def generate_case(case: Case, backends: list[str] | None = None, crashed: dict | None = None, at=None) -> Generated:
    """Make every golden file of ``case`` with the installed torch.

    Artifacts are made once under fbgemm (or the first backend this build has), as PyTorch's
    suite does; the expected output is made under each backend from a fresh build with the
    same seed, so each backend has its own golden. What cannot be made is recorded with
    the reason instead of failing the whole run.

    Run crash-safe (``generate_isolated``), ``at`` is told each stage's key before it starts —
    ``("build",)``, ``("artifact", kind)``, ``("expected", backend)``, ``("check", kind,
    backend)`` — and a stage in ``crashed`` (key -> cause) killed an earlier process: it is
    recorded as what this torch cannot make on this machine, with the cause, and not run again.
    """
    from harness import machine

    backends = stacks.case_backends(case, backends, supported_backends())
    stage = _Stages(crashed or {}, at)
    out = Generated(case, entry=CaseEntry(description=case.description, flow=case.flow, source=case.source,
                                          pytorch_test=PyTorchLayout.stem(case) if case.pytorch else None,
                                          machine=machine.current(),
                                          made_with=stacks.of_case(case).record(case) or None))
    if parse_version(torch_release()) < parse_version(case.min_torch):
        out.entry.skipped = f"needs torch >= {case.min_torch}"
        return out
    if stacks.build_problem(case):
        out.entry.skipped = stacks.build_problem(case)
        return out
    first = backends[0] if backends else None
    if stage.crashed("build"):
        out.entry.skipped = f"torch {torch_release()} crashes building and running it under {first}: {stage.cause}"
        return out
    with quiet(), using(first):
        example = flows.make_input(case)
        out.files[Names.input_file(case)] = save_bytes(example)
        try:
            reference = case.forward(flows.runnable(case, flows.build(case), example), example)
        except Exception as exc:  # recorded, replayed as skip; the other cases go on
            out.files.clear()
            out.entry.skipped = f"torch {torch_release()} cannot build and run it: {one_line(exc)}"
            return out
        _make_artifacts(out, example, reference, stage)
    for backend in ["any"] if case.backend_agnostic else backends:
        _make_expected(out, backend, example, stage)
    out.files[Names.values_file(case)] = _values_text(out)
    return out


class _Stages:
    """A generation's stages in a crash-safe run: which one starts (told to ``at``), and which
    killed an earlier process."""

    def __init__(self, crashed: dict, at):
        self._crashed, self._at, self.cause = crashed, at, ""

    def crashed(self, *key) -> bool:
        """True where stage ``key`` crashed before (its cause in ``self.cause``); else it starts now."""
        if key in self._crashed:
            self.cause = self._crashed[key]
            return True
        if self._at is not None:
            self._at(key)
        return False


def _values_text(out: Generated) -> bytes:
    """The case's goldens as text for review (harness.goldens.readable): input, state_dict, expected outputs."""
    from harness.goldens.readable import summary_text
    from harness.goldens.safeload import load_weights

    case, parts, seen = out.case, {}, {}
    names = {"input": Names.input_file(case), "state_dict": Names.artifact_file(case, "state_dict"),
             **{f"expected.{b}": Names.expected_file(case, b) for b in out.entry.backends}}
    for part, name in names.items():
        data = out.files.get(name)
        if data is None:
            continue
        if data in seen:
            parts[part] = f"same as {seen[data]}"
            continue
        seen[data] = part
        with quiet():
            try:
                parts[part] = load_weights(data, trusted=True)  # our own bytes, made a moment ago
            except Exception as exc:
                parts[part] = f"not described: {one_line(exc)}"
    return summary_text(case.id, parts).encode()


def _make_artifacts(out: Generated, example, reference, stage: _Stages) -> None:
    """Each artifact kind of the case, saved under the current backend and checked by reloading it."""
    case, entry = out.case, out.entry
    for kind in case.artifacts:
        unable = flows.artifact_problem(case, kind)
        if unable:
            entry.skipped_artifacts[kind] = f"torch {torch_release()}: {unable}"
            continue
        if stage.crashed("artifact", kind):
            entry.skipped_artifacts[kind] = f"torch {torch_release()} crashes saving or reloading it: {stage.cause}"
            continue
        try:
            data = reproducible(kind, KINDS[kind].save(case, flows.build(case), example))
        except Exception as exc:  # recorded, replayed as skip
            entry.skipped_artifacts[kind] = f"torch {torch_release()} cannot make it: {one_line(exc)}"
            continue
        problem = _round_trip_problem(case, kind, data, example, reference)
        if problem:
            entry.skipped_artifacts[kind] = f"torch {torch_release()} {problem}"
            continue
        out.files[Names.artifact_file(case, kind)] = data
        if kind in CODE_CARRYING:  # the code it carries, as text a reviewer sees in a diff
            out.files[Names.sidecar_file(case, kind)] = embedded_code(kind, data).encode()
        entry.artifacts.append(kind)
    if stacks.of_case(case).graph_targets:
        model = flows.runnable(case, flows.build(case), example)
        # sorted: a pickled set follows the process's string-hash order, and the bytes would
        # change on every run; replay compares it as a set either way
        out.files[Names.get_attr_file(case)] = save_bytes(sorted(flows.get_attr_targets(model)))


def _make_expected(out: Generated, backend: str, example, stage: _Stages) -> None:
    """The backend's expected output, from a fresh build, if the backend runs it reproducibly."""
    from harness.compare import compare

    case, entry = out.case, out.entry
    if stage.crashed("expected", backend):
        entry.backends[backend] = f"{backend} crashed running it on the machine that made the golden: {stage.cause}"
        return
    with quiet() as caught, using(backend):
        try:
            model = flows.runnable(case, flows.build(case), example)
            result = case.forward(model, example)
            # A golden needs a reproducible output: more calls of the model, and a model
            # built afresh, must all agree (qnnpack's ConvTranspose3d, for one, does not).
            repeats = [case.forward(model, example) for _ in range(REPEATS - 1)]
            repeats.append(case.forward(flows.runnable(case, flows.build(case), example), example))
        except Exception as exc:
            entry.backends[backend] = f"{backend} cannot run it: {one_line(exc)}"
            return
    unstable = next((d for d in (compare(result, r) for r in repeats) if not d.ok), None) \
        if case.check_numerics else None
    if unstable is not None:
        entry.backends[backend] = (f"{backend} is not reproducible: {REPEATS + 1} runs of the same "
                                   f"model disagree ({unstable.message})")
        return
    out.files[Names.expected_file(case, backend)] = save_bytes(result)
    entry.backends[backend] = "ok"
    noted = runtime_warnings(caught)
    if noted:
        entry.warnings[backend] = noted
    _check_artifacts_run(out, backend, example, stage)


def _check_artifacts_run(out: Generated, backend: str, example, stage: _Stages) -> None:
    """Each artifact file, made under the first backend, loaded and run under ``backend``: what a
    backend cannot run is recorded (a skip with its reason), not written as a golden that fails."""
    case, entry = out.case, out.entry
    if backend == "any":
        return
    for kind in entry.artifacts:
        if stage.crashed("check", kind, backend):
            entry.unrunnable.setdefault(kind, {})[backend] = (f"{backend} crashed running the {kind} file on "
                                                              f"the machine that made the golden: {stage.cause}")
            continue
        with quiet(), using(backend):
            try:
                case.forward(KINDS[kind].load(case, out.files[Names.artifact_file(case, kind)], example,
                                              trusted=True), example)
            except Exception as exc:
                entry.unrunnable.setdefault(kind, {})[backend] = f"{backend} cannot run the {kind} file: {one_line(exc)}"


def _round_trip_problem(case: Case, kind: str, data: bytes, example, reference) -> str | None:
    """Load a just-made artifact, run it, and compare with the model it was made from.

    A golden that disagrees with its own model the moment it is made can never pass; it
    is recorded as skipped with the reason instead (a legacy-format state_dict of a
    dynamic LSTM, for one, reloads with wrong weights).
    """
    from harness.compare import compare

    try:
        # our own bytes, made a moment ago: loaded without the weights_only restrictions, which
        # older torch versions cannot lift for packed parameters
        obtained = case.forward(KINDS[kind].load(case, data, example, trusted=True), example)
    except Exception as exc:
        return f"saves it but cannot run it after loading: {one_line(exc)}"
    if case.check_numerics:
        diff = compare(reference, obtained, case.tolerance)
        if not diff.ok:
            return f"saves it but the reloaded {kind} disagrees with the model: {diff.message}"
    return None


def generate_isolated(fixtures, case: Case, backends: list[str] | None = None) -> Generated:
    """``generate_case`` in a child of its own (harness.sandbox) that loads the catalog from
    ``fixtures``. Crash-safe: a stage that kills the child is recorded with its cause and a new
    child makes the rest; a child that keeps dying outside any stage leaves the case skipped. Of
    its own: TorchScript numbers the types it compiles per process (``___torch_mangle_N``), so a
    golden made after others would carry other numbers; made alone it carries its own, and
    regenerating gives the same bytes in any order."""
    from harness.sandbox import Sandbox, run_to_end

    out = Generated(case)

    def take(made):
        out.entry, out.files = made

    payload = {"fixtures": str(fixtures), "case": case.id, "backends": backends}
    box = Sandbox()
    try:
        given_up = run_to_end(box, "harness.making.generate:_generate_in_child", payload, take)
    finally:
        box.close()
    if given_up:
        out.entry, out.files = CaseEntry(description=case.description, flow=case.flow, source=case.source), {}
        out.entry.skipped = f"torch {torch_release()} cannot generate it here: {given_up}"
    return out


def _generate_in_child(request: dict, at):
    """In a harness.sandbox child: one case's (manifest entry, files)."""
    from harness.catalog import load_catalog

    case = next(c for c in load_catalog(Path(request["fixtures"])) if c.id == request["case"])
    made = generate_case(case, request["backends"], request["crashed"], at)
    yield made.entry, made.files


def command_line() -> str:
    """The command as the user typed it (an isolated environment's run is handed it)."""
    if os.environ.get("BC_HARNESS_COMMAND"):
        return os.environ["BC_HARNESS_COMMAND"]
    return " ".join(shlex.quote(a) for a in [os.path.basename(sys.argv[0]), *sys.argv[1:]])


def generate_fresh(case: Case, backends: list[str] | None = None) -> Generated:
    """``generate_case`` of a case whose model comes from the caller's code (the plugin's golden
    fixture), in a child of its own, so that what TorchScript numbers per process
    (``___torch_mangle_N``) does not depend on the tests that ran before: the model is built here
    and handed over pickled. A model that does not pickle (a class defined inside a function) is
    made here, in this process."""
    from harness.sandbox import Crashed, Sandbox

    with quiet():  # what building the model warns is recorded with its goldens, not printed
        built = case.build()
    try:
        handed = pickle.dumps((dataclasses.replace(case, build=None), built))
    except Exception:
        return generate_case(case, backends)
    box = Sandbox()
    try:
        entry, files = box.call(_generate_handed, handed, backends)
    except Crashed as exc:
        out = Generated(case, entry=CaseEntry(description=case.description, flow=case.flow, source=case.source))
        out.entry.skipped = f"torch {torch_release()} crashes generating it: {exc.cause}"
        return out
    finally:
        box.close()
    return Generated(case, files, entry)


def _generate_handed(handed: bytes, backends):
    """In a fresh child: the goldens of a case whose built model came pickled."""
    case, built = pickle.loads(handed)
    made = generate_case(dataclasses.replace(case, build=lambda: copy.deepcopy(built)), backends)
    return made.entry, made.files
