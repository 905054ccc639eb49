"""An adapter's hello may ask the suite for more environment (``needs``); the suite provides it or says no."""

from __future__ import annotations

import sys
import textwrap

import pytest

from fixtures.plugin import ENVIRONMENT_NEEDS, declared_needs

pytest_plugins = ["pytester"]

# An adapter that only says hello, declaring what it needs; every other op is refused.
NEEDY_ADAPTER = textwrap.dedent(
    """
    import json, sys
    for line in sys.stdin:
        request = json.loads(line)
        answer = {{"id": request.get("id"), "ok": request.get("op") in ("hello", "shutdown")}}
        if request.get("op") == "hello":
            answer.update(implementation="needy", version="1", planes=["tcp"], roles=["worker"], needs={needs})
        print(json.dumps(answer), flush=True)
        if request.get("op") == "shutdown":
            break
    """
)

# A suite test that looks at what the session handed over (fixtures of the suite, a cited requirement).
PROBE_TEST = textwrap.dedent(
    """
    import pytest
    from fixtures.roles import _plane_env

    @pytest.mark.req("TCP-ACK-EMPTY")
    def test_environment(request, nats_server):
        print("JETSTREAM", nats_server.options.jetstream)
        print("TCP_ENV_HAS_NATS", "NATS_SERVER" in _plane_env(request)("tcp"))
    """
)


def test_needs_are_checked() -> None:
    assert declared_needs({}) == frozenset()
    assert declared_needs({"needs": ["nats", "jetstream"]}) == frozenset(ENVIRONMENT_NEEDS)
    with pytest.raises(pytest.UsageError, match="needs teleport, which this suite cannot provide"):
        declared_needs({"needs": ["nats", "teleport"]})
    with pytest.raises(pytest.UsageError, match="expected a list of names"):
        declared_needs({"needs": "nats"})


def _run(pytester: pytest.Pytester, needs: list[str]) -> pytest.RunResult:
    adapter = pytester.makefile(".py", needy_adapter=NEEDY_ADAPTER.format(needs=needs))
    pytester.makepyfile(test_probe=PROBE_TEST)
    return pytester.runpytest_subprocess(
        "-p", "fixtures.plugin", "-p", "fixtures.roles", "-p", "fixtures.nats_server", "-s",
        "--impl", "needy", "--impl-cmd", f"{sys.executable} {adapter}", "--planes", "tcp",
        "--report-dir", str(pytester.path / "reports"),
    )  # fmt: skip


def test_a_runtime_that_needs_nats_everywhere_gets_it_with_jetstream(pytester: pytest.Pytester) -> None:
    result = _run(pytester, ["nats", "jetstream"])
    result.stdout.fnmatch_lines(["*JETSTREAM True*", "*TCP_ENV_HAS_NATS True*"])


def test_without_needs_the_suite_hands_nothing_extra(pytester: pytest.Pytester) -> None:
    result = _run(pytester, [])
    result.stdout.fnmatch_lines(["*JETSTREAM False*", "*TCP_ENV_HAS_NATS False*"])


def test_an_unknown_need_stops_the_run_naming_it(pytester: pytest.Pytester) -> None:
    result = _run(pytester, ["gpu"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*needs gpu, which this suite cannot provide*"])
