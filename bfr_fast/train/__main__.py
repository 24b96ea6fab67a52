"""``python -m bfr_fast.train``."""

import sys

from bfr_fast.train.cli import main

sys.exit(main())
