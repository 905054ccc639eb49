"""The HTTP-plane rows of ``python -m loadtests.dos_bench``: which attack, how big, and how to read its outcome.

Each attack of ``fixtures.dos.http_attacks`` runs in a process of its own (one
attacker core, as issue 13 measures) at the worker's ``echo`` URL, sized
closer to the issue's observations than the suite's verdicts can afford, and
bounded in time.  A row's ``judge`` turns what the attacker saw into the
table's "attacker" cell and, where the row has a target of its own (a deadline,
a refusal), whether it was met.

``LIMITS_OFF`` turns every ``RP_HTTP_*`` limit off through the reference's own
settings (timeouts 0, budgets 0 = unlimited or huge), which is what the
reference did before them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fixtures.dos.http_attacks import Outcome
from reference_impl.transport.http.limits import DEFAULT_HEADER_TIMEOUT, DEFAULT_SEND_TIMEOUT

MIB = 1024 * 1024
HUGE = str(1 << 40)
# A deadline is judged met when the worker gave up within it plus this: the server fires its HTTP deadlines within
# 10 ms of when a read arrived, but the attacker times from its own connect or send (the worker accepts and reads
# later while it is busy) and polls every 50 ms.
DEADLINE_SLACK_S = 1.0

LIMITS_OFF = {
    "RP_HTTP_HEADER_TIMEOUT": "0",
    "RP_HTTP_BODY_TIMEOUT": "0",
    "RP_HTTP_SEND_TIMEOUT": "0",
    "RP_HTTP_IDLE_TIMEOUT": "0",
    "RP_HTTP_BODY_BUDGET": "0",
    "RP_HTTP_H2_CONNECTION_BODY_BUDGET": HUGE,
    "RP_HTTP_H2_RESET_BURST": HUGE,
    "RP_HTTP_H2_RESET_RATE": HUGE,
    "RP_HTTP_H2_CONTROL_BURST": HUGE,
    "RP_HTTP_H2_CONTROL_RATE": HUGE,
    "RP_HTTP_MAX_BODY_CHUNKS": HUGE,
    "RP_HTTP_H2_MAX_HEADER_BLOCK": HUGE,
    "RP_HTTP_H2_MAX_PARKED_STREAMS": HUGE,
    "RP_HTTP_LINGER_TIME": "0",
}
# A header block without END_HEADERS must be cut off by then (ROB-DOS-H2-CONTINUATION's bound).
CONTINUATION_BOUND = 256 * 1024

Judge = Callable[[Outcome, dict[str, Any]], tuple[str, bool | None]]


@dataclass(frozen=True)
class HttpRow:
    """One HTTP attack as the bench runs it; ``check`` names what the judge's verdict is about ("" if none)."""

    attack: str
    title: str
    options: dict[str, Any]
    judge: Judge
    check: str = ""

    @property
    def budget_s(self) -> float:
        return float(self.options.get("duration", self.options.get("wait", 5.0)))


def _goaway(out: Outcome) -> str:
    codes = sorted(set(out.goaway_codes))
    return f", GOAWAY {codes}" if codes else ""


def _open_bodies(out: Outcome, options: dict[str, Any]) -> tuple[str, bool | None]:
    closed = len(out.closed_at)
    return f"{out.sent_bytes / MIB:.0f} MiB taken, {closed}/{out.connections} conns closed{_goaway(out)}", None


def _rapid_reset(out: Outcome, options: dict[str, Any]) -> tuple[str, bool | None]:
    if out.closed_at:
        return f"closed at {min(out.closed_at):.1f} s after {out.streams_opened} streams{_goaway(out)}", None
    return f"never closed: {out.streams_opened} streams opened and reset", None


def _control_flood(out: Outcome, options: dict[str, Any]) -> tuple[str, bool | None]:
    closed = len(out.closed_at)
    taken = f"last burst taken at {out.last_accepted_at:.1f} s"
    return f"{closed}/{out.connections} closed{_goaway(out)}, {taken}, {out.sent_bytes / MIB:.0f} MiB taken", None


def _zero_window(out: Outcome, options: dict[str, Any]) -> tuple[str, bool | None]:
    opened = out.streams_opened
    given_up = min(opened, out.resets_received + options["streams"] * len(out.closed_at))  # a close ends them all
    if opened and given_up == opened:
        text = f"all {opened} given up, the last {out.held_longest:.1f} s after parking"
        return text, out.held_longest <= DEFAULT_SEND_TIMEOUT + DEADLINE_SLACK_S
    return f"{opened - given_up}/{opened} still parked at {options['duration']:.0f} s", False


