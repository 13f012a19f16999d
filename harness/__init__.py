"""Backward-compatibility regression harness for quantized PyTorch models.

Importing this package does not import torch; the modules that need it import it
themselves, so that the pytest plugin costs nothing in unrelated runs.
"""

__version__ = "0.1.0"
