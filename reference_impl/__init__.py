"""Reference implementation of Dynamo's request-plane network layer.

Three request planes (TCP, HTTP/2, NATS) carry a two-part request envelope
to a worker; the worker dials back to the caller over TCP and streams the
response ("call home").  Codecs and protocol state machines are sans-IO;
asyncio transports live in :mod:`reference_impl.transport`.
"""

__version__ = "0.1.0"
