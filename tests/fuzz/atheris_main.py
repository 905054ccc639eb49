"""Coverage-guided fuzzing of one target with atheris (libFuzzer).

    python -m tests.fuzz.atheris_main <target> [libFuzzer flags, e.g. -runs=10000 -max_total_time=60]

The target's seeds (``corpus.py``) are handed to libFuzzer with ``-seed_inputs`` unless
the command line names a corpus directory.  Only the module that defines the chosen target,
and what it imports, is imported under instrumentation: the code that target exercises gets
coverage feedback, and the other targets' code (the HTTP stacks above all) is not instrumented
for nothing (that took 3 s of a 4.6 s run of 2,000 inputs).  ``canary`` is a target that fails
on purpose (on any input starting with ``0x42``): it shows that a finding makes the run fail.
"""

from __future__ import annotations

import importlib
import logging
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

INSTRUMENTED = ["reference_impl", "h11", "h2", "hpack", "hyperframe", "tests.fuzz"]
# Where each target is defined (as ``fuzz_<target>``; tests/fuzz/targets.py lists the same functions).
TARGET_MODULES = {
    "two_part": "tests.fuzz.codec_targets",
    "request_frame": "tests.fuzz.codec_targets",
    "tcp_ack": "tests.fuzz.codec_targets",
    "caller_stream": "tests.fuzz.stream_targets",
    "worker_stream": "tests.fuzz.stream_targets",
    "messages": "tests.fuzz.stream_targets",
    "http1": "tests.fuzz.http_targets",
    "http2": "tests.fuzz.http_targets",
}
CANARY = "canary"
CANARY_BYTE = 0x42


def canary(data: bytes) -> None:
    if data[:1] == bytes([CANARY_BYTE]):
        raise RuntimeError("canary: the fuzzer found the planted failure")


def load_target(name: str) -> tuple[Callable[[bytes], None], list[bytes]]:
    if name == CANARY:
        return canary, [b"\x00"]
    if name not in TARGET_MODULES:
        raise SystemExit(f"unknown target {name!r}; known: {', '.join([*TARGET_MODULES, CANARY])}")
    with atheris.instrument_imports(include=INSTRUMENTED):
        module = importlib.import_module(TARGET_MODULES[name])
    # After the target's module: what only the seeds need (h2's client side, say) stays uninstrumented.
    from tests.fuzz.corpus import SEEDS

    target: Callable[[bytes], None] = getattr(module, f"fuzz_{name}")
    return target, SEEDS[name]()


def write_seeds(name: str, seeds: list[bytes]) -> str:
    """Seed files in a per-target directory that is rewritten on every run (libFuzzer never exits into Python)."""
    directory = Path(tempfile.gettempdir()) / "rp-fuzz-seeds" / name
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.iterdir():
        old.unlink()
    paths = []
    for index, seed in enumerate(seeds):
        path = directory / f"seed-{index:03d}"
        path.write_bytes(seed)
        paths.append(str(path))
    return ",".join(paths)


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1].startswith("-"):
        raise SystemExit(__doc__)
    name, flags = argv[1], argv[2:]
    # The reference logs every rejected connection; a fuzzer produces millions of them.
    logging.basicConfig(handlers=[logging.NullHandler()], force=True)
    target, seeds = load_target(name)
    if not any(not flag.startswith("-") for flag in flags):
        flags.append(f"-seed_inputs={write_seeds(name, seeds)}")
    atheris.Setup([argv[0], *flags], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
