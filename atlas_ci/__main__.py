"""``python -m atlas_ci``: the same as the ``atlas-ci`` command."""

import sys

from atlas_ci.cli import main

sys.exit(main())
