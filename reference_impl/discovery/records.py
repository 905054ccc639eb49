"""Instance records, byte-compatible with Dynamo's ``DiscoveryInstance::Endpoint``.

The record is internally tagged (``"type":"Endpoint"``) and its transport is
externally tagged (``{"tcp": ...}``, ``{"nats_tcp": ...}``, ``{"http": ...}``).
``instance_id`` is a u64 JSON number and may exceed 2**53.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from reference_impl.errors import MalformedMessage
from reference_impl.protocol.payload_codec import dumps_compact
from reference_impl.routing import EndpointId

U64_MAX = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    namespace: str
    component: str
    endpoint: str
    instance_id: int
    transport_kind: str  # key of the transport map: tcp, nats_tcp or http
    transport_address: str
    device_type: str | None = "cpu"
    request_plane_codec: str | None = "msgpack"

    @property
    def endpoint_id(self) -> EndpointId:
        return EndpointId(self.namespace, self.component, self.endpoint)

    @property
    def key(self) -> str:
        """Logical key below the ``v1/instances`` bucket."""
        return f"{self.namespace}/{self.component}/{self.endpoint}/{self.instance_id:x}"

    def to_json_bytes(self) -> bytes:
        obj: dict[str, Any] = {
            "type": "Endpoint",
            "component": self.component,
            "endpoint": self.endpoint,
            "namespace": self.namespace,
            "instance_id": self.instance_id,
            "transport": {self.transport_kind: self.transport_address},
        }
        if self.device_type is not None:
            obj["device_type"] = self.device_type
        if self.request_plane_codec is not None:
            obj["request_plane_codec"] = self.request_plane_codec
        return dumps_compact(obj)

    @classmethod
    def from_json_bytes(cls, raw: bytes) -> InstanceRecord:
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedMessage(f"instance record is not JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise MalformedMessage("instance record must be a JSON object")
        if obj.get("type", "Endpoint") != "Endpoint":
            raise MalformedMessage(f"not an endpoint record (type {obj.get('type')!r})")
        for name in ("namespace", "component", "endpoint"):
            if not isinstance(obj.get(name), str):
                raise MalformedMessage(f"instance record: {name!r} must be a string")
        instance_id = obj.get("instance_id")
        if not isinstance(instance_id, int) or isinstance(instance_id, bool) or not 0 <= instance_id <= U64_MAX:
            raise MalformedMessage(f"instance record: instance_id must be a u64, got {instance_id!r}")
        transport = obj.get("transport")
        if not isinstance(transport, dict) or len(transport) != 1:
            raise MalformedMessage(f"instance record: transport must be a one-key map, got {transport!r}")
        ((kind, address),) = transport.items()
        if not isinstance(address, str):
            raise MalformedMessage("instance record: transport address must be a string")
        device = obj.get("device_type")
        codec = obj.get("request_plane_codec")
        return cls(
            namespace=obj["namespace"],
            component=obj["component"],
            endpoint=obj["endpoint"],
            instance_id=instance_id,
            transport_kind=kind,
            transport_address=address,
            device_type=device if isinstance(device, str) else None,
            request_plane_codec=codec if isinstance(codec, str) else None,
        )
