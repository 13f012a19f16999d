"""The torchao stack's release axis: which torchao release pairs with each torch release. Imports
no torch (read before torch is installed).

torchao before 0.17 pairs with exactly one torch release (its C++ kernels are built against it and
silently skipped on any other); 0.17 and later admit torch >= 2.11.
"""

from __future__ import annotations

from packaging.version import Version

#: torch minor -> the torchao release that pairs with it: the one built against it (torchao's own
#: compatibility table, torchao/__init__.py), else the newest whose binaries admit it. 0.18.0
#: admits torch >= 2.11 and is the newest release on the registry for 2.13, 2.14 and 2.15. Before
#: 2.10 (where PT2E moved into torchao) only the torchao flow's cases install it (its goldens and
#: their replay): 0.6.1 (torch 2.4), 0.12.0 (torch 2.8).
TORCHAO = {"2.4": "0.6.1", "2.8": "0.12.0", "2.10": "0.16.0", "2.11": "0.17.0", "2.12": "0.17.0",
           "2.13": "0.18.0", "2.14": "0.18.0", "2.15": "0.18.0"}


#: the first torchao release with torchao.prototype.safetensors, and what it needs beside it
SAFETENSORS_SINCE, SAFETENSORS_PACKAGES = "0.14.0", ("safetensors>=0.4", "numpy>=1.26")


def torchao_for(version: str) -> str | None:
    """The torchao release to install beside torch ``version`` (None: none pairs with it, or a
    version that is no release)."""
    v = Version(version)
    return TORCHAO.get(f"{v.major}.{v.minor}")


#: the first release built against torch's stable ABI: it runs with every torch from ABI_TORCH on
ABI_STABLE, ABI_TORCH = "0.17.0", "2.11"

#: torchao release -> the torch release its C++ kernels were built against, before ABI_STABLE: the
#: torch a bisection installs it beside. 0.13.0 to 0.16.0 from torchao 0.16.0's table
#: (``torchao_pytorch_compatible_versions``, exact versions; 0.14.0's own check names only torch
#: 2.9.0.dev, so it skips its kernels beside every release, 2.8.0 included); before 0.13 torchao
#: checked nothing, and each release is paired with the stable torch of its month.
BUILT_AGAINST = {"0.6.1": "2.4.1", "0.7.0": "2.5.1", "0.8.0": "2.5.1", "0.9.0": "2.6.0", "0.10.0": "2.6.0",
                 "0.11.0": "2.7.1", "0.12.0": "2.8.0", "0.13.0": "2.8.0", "0.14.0": "2.8.0", "0.14.1": "2.9.0",
                 "0.15.0": "2.9.1", "0.16.0": "2.10.0"}


def pairs(torchao: str, torch: str) -> bool:
    """Whether torchao release ``torchao`` loads its C++ kernels beside torch ``torch``: from 0.17 on,
    any torch >= 2.11; before, the one torch it was built against (BUILT_AGAINST)."""
    if Version(torchao) >= Version(ABI_STABLE):
        return Version(Version(torch).public) >= Version(ABI_TORCH)
    return BUILT_AGAINST.get(torchao) == str(Version(torch).public)


def torch_for(torchao: str, running: str) -> str | None:
    """The torch release to install torchao ``torchao`` beside, in a bisection run on torch
    ``running``: ``running`` where the two pair, else the one it was built against (None: unknown)."""
    if pairs(torchao, running):
        return str(Version(running).public)
    return None if Version(torchao) >= Version(ABI_STABLE) else BUILT_AGAINST.get(torchao)


def packages(torch: str) -> list[str]:
    """torchao pinned to the release that pairs with torch ``torch``; the nightly's for "nightly"."""
    if torch == "nightly":
        return ["torchao"]
    pair = torchao_for(torch)
    if not pair:
        return []
    # its safetensors checkpoints (0.14 on) need the safetensors package, and numpy, which
    # torchao.prototype.safetensors imports
    return [f"torchao=={pair}", *(SAFETENSORS_PACKAGES if Version(pair) >= Version(SAFETENSORS_SINCE) else ())]
