"""``python -m conformance.benchmark``: the suite's timing figures (implementation in :mod:`fixtures.benchmark`)."""

from fixtures.benchmark import main

if __name__ == "__main__":
    raise SystemExit(main())
