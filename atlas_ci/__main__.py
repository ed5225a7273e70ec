"""``python -m atlas_ci``: the same as the ``atlas-ci`` command."""

from atlas_ci.cli import entry

entry()
