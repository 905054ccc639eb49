"""Start the worker under load through the same adapters and discovery as the suite.

Why: the load tests must reach any implementation exactly as the conformance
suite does (``fixtures.roles.AdapterLauncher``: an adapter process with the
suite's environment and a fresh ``DYN_FILE_KV``, stopped by PID), so
"reference", "dynamo" or any adapter command (``--impl-cmd``) can be put
under load without code of its own.  A NATS server (``fixtures.nats_server``,
a real ``nats-server`` stopped by PID) is started when the plane needs one
and none is given.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fixtures.adapter_process import AdapterSpec
from fixtures.nats_server import NatsServer
from fixtures.plugin import BUILTIN_ADAPTERS
from fixtures.roles import AdapterLauncher
from loadtests.endpoint_names import COMPONENT, ENDPOINTS, NAMESPACE

__all__ = ["COMPONENT", "ENDPOINTS", "NAMESPACE", "ServedTarget", "TargetOptions", "serve_target"]

# 1 MiB payloads plus their envelope must fit in one NATS message.
NATS_MAX_PAYLOAD = 8 * 1024 * 1024


@dataclass(frozen=True)
class TargetOptions:
    impl: str = "reference"
    plane: str = "tcp"
    impl_cmd: str | None = None
    impl_python: str | None = None
    nats_url: str | None = None
    env: tuple[tuple[str, str], ...] = ()  # extra environment for the adapter (e.g. RP_EVENT_LOOP=uvloop)

    def adapter_spec(self) -> AdapterSpec:
        if self.impl_cmd:
            return AdapterSpec(self.impl, shlex.split(self.impl_cmd))
        if self.impl not in BUILTIN_ADAPTERS:
            known = ", ".join(BUILTIN_ADAPTERS)
            raise ValueError(f"implementation {self.impl!r} is not built in ({known}); give a command")
        return AdapterSpec(self.impl, [self.impl_python or sys.executable, "-m", BUILTIN_ADAPTERS[self.impl]])


@dataclass(frozen=True)
class ServedTarget:
    """Where the worker under load can be found."""

    impl: str
    plane: str
    discovery_dir: str
    nats_url: str | None
    adapter_pid: int
    log_path: str

    def endpoint(self, name: str) -> str:
        return f"{NAMESPACE}.{COMPONENT}.{name}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@asynccontextmanager
async def serve_target(options: TargetOptions, log_dir: str | None = None) -> AsyncIterator[ServedTarget]:
    """Start the adapter, serve the load-test endpoints, yield, stop everything by PID.

    The scratch directory (discovery, adapter log) is removed afterwards
    unless the worker failed to serve or ``log_dir`` asks to keep it.
    """
    scratch = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix=f"rp-load-{options.impl}-"))
    scratch.mkdir(parents=True, exist_ok=True)
    keep = [bool(log_dir)]

    def remove_scratch() -> None:
        if not keep[0]:
            shutil.rmtree(scratch, ignore_errors=True)

    async with AsyncExitStack() as stack:
        stack.callback(remove_scratch)  # registered first, so it runs last
        nats_url = options.nats_url or os.environ.get("NATS_SERVER")
        if options.plane == "nats" and not nats_url:
            server = NatsServer(max_payload=NATS_MAX_PAYLOAD)
            stack.callback(server.close)
            nats_url = server.start().url
        plane_env = {**({"NATS_SERVER": nats_url} if nats_url else {}), **dict(options.env)}
        launcher = AdapterLauncher(options.adapter_spec(), scratch, lambda _: plane_env)
        stack.push_async_callback(launcher.stop_all)
        try:
            adapter, discovery_dir = await launcher.start("worker", options.plane)
            await adapter.request(
                "serve", plane=options.plane, namespace=NAMESPACE, component=COMPONENT, endpoints=list(ENDPOINTS)
            )
        except Exception as exc:
            keep[0] = True
            tail = launcher.running[-1].log_tail() if launcher.running else ""
            raise RuntimeError(f"cannot serve {options.impl} on {options.plane} (logs in {scratch}): {exc}\n{tail}")
        assert adapter.pid is not None
        yield ServedTarget(
            impl=options.impl,
            plane=options.plane,
            discovery_dir=str(discovery_dir),
            nats_url=nats_url,
            adapter_pid=adapter.pid,
            log_path=str(adapter.log_path),
        )
