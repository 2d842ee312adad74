"""The data dir a first start creates is made durable: every directory created is fsynced with
its parent (a power cut must not lose the data dir whose WAL was already fsynced)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from actors.supervisor.node import make_dirs_durably, private_dir


def test_each_directory_created_is_fsynced_with_its_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:  # the real fsync, noting what it synced
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    data_dir = tmp_path / "new" / "data"
    member = data_dir / "member"
    assert make_dirs_durably(str(member), 0o700) == [str(tmp_path / "new"), str(data_dir), str(member)]
    for created in (tmp_path / "new", data_dir, member):
        assert stat.S_IMODE(created.stat().st_mode) == 0o700
        assert str(created) in synced and str(created.parent) in synced
    synced.clear()
    assert make_dirs_durably(str(member), 0o700) == [] and synced == []  # nothing new: nothing to sync
    assert private_dir(str(data_dir / "run")) == 0 and str(data_dir) in synced