def _continuation(out: Outcome, options: dict[str, Any]) -> tuple[str, bool | None]:
    if not out.closed_at:
        return f"never closed: {out.taken_bytes / MIB:.1f} MiB of header block taken in {out.duration:.1f} s", False
    text = f"closed at {min(out.closed_at):.2f} s after {out.taken_bytes // 1024} KiB of header block{_goaway(out)}"
    return text, out.taken_bytes <= CONTINUATION_BOUND


def _slowloris(out: Outcome, options: dict[str, Any]) -> tuple[str, bool | None]:
    wanted, opened, closed = options["connections"], out.connections, len(out.closed_at)
    refused = f", {wanted - opened} could not connect" if opened < wanted else ""
    if opened and closed == opened:
        text = f"all {opened} closed, the last {out.held_longest:.1f} s after connecting{refused}"
        return text, not refused and out.held_longest <= DEFAULT_HEADER_TIMEOUT + DEADLINE_SLACK_S
    return f"{opened - closed}/{opened} open at {options['duration']:.0f} s{refused}", False


def _tiny_chunks(out: Outcome, options: dict[str, Any]) -> tuple[str, bool | None]:
    # Not the chunks sent: once the worker has closed, writes still "succeed" into a closed transport.
    answer = f"answered {out.statuses[0]}" if out.statuses else "no answer"
    notes = f" ({out.notes[0]})" if out.notes else ""
    return f"{answer}, attack over at {out.duration:.1f} s{notes}", None


def _refused(out: Outcome, options: dict[str, Any]) -> tuple[str, bool | None]:
    """RFC 9112's answer to an ambiguous head: an error status (at most one answer) and the connection closed."""
    closed = "closed" if out.closed_at else "kept open"
    refused = bool(out.closed_at) and len(out.statuses) <= 1 and all(status >= 400 for status in out.statuses)
    return f"answers {out.statuses or 'none'}, {closed}", refused


ROWS = [
    HttpRow(
        "h2-open-bodies",
        "h2: 2 conns x 1000 streams x 1.6 MiB bodies never ended, 6 s",
        {"connections": 2, "streams": 1000, "body_bytes": 1_677_000, "duration": 6.0},
        _open_bodies,
    ),
    HttpRow("h2-rapid-reset", "h2: HEADERS + RST_STREAM loop on 1 conn, 5 s", {"duration": 5.0}, _rapid_reset),
    HttpRow(
        "h2-control-flood",
        "h2: PING + SETTINGS flood on 4 conns never read, 5 s",
        {"connections": 4, "duration": 5.0},
        _control_flood,
    ),
    HttpRow(
        "h2-continuation-flood",
        "h2: HEADERS then 16 KiB CONTINUATION frames every 20 ms, never END_HEADERS, up to 8 MiB / 5 s",
        {"frame_bytes": 16_384, "interval": 0.02, "max_bytes": 8 * MIB, "duration": 5.0},
        _continuation,
        f"cut off by {CONTINUATION_BOUND // 1024} KiB of header block",
    ),
    HttpRow(
        "h2-zero-window",
        "h2: 50 conns x 200 answers behind a zero window, 9 s",
        {"connections": 50, "streams": 200, "duration": 9.0},
        _zero_window,
        f"given up by the {DEFAULT_SEND_TIMEOUT:.0f} s send deadline",
    ),
    HttpRow(
        "h1-slowloris",
        "HTTP/1.1: 2000 conns, a head at 1 byte / 2 s, 9 s",
        {"connections": 2000, "interval": 2.0, "duration": 9.0},
        _slowloris,
        f"closed by the {DEFAULT_HEADER_TIMEOUT:.0f} s header deadline",
    ),
    HttpRow(
        "h1-tiny-chunks",
        "HTTP/1.1: one body of 1.9 M one-byte chunks",
        {"chunks": 1_900_000, "wait": 5.0, "duration": 30.0},
        _tiny_chunks,
    ),
    HttpRow(
        "h1-cl-te",
        "HTTP/1.1: Content-Length + Transfer-Encoding, a request pipelined behind",
        {"wait": 3.0},
        _refused,
        "error status and close",
    ),
    HttpRow(
        "h1-bare-lf",
        "HTTP/1.1: a head with bare-LF line endings",
        {"wait": 3.0},
        _refused,
        "error status and close",
    ),
]
