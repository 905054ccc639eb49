"""The adapter maps the suite's names for timeouts and deadlines onto its implementation's own settings."""

from __future__ import annotations

import os

import pytest

from fixtures.adapters.protocol import DEADLINE_ENV, TIMEOUT_ENV, map_handed_timeouts


def test_handed_timeouts_and_asked_deadlines_reach_the_implementations_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TIMEOUT_ENV["ack"], "3")
    monkeypatch.setenv(DEADLINE_ENV["tcp_idle"], "1.5")
    monkeypatch.setenv("IMPL_ACK_B", "9")  # the test asked the implementation for this one itself: it wins
    for name in ("IMPL_ACK_A", "IMPL_IDLE", "IMPL_WRITE"):
        monkeypatch.delenv(name, raising=False)
    map_handed_timeouts(
        {"ack": ("IMPL_ACK_A", "IMPL_ACK_B"), "tcp_idle": ("IMPL_IDLE",), "callhome_write": ("IMPL_WRITE",)}
    )
    assert (os.environ["IMPL_ACK_A"], os.environ["IMPL_ACK_B"], os.environ["IMPL_IDLE"]) == ("3", "9", "1.5")
    assert "IMPL_WRITE" not in os.environ, "a deadline nobody asked for is not invented"


def test_the_suite_names_are_its_own() -> None:
    names = [*TIMEOUT_ENV.values(), *DEADLINE_ENV.values()]
    assert all(name.startswith("CONFORMANCE_") for name in names) and len(set(names)) == len(names)
