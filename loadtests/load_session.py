"""What one Locust process holds while it generates load.

A worker to call (started through its adapter in a child process, or an
existing one found in ``--rp-discovery``), one asyncio loop thread, and one
reference ``Caller`` on that loop shared by every simulated user, as a
frontend would share it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from loadtests.asyncio_bridge import AsyncioBridge
from loadtests.cached_discovery import CachedDiscovery
from loadtests.calls import LoadCalls
from loadtests.endpoint_names import COMPONENT, NAMESPACE
from loadtests.target_process import TargetProcess
from reference_impl.caller import Caller, CallerConfig
from reference_impl.routing import EndpointId

log = logging.getLogger(__name__)

DISCOVERY_TIMEOUT = 30.0
CLOSE_TIMEOUT = 10.0


@dataclass(frozen=True)
class SessionSettings:
    plane: str = "tcp"
    impl: str = "reference"
    impl_cmd: str | None = None
    impl_python: str | None = None
    discovery_dir: str | None = None  # an existing worker; None starts one
    namespace: str = NAMESPACE
    component: str = COMPONENT
    nats_url: str | None = None
    log_dir: str | None = None
    deadline_s: float = 30.0

    @classmethod
    def from_options(cls, options: Any) -> SessionSettings:
        """From Locust's parsed options (the ``--rp-*`` arguments)."""
        return cls(
            plane=options.rp_plane,
            impl=options.rp_impl,
            impl_cmd=options.rp_impl_cmd or None,
            impl_python=options.rp_impl_python or None,
            discovery_dir=options.rp_discovery or None,
            namespace=options.rp_namespace,
            component=options.rp_component,
            nats_url=options.rp_nats_url or None,
            log_dir=options.rp_log_dir or None,
            deadline_s=float(options.rp_call_deadline),
        )

    def target_arguments(self) -> list[str]:
        arguments = ["--impl", self.impl, "--plane", self.plane]
        for flag, value in (
            ("--impl-cmd", self.impl_cmd),
            ("--impl-python", self.impl_python),
            ("--nats-url", self.nats_url),
            ("--log-dir", self.log_dir),
        ):
            if value:
                arguments += [flag, value]
        return arguments


class LoadSession:
    def __init__(self, settings: SessionSettings) -> None:
        self.settings = settings
        self.target: TargetProcess | None = None
        self.bridge: AsyncioBridge | None = None
        self.calls: LoadCalls | None = None
        self.discovery_dir: str | None = settings.discovery_dir
        self.nats_url: str | None = settings.nats_url

    def start(self) -> LoadCalls:
        """Bring up the worker (unless given), the loop thread and the caller; bounded waits throughout."""
        try:
            if self.discovery_dir is None:
                self.target = TargetProcess(self.settings.target_arguments())
                info = self.target.start()
                self.discovery_dir = info["discovery_dir"]
                self.nats_url = self.nats_url or info.get("nats_url")
                log.info(
                    "serving %s on %s (adapter pid %s, nats %s)",
                    self.settings.impl,
                    self.settings.plane,
                    info["adapter_pid"],
                    info.get("nats_url"),
                )
            self.bridge = AsyncioBridge()
            self.bridge.start()
            self.calls = self.bridge.run(self._open_caller(), timeout=DISCOVERY_TIMEOUT + 5)
        except BaseException:
            self.stop()
            raise
        return self.calls

    async def _open_caller(self) -> LoadCalls:
        assert self.discovery_dir is not None
        config = CallerConfig.from_env(nats={"url": self.nats_url}) if self.nats_url else CallerConfig.from_env()
        caller = Caller(CachedDiscovery(self.discovery_dir), config)
        await caller.start()
        try:
            echo = EndpointId(self.settings.namespace, self.settings.component, "echo")
            await caller.wait_for_instances(echo, timeout=DISCOVERY_TIMEOUT)
        except BaseException:
            await caller.close()
            raise
        return LoadCalls(
            caller,
            self.settings.namespace,
            self.settings.component,
            plane=self.settings.plane,
            deadline_s=self.settings.deadline_s,
        )

    def stop(self) -> None:
        """Close the caller, stop the loop thread, stop the worker we started (by PID)."""
        try:
            if self.bridge is not None:
                if self.calls is not None:
                    try:
                        self.bridge.run(self.calls.caller.close(), timeout=CLOSE_TIMEOUT)
                    except Exception as exc:
                        log.warning("closing the caller: %r", exc)
                self.bridge.stop(timeout=CLOSE_TIMEOUT)
        finally:
            self.bridge = None
            self.calls = None
            if self.target is not None:
                self.target.stop()
                self.target = None
