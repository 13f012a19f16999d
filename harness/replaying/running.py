"""Running: a loaded artifact (or today's build of the case) under one backend, and the reference
kernels' output for a golden's model, each with what torch said while it ran."""

from __future__ import annotations

from contextlib import contextmanager

import torch

from harness import reference, stacks
from harness.catalog import Case
from harness.backends import using
from harness.goldens.safeload import CannotLoadSafely
from harness.making import flows
from harness.notices import one_line, quiet, runtime_warnings
from harness.replaying.loading import REFERENCE_SOURCES, CaseFiles, Reader, error_text, load, runtime_problem
from harness.goldens.vetting import TORCHSCRIPT_KINDS
from harness.verdicts import Verdict


class Failed(Exception):
    """A run that gave no output: ``verdict`` and the reason in the message."""

    def __init__(self, verdict: str, message: str, warnings: list[str] | None = None):
        super().__init__(message)
        self.verdict = verdict
        #: what loading and running raised before it failed (a notice just before a break is the radar's signal)
        self.warnings = warnings or []


@contextmanager
def threads_for(backend: str, onednn_threads: int | None):
    """Options.onednn_threads in force while running on ``backend``."""
    if onednn_threads is None or backend != "onednn":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(onednn_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_artifact(layout, case: Case, kind: str, data: bytes, backend: str, files: CaseFiles, options):
    """(model, output or None where the case checks loading only, warnings): the artifact loaded
    and run under ``backend``; raises Failed, with the warnings raised before the failure."""
    failed = None
    with quiet() as caught, using(backend), threads_for(backend, options.onednn_threads):
        try:
            model = load(case, kind, data, files)
        except CannotLoadSafely as exc:
            failed = Failed(Verdict.SKIP, str(exc))
        except Exception as exc:
            failed = Failed(Verdict.LOAD_ERROR, error_text(exc, options.verbose))
        if failed is None and not case.check_numerics:
            return model, None, []
        if failed is None:
            try:
                obtained = layout.run(case, model, files.example)
            except Exception as exc:
                failed = Failed(Verdict.LOAD_ERROR, error_text(exc, options.verbose, "forward failed: "))
    if failed is not None:
        failed.warnings = runtime_warnings(caught)
        raise failed
    return model, obtained, runtime_warnings(caught)


def run_today(case: Case, backend: str, example, options):
    """(output, warnings) of the model as ``case.build`` makes it today, under ``backend``; raises Failed."""
    with quiet() as caught, using(backend), threads_for(backend, options.onednn_threads):
        try:
            obtained = case.forward(flows.runnable(case, flows.build(case), example), example)
        except Exception as exc:
            raise Failed(Verdict.LOAD_ERROR, error_text(exc, options.verbose, "building or running the model failed: ")) \
                from None
    return obtained, runtime_warnings(caught)


def today_state(case: Case, example) -> dict:
    """Today's model's state_dict, built under the current backend."""
    return dict(flows.runnable(case, flows.build(case), example).state_dict())


def reference_output(layout, reader: Reader, case: Case, files: CaseFiles, have: list, loaded=None):
    """The reference kernels' output for this golden's weights and input (once per case), or why
    there is none. The model comes from the golden's first artifact in ``REFERENCE_SOURCES`` order
    (a state_dict loaded into today's module tree, a package's model quantized again today, an
    export, else the TorchScript file itself) and runs with every quantized module and call done by
    harness.reference."""
    if files.reference is not None:
        return files.reference
    sources = [k for k in REFERENCE_SOURCES if k in case.artifacts]
    if not layout.reference or not sources:
        files.reference = "the reference runs the cases of our layout, from a golden's model"
        return files.reference
    for source in sources:  # the first that loads here (a state_dict needs its classes; a script does not)
        unable = runtime_problem(case, source)  # asked first: no file read for a model not buildable here
        data = None if unable else reader.artifact(case, source, files)
        if unable or isinstance(data, tuple):
            if files.reference is None:
                files.reference = f"{source}: {unable or data[1]}"
            continue
        backend_name = "fbgemm" if "fbgemm" in have else None
        try:
            with quiet(), using(backend_name):
                model = _reusable(source, backend_name, loaded) or load(case, source, data, files)
                files.reference = reference.reference_output(stacks.of_case(case).reference_model(model),
                                                             files.example, case.forward)
        except reference.Unsupported as exc:
            files.reference = str(exc)
        except Exception as exc:
            files.reference = f"reference failed: {one_line(exc)}"
        break
    return files.reference


def _reusable(source: str, backend_name, loaded):
    """The model this result just loaded and ran, where it is what the reference would load: a
    TorchScript file (run as it is, under a dispatch mode that leaves it unchanged) loaded under
    the reference's backend. A module tree is not reused: the reference rewrites it."""
    if loaded is None or source not in TORCHSCRIPT_KINDS:
        return None
    kind, backend, model = loaded
    return model if (kind, backend) == (source, backend_name) else None
