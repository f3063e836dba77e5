"""``python -m wdjax``: the command line (see wdjax.cli)."""

import sys

from wdjax.run.cli import main

sys.exit(main())
