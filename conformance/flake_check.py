"""``python -m conformance.flake_check``: the flake check (implementation in :mod:`fixtures.flake_check`)."""

from fixtures.flake_check import main

if __name__ == "__main__":
    raise SystemExit(main())
