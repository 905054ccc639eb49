"""``python -m conformance``: the same as ``rp-conformance``."""

from conformance.cli import main

raise SystemExit(main())
