"""Serve a load-test target from its own process.

Why: Locust runs on gevent, which takes over ``SIGCHLD`` and subprocess
handling, so the asyncio ``AdapterProcess`` is driven from a plain Python
child instead.  The child prints one JSON line when the worker serves
(``{"ready": true, "discovery_dir": ...}``) and stops the worker (bounded,
by PID) when its stdin closes or it gets SIGTERM/SIGINT.

Also handy on its own, to put a worker up for ``locust --rp-discovery DIR``
or a distributed Locust run::

    python -m loadtests.target_process --impl dynamo --plane tcp
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loadtests.targets import TargetOptions

PROJECT_ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0


async def _serve(options: TargetOptions, log_dir: str | None) -> int:
    from loadtests.targets import serve_target

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with serve_target(options, log_dir) as target:
            _say({"ready": True, **target.to_json()})
            reader = asyncio.StreamReader()
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
            stdin_closed = asyncio.ensure_future(reader.read())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({stdin_closed, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stdin_closed.cancel()
            stopped.cancel()
    except Exception as exc:
        _say({"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    return 0


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impl", default="reference", help="reference, dynamo, or a name for --impl-cmd")
    parser.add_argument("--impl-cmd", default=None, help="command that starts the implementation's adapter")
    parser.add_argument("--impl-python", default=None, help="interpreter for a built-in adapter")
    parser.add_argument("--plane", default="tcp", help="request plane: tcp, http or nats")
    parser.add_argument("--nats-url", default=None, help="existing NATS server (default: start one for --plane nats)")
    parser.add_argument("--log-dir", default=None, help="keep the adapter's discovery directory and log here")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="extra environment for the adapter (repeat)"
    )
    args = parser.parse_args(argv)
    # Here, not at the top: the child alone starts a worker, and ``loadtests.targets`` imports the suite's adapter
    # launcher and NATS fixture (pytest among them), which every Locust process would otherwise import for nothing.
    from loadtests.targets import TargetOptions

    env = []
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--env takes NAME=VALUE, got {item!r}")
        env.append((name, value))
    options = TargetOptions(
        impl=args.impl,
        plane=args.plane,
        impl_cmd=args.impl_cmd,
        impl_python=args.impl_python,
        nats_url=args.nats_url,
        env=tuple(env),
    )
    return asyncio.run(_serve(options, args.log_dir))


class TargetProcess:
    """Handle on a ``python -m loadtests.target_process`` child (usable under gevent)."""

    def __init__(self, arguments: list[str], log_path: str | None = None) -> None:
        self.arguments = arguments
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    def start(self, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
        """Start the child and wait (bounded) for its ready line; raise with its error otherwise."""
        python_path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
        with contextlib.ExitStack() as files:
            stderr = files.enter_context(open(self.log_path, "ab")) if self.log_path else subprocess.DEVNULL
            self.process = subprocess.Popen(
                [sys.executable, "-m", "loadtests.target_process", *self.arguments],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=PROJECT_ROOT,
                env={**os.environ, "PYTHONPATH": python_path},
                start_new_session=True,
            )
        line = self._read_line(timeout)
        try:
            self.info = json.loads(line) if line else {"ready": False, "error": f"no ready line within {timeout}s"}
        except ValueError:
            self.info = {"ready": False, "error": f"unexpected output {line[:200]!r}"}
        if not self.info.get("ready"):
            self.stop()
            raise RuntimeError(f"load-test target did not start: {self.info.get('error')}")
        return self.info

    def _read_line(self, timeout: float) -> str:
        """One line from the child; ``select`` is cooperative under gevent and bounded everywhere."""
        assert self.process is not None and self.process.stdout is not None
        readable, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not readable:
            return ""
        return self.process.stdout.readline().decode(errors="replace").strip()

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Close stdin (the child stops its worker), then SIGTERM, then SIGKILL, by PID."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None and process.stdin is not None:
            try:
                process.stdin.close()
            except OSError:
                pass
        for sig, wait in ((None, timeout * 0.7), (signal.SIGTERM, timeout * 0.2), (signal.SIGKILL, timeout * 0.1)):
            if sig is not None and process.poll() is None:
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    break
            try:
                return process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        return process.poll()


if __name__ == "__main__":
    sys.exit(main())
