"""The reference's error items against the golden ones Dynamo 1.6.1 sent for the same exceptions."""

from __future__ import annotations

import pytest

from fixtures.error_items import EXCEPTIONS, build_exception, golden_caller_text, golden_error_item
from reference_impl.protocol import annotated, error_kinds


@pytest.mark.parametrize("name", EXCEPTIONS)
def test_error_item_is_byte_for_byte_dynamos(name: str) -> None:
    golden = golden_error_item(name)
    item = annotated.error_item(
        error_kinds.describe(build_exception(name)), error_kinds.classify(build_exception(name))
    )
    assert item == golden
    assert list(item["error"]) == list(golden["error"]), "field order differs from Dynamo's"


@pytest.mark.parametrize("name", EXCEPTIONS)
def test_caller_reads_the_class_dynamos_caller_reports(name: str) -> None:
    unwrapped = annotated.unwrap(golden_error_item(name))
    assert unwrapped.details is not None
    assert golden_caller_text(name) == f"{unwrapped.details.error_class}: {unwrapped.error}"


def test_a_legacy_item_with_only_error_type_still_gives_a_class() -> None:
    item = {"event": "error", "error": {"error_type": {"Backend": "InvalidArgument"}, "message": "m"}}
    details = annotated.unwrap(item).details
    assert details is not None and details.error_class == "InvalidRequest"


@pytest.mark.parametrize("error", [None, "text", {"error_type": "CannotConnect", "message": "m"}, {"class": 3}])
def test_an_item_without_a_known_class_has_none(error: object) -> None:
    details = annotated.unwrap({"event": "error", "error": error}).details
    assert details is not None and details.error_class is None


def test_prologue_typed_error_is_dynamos() -> None:
    from fixtures.golden import load_vector

    frames = load_vector("callhome_prologue_error").expected["frames"]
    golden = next(frame for frame in frames if frame["role"] == "prologue")["header_json"]["typed_error"]
    assert error_kinds.prologue_typed_error(golden["message"]) == golden
