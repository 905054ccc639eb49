"""Dynamo's ``file`` discovery backend: one JSON file per instance.

Layout: ``$DYN_FILE_KV/v1/instances/<key>``, where the key
``ns/component/endpoint/<id:x>`` is percent-encoded with every byte outside
``[A-Za-z0-9]`` escaped (``-``, ``_`` and ``.`` included).  Writes go to a
``.tmp_<16 hex>`` file and are renamed into place.  Liveness is the file's
mtime: Dynamo deletes files untouched for 10 s, so owners refresh them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import tempfile
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

from reference_impl.discovery.records import InstanceRecord
from reference_impl.errors import MalformedMessage
from reference_impl.routing import EndpointId

log = logging.getLogger(__name__)

INSTANCES_BUCKET = ("v1", "instances")
TMP_PREFIX = ".tmp_"
DEFAULT_TTL = 10.0
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


def encode_key(key: str) -> str:
    """Percent-encode like Rust's ``NON_ALPHANUMERIC`` set, uppercase hex."""
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in key.encode())


def decode_key(name: str) -> str:
    """Lenient percent-decoding, as Dynamo's reader does."""
    return urllib.parse.unquote(name)


def default_root() -> Path:
    return Path(os.environ.get("DYN_FILE_KV") or Path(tempfile.gettempdir()) / "dynamo_store_kv")


class FileDiscovery:
    """Read and write instance records in a Dynamo file store."""

    def __init__(self, root: str | os.PathLike[str] | None = None, *, ttl: float = DEFAULT_TTL) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.ttl = ttl
        self.bucket = self.root.joinpath(*INSTANCES_BUCKET)

    def path_of(self, record: InstanceRecord) -> Path:
        return self.bucket / encode_key(record.key)

    def put(self, record: InstanceRecord) -> Path:
        self.bucket.mkdir(parents=True, exist_ok=True)
        final = self.path_of(record)
        tmp = self.bucket / f"{TMP_PREFIX}{secrets.token_hex(8)}"
        tmp.write_bytes(record.to_json_bytes())
        os.replace(tmp, final)
        return final

    def touch(self, record: InstanceRecord) -> bool:
        """Refresh liveness; re-create the file if a peer garbage-collected it."""
        path = self.path_of(record)
        try:
            os.utime(path)
            return True
        except FileNotFoundError:
            self.put(record)
            return False

    def delete(self, record: InstanceRecord) -> None:
        try:
            self.path_of(record).unlink()
        except FileNotFoundError:
            pass

    def _entries(self) -> Iterable[Path]:
        try:
            return [p for p in self.bucket.iterdir() if not p.name.startswith(TMP_PREFIX)]
        except FileNotFoundError:
            return []

    def records(self, endpoint: EndpointId | None = None, *, include_stale: bool = False) -> list[InstanceRecord]:
        """Live records, filtered on exact field equality (not a key prefix)."""
        now = time.time()
        records = []
        for path in self._entries():
            try:
                if not include_stale and now - path.stat().st_mtime > self.ttl:
                    continue
                record = InstanceRecord.from_json_bytes(path.read_bytes())
            except FileNotFoundError:
                continue
            except MalformedMessage as exc:
                log.debug("skipping %s: %s", path.name, exc)
                continue
            if endpoint is None or record.endpoint_id == endpoint:
                records.append(record)
        return sorted(records, key=lambda r: r.instance_id)

    async def wait_for(self, endpoint: EndpointId, *, count: int = 1, timeout: float = 10.0) -> list[InstanceRecord]:
        deadline = time.monotonic() + timeout
        while True:
            records = self.records(endpoint)
            if len(records) >= count:
                return records
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{len(records)} of {count} instance(s) of {endpoint} appeared within {timeout}s")
            await asyncio.sleep(0.05)


class Registration:
    """Keeps records alive by refreshing their mtime well inside the TTL."""

    def __init__(self, store: FileDiscovery, records: list[InstanceRecord]) -> None:
        self.store = store
        self.records = records
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        for record in self.records:
            self.store.put(record)
        self._task = asyncio.ensure_future(self._refresh())

    async def _refresh(self) -> None:
        interval = max(self.store.ttl / 4, 0.5)
        while True:
            await asyncio.sleep(interval)
            for record in self.records:
                try:
                    self.store.touch(record)
                except OSError as exc:
                    log.warning("cannot refresh discovery record %s: %s", record.key, exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for record in self.records:
            self.store.delete(record)
