"""Error items: their shape and classification, judged against Dynamo 1.6.1's golden items.

Worker role: the standard ``raise`` endpoint raises each exception class of the
golden capture after one item; the suite reads the error item off the wire.
Caller role: the probe worker sends Dynamo's golden error item for each class
and the adapter reports the class its implementation exposed.
"""

from __future__ import annotations

from typing import Any

import pytest

from fixtures.error_items import EXCEPTIONS, error_item_problems, golden_error_item, one_per_class
from fixtures.probes.probe_worker import ProbeWorker
from fixtures.probes.wire_client import WireClient
from fixtures.roles import CallerUnderTest, WorkerUnderTest

CLASSIFIED_FIELDS = ("error_type", "class", "reason")


async def _error_item_for(impl_worker: WorkerUnderTest, wire_client: WireClient, name: str) -> Any:
    result = await wire_client.call(impl_worker.record("raise"), {"exception": name, "count": 1})
    assert result.ack == b"", f"{name}: request refused: {result.ack!r}"
    items = result.items()
    assert items[:1] == [{"data": {"seq": 0}}], f"{name}: expected the item before the failure, got {items}"
    assert len(items) == 2, f"{name}: expected exactly one error item after the first item, got {items[1:]}"
    return items[1]


@pytest.mark.req("ERR-ITEM-SHAPE")
async def test_handler_failures_are_error_items_of_dynamos_shape(impl_worker: WorkerUnderTest, wire_client: WireClient):
    problems = {}
    for name in EXCEPTIONS:
        item = await _error_item_for(impl_worker, wire_client, name)
        found = error_item_problems(item)
        if not found and not item["error"]["message"].startswith(f"{name}: "):
            found = [f"message {item['error']['message']!r} does not start with {name + ': '!r}"]
        if found:
            problems[name] = found
    assert not problems, f"error items not of Dynamo's shape: {problems}"


@pytest.mark.req("ERR-ITEM-CLASS")
async def test_handler_failures_are_classified_as_dynamo_does(impl_worker: WorkerUnderTest, wire_client: WireClient):
    mismatches = {}
    for name in EXCEPTIONS:
        error = (await _error_item_for(impl_worker, wire_client, name)).get("error") or {}
        golden = golden_error_item(name)["error"]
        got = {field: error.get(field) for field in CLASSIFIED_FIELDS}
        want = {field: golden[field] for field in CLASSIFIED_FIELDS}
        if got != want:
            mismatches[name] = {"sent": got, "dynamo_1.6.1": want}
    assert not mismatches, f"classified differently from Dynamo 1.6.1: {mismatches}"


@pytest.mark.req("RS-CALLER-ERROR-CLASS")
@pytest.mark.parametrize("name", one_per_class())
async def test_caller_reports_the_class_of_an_error_item(
    impl_caller: CallerUnderTest, probe_worker: ProbeWorker, name: str
):
    golden = golden_error_item(name)
    answer = await impl_caller.call(probe_worker.endpoint("typed_error_item"), {"error_item": golden}, deadline=10.0)
    assert answer["items"] == [{"seq": 0}], answer
    assert answer["outcome"] == "error", f"the error item was swallowed: {answer}"
    error = answer["error"]
    assert golden["error"]["message"] in error["message"], error
    assert error.get("error_class") == golden["error"]["class"], (
        f"reported class {error.get('error_class')!r}, the item says {golden['error']['class']!r}: {error}"
    )
    # The requirement's other half: an item that names only a known Backend `error_type` (no `class`).
    error_type = golden["error"]["error_type"]
    if isinstance(error_type, dict) and "Backend" in error_type:
        typed_only = {**golden, "error": {k: v for k, v in golden["error"].items() if k != "class"}}
        answer = await impl_caller.call(
            probe_worker.endpoint("typed_error_item"), {"error_item": typed_only}, deadline=10.0
        )
        assert answer["outcome"] == "error", f"the error item was swallowed: {answer}"
        assert answer["error"].get("error_class") == golden["error"]["class"], (
            f"an item of error_type {error_type} without a class: reported class "
            f"{answer['error'].get('error_class')!r}, not {golden['error']['class']!r}"
        )
