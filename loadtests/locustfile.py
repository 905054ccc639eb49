"""Locust load profiles for the request plane.

Run from anywhere (any plane, any implementation the suite can drive; the
worker is started through its adapter with a fresh DYN_FILE_KV and stopped
when Locust quits)::

    locust -f loadtests/ --headless -u 8 -r 8 -t 30s UnaryUser
    locust -f loadtests/ --headless -u 4 -r 4 -t 30s LongStreamUser --rp-impl dynamo
    locust -f loadtests/ --headless -u 4 -r 4 -t 30s LargePayloadUser --rp-plane nats
    locust -f loadtests/ --headless -u 32 -r 2 -t 10m SoakUser --rp-ramp-seconds 300 --json-file out/soak

``-f loadtests/`` makes Locust import every ``loadtests/*.py``; only this
file defines users or does anything at import, so it is the same as
``-f loadtests/locustfile.py``.

One user class per profile (thresholds in ``loadtests/profiles.py``).  At
exit the run is judged against the thresholds of every profile that ran and
the exit code set (0 pass, 1 fail; ``--rp-no-gate`` leaves it to Locust);
``python -m loadtests.check`` judges the CSV/JSON files the same way.
Response times keep sub-millisecond resolution (``latency_resolution``);
rows of Type ``items`` give items streamed per second.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

# `locust -f loadtests/` imports this file by path: make the repository importable from any working directory.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from locust import User, constant, events, tag, task
from locust.runners import MasterRunner, WorkerRunner

from loadtests import latency_resolution
from loadtests.calls import CallOutcome, Cancel, LoadCalls
from loadtests.endpoint_names import COMPONENT, NAMESPACE
from loadtests.gate import evaluate
from loadtests.load_session import LoadSession, SessionSettings
from loadtests.locust_reporting import report
from loadtests.profiles import PROFILE_OF_USER_CLASS, PROFILES
from loadtests.stats_rows import rows_from_stats

latency_resolution.install()

log = logging.getLogger("loadtests")

UNARY_TEXT = "x" * 64
STREAM_ITEMS = 1000
STREAM_ITEM_SIZE = 32
LARGE_SIZE = 1024 * 1024
SOAK_STREAM_ITEMS = 100
SOAK_THINK_START_S = 0.05  # per-user pause between calls at the start of the ramp ...
SOAK_THINK_END_S = 0.002  # ... and once the ramp is over (the soak itself)
# One cycle of soak operations; every user walks it in order, so a run is the same mix every time.
SOAK_CYCLE = ("echo",) * 6 + ("stream", "stream", "stop", "kill")

_state: dict[str, Any] = {"session": None, "soak_started": None}


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("request plane (loadtests)")
    group.add_argument(
        "--rp-plane", default="tcp", env_var="RP_PLANE", help="plane of the worker started (tcp, http, nats)"
    )
    group.add_argument("--rp-impl", default="reference", env_var="RP_LOAD_IMPL", help="reference, dynamo, or a name")
    group.add_argument("--rp-impl-cmd", default="", help="command starting the implementation's adapter")
    group.add_argument("--rp-impl-python", default="", help="interpreter for a built-in adapter")
    group.add_argument("--rp-discovery", default="", help="DYN_FILE_KV of a worker already serving (none is started)")
    group.add_argument("--rp-namespace", default=NAMESPACE, help="namespace of the worker's standard endpoints")
    group.add_argument("--rp-component", default=COMPONENT, help="component of the worker's standard endpoints")
    group.add_argument("--rp-nats-url", default="", help="NATS server (default: started for --rp-plane nats)")
    group.add_argument("--rp-log-dir", default="", help="keep the worker's discovery dir and adapter log here")
    group.add_argument("--rp-call-deadline", type=float, default=30.0, help="seconds before a call counts as failed")
    group.add_argument("--rp-ramp-seconds", type=float, default=60.0, help="SoakUser: ramp from light to full load")
    group.add_argument("--rp-p99-ms", type=float, default=None, help="override every profile's p99 limit (ms)")
    group.add_argument("--rp-max-fail-ratio", type=float, default=None, help="override the failure-ratio limit")
    group.add_argument("--rp-min-requests", type=int, default=None, help="override the minimum request count")
    group.add_argument("--rp-summary", default="", help="write the verdicts and figures as JSON here")
    group.add_argument("--rp-no-gate", action="store_true", default=False, help="do not set the exit code")
    group.add_argument("--rp-seed", type=int, default=1, help="seed for Python's random (Locust's task picks)")


@events.init.add_listener
def start_session(environment: Any, **_: Any) -> None:
    """Local runs and distributed workers call the worker; a master only judges."""
    options = environment.parsed_options
    if options is None:
        return
    random.seed(options.rp_seed)
    if isinstance(environment.runner, MasterRunner):
        return
    if isinstance(environment.runner, WorkerRunner) and not options.rp_discovery:
        raise SystemExit("distributed runs need --rp-discovery DIR (start one with python -m loadtests.target_process)")
    session = LoadSession(SessionSettings.from_options(options))
    try:
        session.start()
    except Exception as exc:
        log.error("cannot start the load-test session: %s", exc)
        raise SystemExit(2) from exc
    _state["session"] = session


@events.test_start.add_listener
def note_start(**_: Any) -> None:
    _state["soak_started"] = time.monotonic()


@events.quitting.add_listener
def judge_and_stop(environment: Any, **_: Any) -> None:
    """Judge the run against the thresholds, then stop the worker we started."""
    try:
        if not isinstance(environment.runner, WorkerRunner) and environment.parsed_options is not None:
            _gate(environment)
    finally:
        session = _state.pop("session", None)
        if session is not None:
            session.stop()


def _gate(environment: Any) -> None:
    options = environment.parsed_options
    rows = rows_from_stats(environment.stats)
    profiles = [
        PROFILE_OF_USER_CLASS[c.__name__].name for c in environment.user_classes if c.__name__ in PROFILE_OF_USER_CLASS
    ]
    verdicts = [
        evaluate(
            name,
            rows,
            PROFILES[name].thresholds.overridden(
                p99_ms=options.rp_p99_ms, max_fail_ratio=options.rp_max_fail_ratio, min_requests=options.rp_min_requests
            ),
        )
        for name in profiles
    ]
    for verdict in verdicts:
        (log.info if verdict.passed else log.error)("%s", verdict.summary())
    crashed = bool(environment.runner.exceptions)
    if crashed:
        log.error("user code raised %d exception(s): the run fails", len(environment.runner.exceptions))
    if options.rp_summary:
        Path(options.rp_summary).parent.mkdir(parents=True, exist_ok=True)
        Path(options.rp_summary).write_text(
            json.dumps({"verdicts": [v.to_json() for v in verdicts], "user_exceptions": crashed}, indent=2)
        )
    if not options.rp_no_gate:
        environment.process_exit_code = 0 if verdicts and all(v.passed for v in verdicts) and not crashed else 1


class RequestPlaneUser(User):
    """Calls through the process's shared caller; every call becomes Locust stats."""

    abstract = True
    wait_time = constant(0)
    profile: ClassVar[str]

    def call(self, operation: str, invoke: Any) -> CallOutcome:
        """Run ``invoke(calls, name)`` on the asyncio loop and report the outcome."""
        session: LoadSession | None = _state["session"]
        if session is None or session.bridge is None or session.calls is None:
            raise RuntimeError("no load-test session: the init listener did not run")
        calls: LoadCalls = session.calls
        outcome: CallOutcome = session.bridge.run(invoke(calls, f"{self.profile}/{operation}"))
        report(self.environment, outcome)
        return outcome


