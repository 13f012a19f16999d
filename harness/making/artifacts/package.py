"""package artifact: the float model in a torch.package archive; loading re-runs the FX transform.

This is PyTorch's own package BC test. A converted (quantized) FX GraphModule cannot be the
packaged object: torch 2.13 unpickles it from a package with an empty module dict
(AttributeError: '_CodeOnlyModule' object has no attribute '_modules').
"""

from __future__ import annotations

import io

from harness.making import flows


def save(case, built, example) -> bytes:
    import torch

    buffer = io.BytesIO()
    with torch.package.PackageExporter(buffer) as exporter:
        # The model's own module travels inside the archive, as in PyTorch's test.
        exporter.intern(type(built).__module__)
        # a catalog fixture file imports the harness, which replay has installed anyway
        exporter.extern(["harness", "harness.**"])
        exporter.save_pickle(flows.PACKAGE_NAME, flows.PACKAGE_RESOURCE, built)
    return buffer.getvalue()


def load(case, data: bytes, example, trusted: bool = False):
    import torch

    importer = torch.package.PackageImporter(io.BytesIO(data))
    module = importer.load_pickle(flows.PACKAGE_NAME, flows.PACKAGE_RESOURCE)
    return flows.requantized(case, module, example)
