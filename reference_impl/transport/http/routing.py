"""What the HTTP request plane answers, independent of HTTP/1.1 or h2.

Dynamo's worker serves one axum route, ``POST {root}/{*endpoint}``, looked up
by the bare endpoint name.  Everything here is sans-IO: the connection
drivers (``http1_server``, ``http2_server``) parse the wire and call these
functions to decide the status, headers and body.
"""

from __future__ import annotations

import email.utils
import http
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes, urlsplit

from reference_impl.protocol import ack
from reference_impl.transport.http.limits import DEFAULT_GUARDS, HttpGuards

TEXT_PLAIN = b"text/plain; charset=utf-8"
ENDPOINT_NOT_FOUND = b"Endpoint not found"
BODY_TOO_LARGE = b"Failed to buffer the request body: length limit exceeded"  # axum's text

# Headers Dynamo's HTTP ingress reads; the sink gets these and no transport headers.
FORWARDED_HEADERS = frozenset(
    (b"request-id", b"x-dynamo-request-id", b"x-frontend-send-ts-ns", b"traceparent", b"tracestate", b"x-request-id")
)


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """One response: status, extra headers (``content-length`` is added by the drivers) and body."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""

    @property
    def reason(self) -> bytes:
        phrase = _HYPER_PHRASES.get(self.status) or http.HTTPStatus(self.status).phrase
        return phrase.encode()


@dataclass(frozen=True, slots=True)
class HttpServerLimits:
    """What the HTTP/1.1 and h2 connection drivers need to know of their server (see ``HttpRequestServer``)."""

    root: str
    body_limit: int
    max_header_size: int
    h2_max_concurrent_streams: int
    h2_window_size: int
    guards: HttpGuards = DEFAULT_GUARDS


# A complete request (bare endpoint name, body, forwarded headers) -> its answer (the ACK).
Admit = Callable[[str, bytes, Mapping[str, str]], HttpAnswer]
# A peer's protocol error, kept for diagnostics.
ReportWireError = Callable[[str], None]

_HYPER_PHRASES = {413: "Payload Too Large"}  # where Python's phrase differs from hyper's (the http crate's)


ACCEPTED = HttpAnswer(202, ((b"content-type", TEXT_PLAIN),))
NOT_FOUND_OUTSIDE_ROOT = HttpAnswer(404)  # axum's fallback: no content type, empty body
UNKNOWN_ENDPOINT = HttpAnswer(404, ((b"content-type", TEXT_PLAIN),), ENDPOINT_NOT_FOUND)
METHOD_NOT_ALLOWED = HttpAnswer(405, ((b"allow", b"POST"),))
TOO_LARGE = HttpAnswer(413, ((b"content-type", TEXT_PLAIN),), BODY_TOO_LARGE)
BODY_BUDGET_EXHAUSTED = HttpAnswer(
    503, ((b"content-type", TEXT_PLAIN),), f"{ack.OVERLOADED_PREFIX} request body budget exhausted".encode()
)
BODY_TIMEOUT = HttpAnswer(408, ((b"content-type", TEXT_PLAIN),), b"Request body not received in time")


def text_answer(status: int, text: str) -> HttpAnswer:
    return HttpAnswer(status, ((b"content-type", TEXT_PLAIN),), text.encode("utf-8", errors="replace"))


def bad_request(reason: str) -> HttpAnswer:
    return text_answer(400, f"Bad request: {reason}")


def normalize_root(root: str) -> str:
    """``/v1/rpc``, ``v1/rpc/`` -> ``/v1/rpc``; ``/`` -> ``""`` (endpoints directly under ``/``)."""
    stripped = root.strip("/")
    return f"/{stripped}" if stripped else ""


@dataclass(frozen=True, slots=True)
class Routed:
    """The request matched ``POST {root}/{*endpoint}``: read its body, then offer it."""

    endpoint: str


def route(method: bytes, target: bytes, root: str) -> Routed | HttpAnswer:
    """Match the request line the way the axum router does, before any body is read."""
    path = _path_of(target)
    prefix = root.encode() + b"/"
    capture = path[len(prefix) :] if path.startswith(prefix) else b""
    if not capture:
        return NOT_FOUND_OUTSIDE_ROOT
    if method != b"POST":
        return METHOD_NOT_ALLOWED
    try:
        return Routed(unquote_to_bytes(capture).decode("utf-8"))
    except UnicodeDecodeError:
        return text_answer(400, "Invalid URL: Invalid UTF-8 in `endpoint`")  # axum's Path rejection


def _path_of(target: bytes) -> bytes:
    """Origin-form ``/p?q`` or absolute-form ``http://h/p?q`` -> ``/p``."""
    if target.startswith(b"/"):
        return target.partition(b"?")[0]
    if b"://" in target:
        return urlsplit(target).path or b"/"
    return b""  # "*" or garbage: matches nothing


def answer_offer(endpoint: str, rejection: str | None) -> HttpAnswer:
    """The sink's verdict as HTTP: empty ACK -> 202, refusals -> 503 (404 for a vanished endpoint)."""
    if rejection is None:
        return ACCEPTED
    if rejection == ack.unknown_endpoint(endpoint):
        return text_answer(404, rejection)  # unregistered between routing and the offer
    return text_answer(503, rejection)


def declared_length(value: bytes | None) -> int | None:
    """A ``content-length`` value, or None when absent; the codecs have already validated its syntax."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def sink_headers(pairs: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The tracing headers Dynamo reads, with ``request-id`` resolved as it resolves it.

    ``request-id`` counts only if it parses as a UUID; otherwise a UUID in the
    deprecated ``x-dynamo-request-id`` takes its place.  A ``request-id`` that
    is not a UUID is dropped rather than passed on as if it were an id.
    """
    found = {name: value for name, value in pairs if name in FORWARDED_HEADERS}
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in found.items()}
    request_id = _uuid_or_none(headers.get("request-id")) or _uuid_or_none(headers.get("x-dynamo-request-id"))
    if request_id is None:
        headers.pop("request-id", None)
    else:
        headers["request-id"] = request_id
    return headers


def _uuid_or_none(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        uuid.UUID(value)
    except ValueError:
        return None
    return value


class _DateCache:
    """``date`` header value, formatted at most once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = email.utils.formatdate(now, usegmt=True).encode()
        return self._value


http_date = _DateCache()
