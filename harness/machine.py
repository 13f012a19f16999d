"""The machine behind a golden set and behind a replay: what decides how float outputs round.

A fingerprint is a plain dict, recorded in each manifest (``fingerprint``) by the machine that
made the set and read again at replay:

- ``cpu_vendor``, ``cpu_model``: /proc/cpuinfo's vendor_id and model name;
- ``isa``: the CPU flags that select other kernels (avx*, fma, f16c, avx512*, amx*, *vnni*);
- ``cpu_capability``: the kernels torch dispatches to (AVX512, AVX2, DEFAULT; follows
  ATEN_CPU_CAPABILITY);
- ``blas``, ``onednn``: the BLAS and oneDNN builds torch reports.

Manifests written before fingerprints existed hold only ``cpu_capability`` and ``avx512_vnni``;
they read as a partial fingerprint whose machine is "not recorded" (so does a malformed one).
"""

from __future__ import annotations

import functools
import os
import platform
import re

FIELDS = ("cpu_vendor", "cpu_model", "isa", "cpu_capability", "blas", "onednn")
_LABELS = {"cpu_vendor": "vendor", "cpu_model": "CPU", "isa": "isa", "cpu_capability": "cpu_capability",
           "blas": "BLAS", "onednn": "oneDNN"}
#: CPU flags that change which kernels run, and so how floats round
_ISA = re.compile(r"^(avx\w*|fma|f16c|amx\w*|\w*vnni\w*)$")


def _cpuinfo() -> dict:
    """vendor, model name and flags of the first processor in /proc/cpuinfo (empty elsewhere)."""
    found: dict = {}
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("vendor_id", "model name", "flags") and key not in found:
                    found[key] = value.strip()
                if len(found) == 3:
                    break
    except OSError:
        pass
    return found


def _libraries(config: str) -> dict:
    """BLAS and oneDNN as torch.__config__.show() reports them; a cap on the instructions oneDNN
    may use (ONEDNN_MAX_CPU_ISA, DNNL_MAX_CPU_ISA) chooses other kernels, so it is part of it."""
    blas = re.search(r"BLAS_INFO=(\w+)", config)
    mkl = re.search(r"Math Kernel Library Version ([\d.]+)", config)
    onednn = re.search(r"(?:MKL-DNN|oneDNN) v([\d.]+)", config)
    name = blas.group(1) if blas else "unknown"
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    onednn_text = onednn.group(1) if onednn else "none"
    if cap and onednn:
        onednn_text += f" (max ISA {cap})"
    return {"blas": f"{name} {mkl.group(1)}" if name == "mkl" and mkl else name, "onednn": onednn_text}


@functools.cache
def current() -> dict:
    """This process's fingerprint (ATEN_CPU_CAPABILITY is read by torch at start-up, so it is fixed)."""
    import torch

    from harness.compat import cpu_capability

    info = _cpuinfo()
    flags = sorted(f for f in info.get("flags", "").split() if _ISA.match(f))
    return {"cpu_vendor": info.get("vendor_id", platform.machine() or "unknown"),
            "cpu_model": info.get("model name", platform.processor() or "unknown"),
            "isa": flags, "cpu_capability": cpu_capability(), **_libraries(torch.__config__.show())}


def of_manifest(manifest) -> dict:
    """The fingerprint a manifest (harness.goldens.manifest.Manifest, or None) records; a partial one for
    manifests that predate fingerprints, or whose fingerprint is malformed."""
    if manifest is None:
        return {"cpu_capability": None}
    if manifest.fingerprint is not None:
        return {k: manifest.fingerprint.get(k) for k in FIELDS}
    partial = {"cpu_capability": manifest.cpu_capability}
    if manifest.avx512_vnni is not None:
        partial["avx512_vnni"] = manifest.avx512_vnni
    return partial


def well_formed(value) -> dict | None:
    """``value`` if it is a fingerprint as this module writes them (read from an untrusted manifest), else None."""
    if not isinstance(value, dict):
        return None
    texts = all(isinstance(value.get(k), str) for k in ("cpu_vendor", "cpu_model", "cpu_capability"))
    isa = value.get("isa")
    return value if texts and isinstance(isa, list) and all(isinstance(f, str) for f in isa) else None


def of_case(manifest, entry) -> dict:
    """The fingerprint of the machine that made one case: its entry's where it records one (a
    whole fingerprint, or the partial one of a set made before fingerprints), else the set's."""
    own = getattr(entry, "machine", None)
    if well_formed(own) is not None:
        return {k: own.get(k) for k in FIELDS}
    if isinstance(own, dict) and isinstance(own.get("cpu_capability"), str) and "cpu_model" not in own:
        partial = {"cpu_capability": own["cpu_capability"]}
        if isinstance(own.get("avx512_vnni"), bool):
            partial["avx512_vnni"] = own["avx512_vnni"]
        return partial
    return of_manifest(manifest)


def recorded(fingerprint: dict) -> bool:
    return bool(fingerprint.get("cpu_model"))


def _isa_text(flags) -> str:
    """avx512bw avx512f avx512_vnni ... as avx512[bw f vnni ...]: a line a person can read."""
    groups: dict[str, list[str]] = {}
    for flag in flags or ():
        m = re.match(r"^(avx512|amx)_?(.*)$", flag)
        prefix, rest = (m.group(1), m.group(2)) if m else (flag, "")
        groups.setdefault(prefix, []).append(rest)
    return " ".join(p if parts == [""] else f"{p}[{' '.join(sorted(x for x in parts if x))}]"
                    for p, parts in groups.items())


def describe(fingerprint: dict) -> str:
    """One line: the CPU, the kernels torch dispatches to, its ISA and its libraries."""
    if not recorded(fingerprint):
        vnni = fingerprint.get("avx512_vnni")
        extra = "" if vnni is None else f", AVX512-VNNI {'yes' if vnni else 'no'}"
        return f"machine not recorded (cpu_capability {fingerprint.get('cpu_capability') or '?'}{extra})"
    return (f"{fingerprint['cpu_vendor']} {fingerprint['cpu_model']}; {fingerprint['cpu_capability']} kernels; "
            f"{_isa_text(fingerprint.get('isa'))}; BLAS {fingerprint.get('blas')}; oneDNN {fingerprint.get('onednn')}")


def differences(golden: dict, here: dict) -> list[str]:
    """What differs between the golden's machine and this one, field by field (empty: the same)."""
    if not recorded(golden):
        out = ["golden's machine not recorded"]
        if golden.get("cpu_capability") and golden["cpu_capability"] != here.get("cpu_capability"):
            out.append(f"cpu_capability {golden['cpu_capability']} -> {here.get('cpu_capability')}")
        vnni_here = "avx512_vnni" in (here.get("isa") or ())
        if golden.get("avx512_vnni") is not None and golden["avx512_vnni"] != vnni_here:
            out.append(f"avx512_vnni {golden['avx512_vnni']} -> {vnni_here}")
        return out
    out = []
    for key in FIELDS:
        before, after = golden.get(key), here.get(key)
        if before == after:
            continue
        if key == "isa":
            gone, new = sorted(set(before or ()) - set(after or ())), sorted(set(after or ()) - set(before or ()))
            out.append("isa " + " ".join([*(f"-{f}" for f in gone), *(f"+{f}" for f in new)]))
        else:
            out.append(f"{_LABELS[key]} {before} -> {after}")
    return out


def pair(golden: dict, here: dict) -> tuple[str, str] | None:
    """(golden machine, this machine) as two lines, or None when they are the same machine."""
    if not differences(golden, here):
        return None
    return describe(golden), describe(here)
