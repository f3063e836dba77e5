"""``python -m wdjax``: the command line (see wdjax.run.cli)."""

import sys

from wdjax.run.cli import main

sys.exit(main())
