"""Command line: put up a worker, make a call, list instances, without writing Python.

    python -m reference_impl serve --standard --plane tcp --discovery /tmp/kv
    python -m reference_impl serve --handler mypkg.handlers:generate --endpoint generate
    python -m reference_impl call demo.backend.generate '{"n": 3}' --discovery /tmp/kv
    python -m reference_impl discover --discovery /tmp/kv

(also installed as ``rp-reference``).  Settings come from the same
environment variables as the library (Dynamo's ``DYN_*``, ``NATS_SERVER``);
options override them.  ``call`` prints each item as one JSON line; the
first Ctrl-C (SIGINT) sends ``stop`` and prints what the worker still sends,
a second one sends ``kill``.  Every failure is one line on stderr and a
non-zero exit: 2 for bad usage or configuration, 1 for a failed call, 130
after an interrupt.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from reference_impl.caller import Caller, CallerConfig, ResponseStream
from reference_impl.config import ConfigError
from reference_impl.discovery.file_store import FileDiscovery
from reference_impl.errors import CallError
from reference_impl.planes import PLANES
from reference_impl.routing import EndpointId
from reference_impl.worker import Handler, Worker, WorkerConfig

PROG = "rp-reference"
STANDARD_ENDPOINTS = "fixtures.adapters.standard_endpoints:STANDARD_ENDPOINTS"
DEFAULT_DISCOVERY_WAIT = 10.0  # call: how long to wait for an instance to appear in discovery
DEFAULT_CALL_TIMEOUT = 0.0  # call: whole-call deadline in seconds; 0 waits as long as the stream runs
EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class UsageError(Exception):
    """Bad arguments: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``--help`` shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see {self.prog} --help)\n")


# --- serve -----------------------------------------------------------------------------------


