"""Power of the suite: known-bad implementations it must reject, and a mutation run."""
