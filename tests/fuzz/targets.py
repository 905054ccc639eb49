"""Every fuzz target by name: the hypothesis tests and the atheris harness run these same functions.

A target takes one raw input (see ``fuzz_input``) and returns normally, or raises: a
:class:`~tests.fuzz.checks.FuzzFinding` when an invariant fails, anything else when the
code under test crashed.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.fuzz.codec_targets import fuzz_request_frame, fuzz_tcp_ack, fuzz_two_part
from tests.fuzz.http_targets import fuzz_http1, fuzz_http2
from tests.fuzz.stream_targets import fuzz_caller_stream, fuzz_messages, fuzz_worker_stream

Target = Callable[[bytes], None]

TARGETS: dict[str, Target] = {
    "two_part": fuzz_two_part,
    "request_frame": fuzz_request_frame,
    "tcp_ack": fuzz_tcp_ack,
    "caller_stream": fuzz_caller_stream,
    "worker_stream": fuzz_worker_stream,
    "messages": fuzz_messages,
    "http1": fuzz_http1,
    "http2": fuzz_http2,
}