def load_handlers(spec: str, endpoint: str) -> dict[str, Handler]:
    """``module:function`` (served as ``endpoint``) or ``module:mapping`` (name -> handler)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"handler {spec!r} is not of the form module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import handler module {module_name!r}: {exc}") from None
    target = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise UsageError(f"module {module_name!r} has no {attribute!r}")
        target = getattr(target, part)
    if isinstance(target, Mapping):
        handlers = dict(target)
    elif callable(target):
        handlers = {endpoint: target}
    else:
        raise UsageError(f"{spec!r} is neither a handler nor a mapping of endpoint names to handlers")
    bad = [name for name, handler in handlers.items() if not callable(handler)]
    if bad:
        raise UsageError(f"{spec!r}: not callable: {', '.join(map(str, bad))}")
    return handlers


def _worker_environ(args: argparse.Namespace) -> dict[str, str]:
    """The environment with the options laid over it, so both are validated (and named) the same way."""
    environ = dict(os.environ)
    for option, var in (
        ("plane", "DYN_REQUEST_PLANE"),
        ("host", "DYN_TCP_RPC_HOST"),
        ("port", "DYN_TCP_RPC_PORT"),
        ("codec", "DYN_REQUEST_PLANE_CODEC"),
        ("nats_url", "NATS_SERVER"),
        ("http_port", "DYN_HTTP_RPC_PORT"),
    ):
        value = getattr(args, option, None)
        if value is not None:
            environ[var] = str(value)
    return environ


def _discovery(args: argparse.Namespace) -> FileDiscovery:
    return FileDiscovery(args.discovery) if args.discovery else FileDiscovery()


async def serve(args: argparse.Namespace) -> int:
    handlers = load_handlers(args.handler or STANDARD_ENDPOINTS, args.endpoint)
    config = WorkerConfig.from_env(_worker_environ(args))
    worker = Worker(args.namespace, args.component, discovery=_discovery(args), config=config)
    for name, handler in handlers.items():
        worker.serve(name, handler)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await worker.start()
    _print_json(
        {
            "event": "serving",
            "instance_id": f"{worker.instance_id:x}",
            "plane": worker.plane,
            "discovery": str(worker.discovery.root),
            "endpoints": {str(record.endpoint_id): record.transport_address for record in worker.records},
        }
    )
    await stopping.wait()
    await worker.stop(drain_timeout=args.drain_timeout)
    _print_json({"event": "stopped"})
    return 0


# --- call ------------------------------------------------------------------------------------


def _request(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"the request is not JSON: {exc}") from None


async def call(args: argparse.Namespace) -> int:
    request = _request(args.request)
    try:
        endpoint = EndpointId.parse(args.endpoint)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    environ = dict(os.environ)
    if args.nats_url:
        environ["NATS_SERVER"] = args.nats_url
    config = CallerConfig.from_env(environ)
    instance_id = _instance_id(args.instance_id)
    async with Caller(_discovery(args), config) as caller:
        await caller.wait_for_instances(endpoint, timeout=args.discovery_wait)
        stream = await caller.generate(endpoint, request, instance_id=instance_id)
        interrupts = _Interrupts(stream)
        try:
            if args.timeout > 0:
                await asyncio.wait_for(_print_items(stream), args.timeout)
            else:
                await _print_items(stream)
        finally:
            interrupts.remove()
            await stream.aclose()
    return EXIT_INTERRUPTED if interrupts.count else 0


def _instance_id(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text, 16)
    except ValueError:
        raise UsageError(f"--instance-id {text!r} is not a hexadecimal instance id") from None


class _Interrupts:
    """First SIGINT: ``stop`` (read on to the end); second: ``kill``."""

    def __init__(self, stream: ResponseStream) -> None:
        self.stream = stream
        self.count = 0
        self.loop = asyncio.get_running_loop()
        self.loop.add_signal_handler(signal.SIGINT, self._on_interrupt)

    def _on_interrupt(self) -> None:
        self.count += 1
        if self.count == 1:
            print(f"{PROG}: interrupted: sent stop (Ctrl-C again to kill)", file=sys.stderr, flush=True)
            self.stream.stop()
        else:
            print(f"{PROG}: interrupted again: sent kill", file=sys.stderr, flush=True)
            self.stream.kill()

    def remove(self) -> None:
        self.loop.remove_signal_handler(signal.SIGINT)


async def _print_items(stream: ResponseStream) -> None:
    async for item in stream:
        _print_json(item)


# --- discover --------------------------------------------------------------------------------


def discover(args: argparse.Namespace) -> int:
    discovery = _discovery(args)
    if not discovery.root.is_dir():
        raise UsageError(f"no discovery directory at {discovery.root}")
    prefix = args.endpoint or ""
    for record in discovery.records():
        name = str(record.endpoint_id)
        if prefix and name != prefix and not name.startswith(prefix + "."):
            continue
        _print_json(
            {
                "endpoint": name,
                "instance_id": f"{record.instance_id:x}",
                "transport": {record.transport_kind: record.transport_address},
                "request_plane_codec": record.request_plane_codec,
            }
        )
    return 0


# --- entry point -----------------------------------------------------------------------------


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, separators=(",", ":"), default=repr) + "\n")
    sys.stdout.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def discovery_option(command: argparse.ArgumentParser) -> None:
        command.add_argument("--discovery", metavar="DIR", help="discovery directory (default: $DYN_FILE_KV)")

    serve_cmd = commands.add_parser("serve", help="serve endpoints until SIGINT/SIGTERM")
    serve_cmd.add_argument("--namespace", default="demo")
    serve_cmd.add_argument("--component", default="backend")
    which = serve_cmd.add_mutually_exclusive_group()
    which.add_argument("--handler", metavar="MODULE:FUNCTION", help="a handler, or a mapping of endpoint -> handler")
    which.add_argument("--standard", action="store_true", help="the conformance suite's standard endpoints (default)")
    serve_cmd.add_argument("--endpoint", default="generate", help="endpoint name of a single --handler")
    serve_cmd.add_argument("--plane", help=f"request plane: {', '.join(PLANES)} (default: $DYN_REQUEST_PLANE or tcp)")
    serve_cmd.add_argument("--host", help="TCP plane address (default: $DYN_TCP_RPC_HOST or 127.0.0.1)")
    serve_cmd.add_argument("--port", help="TCP plane port (default: $DYN_TCP_RPC_PORT or any free port)")
    serve_cmd.add_argument("--http-port", help="HTTP plane port (default: $DYN_HTTP_RPC_PORT or any free port)")
    serve_cmd.add_argument("--codec", help="payload codec advertised: json or msgpack ($DYN_REQUEST_PLANE_CODEC)")
    serve_cmd.add_argument("--nats-url", help="NATS server (default: $NATS_SERVER or nats://127.0.0.1:4222)")
    serve_cmd.add_argument("--drain-timeout", type=float, default=5.0, help="seconds in-flight requests get at exit")
    discovery_option(serve_cmd)

    call_cmd = commands.add_parser("call", help="call an endpoint; print items as JSON lines")
    call_cmd.add_argument("endpoint", help="namespace.component.endpoint")
    call_cmd.add_argument("request", nargs="?", default="{}", help="the request as JSON (default: {})")
    call_cmd.add_argument("--instance-id", help="call this instance (hexadecimal, as `discover` prints it)")
    call_cmd.add_argument("--timeout", type=float, default=DEFAULT_CALL_TIMEOUT, help="whole-call deadline (s)")
    call_cmd.add_argument("--discovery-wait", type=float, default=DEFAULT_DISCOVERY_WAIT, help="wait for an instance")
    call_cmd.add_argument("--nats-url", help="NATS server (default: $NATS_SERVER)")
    discovery_option(call_cmd)

    discover_cmd = commands.add_parser("discover", help="list the instances in a discovery directory")
    discover_cmd.add_argument("endpoint", nargs="?", help="only this namespace[.component[.endpoint]]")
    discovery_option(discover_cmd)
    return parser


def _describe(exc: BaseException) -> str:
    if isinstance(exc, CallError):
        error_class = getattr(exc, "error_class", None)
        return f"call failed ({exc.kind}{', ' + error_class if error_class else ''}): {exc}"
    if isinstance(exc, TimeoutError):
        return f"timed out: {exc}" if str(exc) else "timed out"
    return str(exc) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "discover":
            return discover(args)
        return asyncio.run(serve(args) if args.command == "serve" else call(args))
    except (UsageError, ConfigError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (`discover | head`): nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # one line, never a traceback
        print(f"{PROG}: error: {_describe(exc)}", file=sys.stderr)
        return EXIT_FAILED


def entry_point() -> None:
    sys.exit(main())