class UnaryUser(RequestPlaneUser):
    """Small unary requests: 64 B in, the same 64 B back as one item."""

    profile = "unary"

    @tag("unary")
    @task
    def echo(self) -> None:
        self.call("echo", lambda calls, name: calls.echo(name, UNARY_TEXT))


class LongStreamUser(RequestPlaneUser):
    """Long streams: 1,000 items per request."""

    profile = "stream"

    @tag("stream")
    @task
    def stream(self) -> None:
        self.call("stream-1000", lambda calls, name: calls.stream(name, STREAM_ITEMS, STREAM_ITEM_SIZE))


class LargePayloadUser(RequestPlaneUser):
    """1 MiB payloads both ways: a request body checked by SHA-256, and a single 1 MiB item."""

    profile = "large"

    @tag("large")
    @task
    def upload(self) -> None:
        self.call("sink-1MiB", lambda calls, name: calls.sink(name, LARGE_SIZE))

    @tag("large")
    @task
    def download(self) -> None:
        self.call("stream-1MiB", lambda calls, name: calls.stream(name, 1, LARGE_SIZE))


class SoakUser(RequestPlaneUser):
    """Ramping soak: pauses shrink over ``--rp-ramp-seconds`` then hold; 1 call in 10 stopped, 1 in 10 killed."""

    profile = "soak"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cycle = itertools.cycle(SOAK_CYCLE)

    def wait_time(self) -> float:
        options = self.environment.parsed_options
        ramp = max(float(options.rp_ramp_seconds) if options else 60.0, 0.001)
        started = _state["soak_started"] or time.monotonic()
        progress = min(1.0, (time.monotonic() - started) / ramp)
        return SOAK_THINK_START_S + (SOAK_THINK_END_S - SOAK_THINK_START_S) * progress

    @tag("soak")
    @task
    def mixed(self) -> None:
        operation = next(self._cycle)
        if operation == "echo":
            self.call("echo", lambda calls, name: calls.echo(name, UNARY_TEXT))
        elif operation == "stream":
            self.call("stream-100", lambda calls, name: calls.stream(name, SOAK_STREAM_ITEMS, STREAM_ITEM_SIZE))
        else:
            self.call(f"cancel-{operation}", lambda calls, name: calls.cancelled(name, Cancel(operation, 3)))
