"""The session's discovery stores go to the memory filesystem when there is one, and are gone after the session."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures import discovery_dirs
from fixtures.discovery_dirs import discovery_parent


def test_stores_are_made_on_the_memory_filesystem_and_removed_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = tmp_path / "shm"
    memory.mkdir()
    monkeypatch.setattr(discovery_dirs, "MEMORY_FILESYSTEM", memory)
    with discovery_parent(tmp_path / "disk") as parent:
        assert parent.parent == memory and parent.is_dir()
        (parent / "kv-caller-tcp-1" / "v1").mkdir(parents=True)
    assert not parent.exists(), "the stores outlived the session"
    assert list(memory.iterdir()) == []


def test_without_a_memory_filesystem_the_stores_stay_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discovery_dirs, "MEMORY_FILESYSTEM", tmp_path / "no-such-dir")
    with discovery_parent(tmp_path) as parent:
        assert parent == tmp_path
    assert tmp_path.is_dir(), "pytest's own temporary directory is kept"
