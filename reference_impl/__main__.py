"""``python -m reference_impl``: the command line (see :mod:`reference_impl.cli`)."""

from reference_impl.cli import entry_point

entry_point()
