"""``python -m conformance.matrix``: the compatibility matrix (implementation in :mod:`fixtures.matrix.cli`)."""

from fixtures.matrix.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
