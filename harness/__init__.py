"""Backward-compatibility regression harness for quantized PyTorch models.

Importing this package does not import torch; the modules that need it import it
themselves, so that the pytest plugin costs nothing in unrelated runs.
"""

__version__ = "0.1.0"


import warnings as _warnings

# torch's CPU wheels do not require numpy, and without it every process that imports torch
# warns "Failed to initialize NumPy". Nothing here uses numpy: that one warning is noise.
_warnings.filterwarnings("ignore", message="Failed to initialize NumPy", category=UserWarning)

