"""``python -m wdjax``: the command line (see wdjax.cli)."""

import sys

from wdjax.cli import main

sys.exit(main())
