"""The one atomic writer: complete files only, usual permissions, no temp files left behind."""

from __future__ import annotations

import os
import stat

import pytest

from alm.fileio import TMP_PREFIX, atomic_write, atomic_write_json, atomic_write_text


def test_atomic_write_gives_umask_permissions_not_owner_only(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "config.yaml", "a: 1\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_text() == "a: 1\n"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path) -> None:
    path = atomic_write_json(tmp_path / "stats.json", {"ok": True})

    def explode(fh) -> None:
        fh.write(b"partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write(path, explode)
    assert path.read_text().strip().startswith("{")
    assert not list(tmp_path.glob(TMP_PREFIX + "*"))
