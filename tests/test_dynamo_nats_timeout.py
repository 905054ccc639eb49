"""The Dynamo adapter hands the NATS ACK wait and the failed-worker hold over where the release names their settings.

Needs ai-dynamo-runtime installed: tox runs it in the dynamo env (the unit env, without Dynamo, leaves it out), and
without Dynamo it fails at the import, never skips."""

from __future__ import annotations

from pathlib import Path

import pytest
from dynamo.runtime import DistributedRuntime  # noqa: F401  (a missing Dynamo must fail here, not skip)

from fixtures.adapters import dynamo, dynamo_probes


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(dynamo_probes, "CACHE_DIR", tmp_path)


def test_the_release_names_its_nats_request_timeout_setting_and_not_an_invented_one():
    assert dynamo_probes.names_variable(dynamo.NATS_REQUEST_TIMEOUT)
    assert not dynamo_probes.names_variable("DYN_NO_SUCH_SETTING_FOR_ANYTHING")
    # Asked again, the answer comes from the cache (same answers).
    assert dynamo_probes.names_variable(dynamo.NATS_REQUEST_TIMEOUT)
    assert not dynamo_probes.names_variable("DYN_NO_SUCH_SETTING_FOR_ANYTHING")


def test_the_nats_ack_wait_is_handed_over_where_the_release_names_the_setting(monkeypatch: pytest.MonkeyPatch):
    assert dynamo.NATS_REQUEST_TIMEOUT in dynamo.timeout_settings()["ack"]
    assert dynamo.timeouts_in_force()["ack"]["nats"] == "settable"
    monkeypatch.setattr(dynamo_probes, "names_variable", lambda variable: False)
    assert dynamo.timeout_settings()["ack"] == ("DYN_TCP_REQUEST_TIMEOUT", "DYN_HTTP_REQUEST_TIMEOUT")
    assert dynamo.timeouts_in_force()["ack"]["nats"] == dynamo.NATS_FIXED_REQUEST_TIMEOUT_S


def test_the_failed_worker_hold_is_handed_over_where_the_release_names_the_setting(monkeypatch: pytest.MonkeyPatch):
    """1.6.1 names DYN_RUNTIME_INHIBITED_DURATION_SECS; a release that does not is left at its documented 5 s."""
    assert dynamo.timeout_settings()["failed_worker_hold"] == (dynamo.INHIBITED_DURATION,)
    assert dynamo.timeouts_in_force()["failed_worker_hold"] == "settable"
    monkeypatch.setattr(dynamo_probes, "names_variable", lambda variable: False)
    assert "failed_worker_hold" not in dynamo.timeout_settings()
    assert "failed_worker_hold" not in dynamo.timeouts_in_force()
