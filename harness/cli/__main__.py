"""``python -m harness.cli``: bc-harness without its console script (tox's replay environment)."""

import sys

from harness.cli import main

sys.exit(main())
