"""The byte limits handed to the DoS scenarios' workers: the hello's declarations, and attacks sized from them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import sys
import textwrap

import pytest

from fixtures.adapters import protocol
from fixtures.dos import http_attacks, limits
from fixtures.dos.limits import MIB, LimitDeclarationError, PartialFrameAttack

pytest_plugins = ["pytester"]


def test_a_settable_limit_is_the_handed_value():
    hello = {"limits": {"tcp_buffer_budget": "settable"}}
    got = limits.in_force(hello, "tcp_buffer_budget")
    assert (got.declared, got.source) == (limits.HANDED_BYTES["tcp_buffer_budget"], "handed")


def test_a_documented_limit_is_used_and_sizes_the_attack():
    got = limits.in_force({"limits": {"http_body_budget": 48 * MIB}}, "http_body_budget")
    assert (got.declared, got.source, got.sizing) == (48 * MIB, "documented by the adapter", 48 * MIB)
    assert limits.h2_body_rss_bound(got) == 96 * MIB


def test_no_such_limit_is_attacked_at_the_handed_size():
    got = limits.in_force({"limits": {"tcp_buffer_budget": None}}, "tcp_buffer_budget")
    assert got.declared is None and got.source == "no such limit"
    assert got.sizing == limits.HANDED_BYTES["tcp_buffer_budget"]
    assert "no such limit" in got.describe()


@pytest.mark.parametrize("hello", [None, {}, {"limits": None}, {"limits": {"other": "settable"}}])
def test_an_undeclared_limit_is_assumed_at_the_references_default(hello):
    got = limits.in_force(hello, "tcp_connection_buffer_limit")
    assert got.declared == limits.UNDECLARED_BYTES["tcp_connection_buffer_limit"] == 32 * MIB
    assert got.source.startswith("assumed")


@pytest.mark.parametrize("bad", ["yes", 0, -1, 1.5, True, [], "SETTABLE", limits.LARGEST_JUDGED_BYTES + 1])
def test_a_bad_declaration_is_a_clear_error(bad):
    with pytest.raises(LimitDeclarationError, match=r"limit tcp_buffer_budget as .*expected 'settable', a positive"):
        limits.in_force({"limits": {"tcp_buffer_budget": bad}}, "tcp_buffer_budget")


def test_limits_not_a_mapping_and_an_unknown_name_are_clear_errors():
    with pytest.raises(LimitDeclarationError, match="expected a mapping"):
        limits.in_force({"limits": ["tcp_buffer_budget"]}, "tcp_buffer_budget")
    with pytest.raises(KeyError, match="no handed limit 'nope'"):
        limits.in_force({}, "nope")


def test_the_partial_frame_attack_at_the_references_defaults_is_the_issues_attack():
    undeclared = [limits.in_force({}, name) for name in ("tcp_buffer_budget", "tcp_connection_buffer_limit")]
    sized = PartialFrameAttack.sized(*undeclared)
    assert (sized.connections, sized.send, sized.declared, sized.rss_bound) == (
        12,
        24 * MIB,
        32 * MIB - 1024,
        192 * MIB,
    )


def test_the_handed_partial_frame_attack_offers_more_than_its_bound_and_its_bound_more_than_the_budget():
    handed = {"limits": dict.fromkeys(limits.HANDED_BYTES, "settable")}
    budget = limits.in_force(handed, "tcp_buffer_budget")
    sized = PartialFrameAttack.sized(budget, limits.in_force(handed, "tcp_connection_buffer_limit"))
    offered = sized.connections * sized.send
    assert offered >= budget.sizing * 9 // 4 and budget.sizing < sized.rss_bound < offered
    assert sized.declared < limits.HANDED_BYTES["tcp_connection_buffer_limit"]


def test_handed_limits_reach_the_implementations_own_settings_unless_set(monkeypatch):
    for variable, value in limits.handed_environment().items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setenv("RP_TCP_BUFFER_BUDGET", "7")  # a test's own value of the implementation's setting wins
    monkeypatch.delenv("RP_HTTP_BODY_BUDGET", raising=False)
    protocol.map_handed_timeouts(
        {"tcp_buffer_budget": ("RP_TCP_BUFFER_BUDGET",), "http_body_budget": ("RP_HTTP_BODY_BUDGET",)}
    )
    assert os.environ["RP_TCP_BUFFER_BUDGET"] == "7"
    assert os.environ["RP_HTTP_BODY_BUDGET"] == str(limits.HANDED_BYTES["http_body_budget"])


async def _h2_server_granting_no_window() -> asyncio.Server:
    """An h2 peer that reads everything and grants streams no send window (SETTINGS_INITIAL_WINDOW_SIZE 0)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(http_attacks._frame(http_attacks.FRAME_SETTINGS, 0, 0, struct.pack(">HI", 0x4, 0)))
        with contextlib.suppress(ConnectionError):
            while await reader.read(1 << 16):
                pass
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


async def test_open_bodies_held_back_by_the_worker_end_after_the_quiet_window_not_the_duration():
    server = await _h2_server_granting_no_window()
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/rpc/x"
    options = {"connections": 2, "streams": 3, "body_bytes": 100_000, "duration": 10.0, "held_quiet": 0.3}
    try:
        outcome = await asyncio.wait_for(http_attacks.h2_open_bodies(url, options), 8.0)
    finally:
        server.close()
    assert outcome.held_back == 2 and outcome.duration < 5.0


def test_the_report_names_each_limit_in_force_and_its_source():
    entry = limits.report_entry({"limits": {"tcp_buffer_budget": "settable", "http_body_budget": None}})
    assert entry["tcp_buffer_budget"] == {"bytes": 32 * MIB, "source": "handed"}
    assert entry["http_body_budget"] == {"bytes": None, "source": "no such limit"}
    assert entry["tcp_connection_buffer_limit"]["source"].startswith("assumed")


# An adapter that only says hello, declaring one limit in a way the protocol does not define.
BAD_LIMITS_ADAPTER = textwrap.dedent(
    """
    import json, sys
    for line in sys.stdin:
        request = json.loads(line)
        answer = {"id": request.get("id"), "ok": request.get("op") in ("hello", "shutdown")}
        if request.get("op") == "hello":
            answer.update(implementation="odd", version="1", planes=["tcp"], roles=["worker"],
                          limits={"tcp_buffer_budget": "lots"})
        print(json.dumps(answer), flush=True)
        if request.get("op") == "shutdown":
            break
    """
)


def test_a_bad_limits_declaration_stops_the_run_before_any_test(pytester: pytest.Pytester) -> None:
    adapter = pytester.makefile(".py", odd_adapter=BAD_LIMITS_ADAPTER)
    pytester.makepyfile(
        test_never="import pytest\n\n@pytest.mark.req('TCP-ACK-EMPTY')\n"
        "def test_never():\n    raise AssertionError('ran')\n"
    )
    result = pytester.runpytest_subprocess(
        "-p", "fixtures.plugin", "--impl", "odd", "--impl-cmd", f"{sys.executable} {adapter}",
        "--planes", "tcp", "--report-dir", str(pytester.path / "reports"),
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(["*hello declares limit tcp_buffer_budget as 'lots'*"])
    result.stdout.no_fnmatch_line("*AssertionError: ran*")
