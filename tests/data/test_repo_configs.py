"""`configs/` in the repo: real files (a symlink into src/ dangles once the folder is copied elsewhere).

`configs/model` and `configs/train` are copies of the presets shipped as package data
(`src/alm/resources/configs/`), which is what `--model NAME` / `--train NAME` read; this test keeps them equal.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "src" / "alm" / "resources" / "configs"


@pytest.mark.parametrize("section", ["model", "train"])
def test_repo_presets_are_real_copies_of_the_shipped_ones(section) -> None:
    copies, shipped = REPO / "configs" / section, SHIPPED / section
    assert copies.is_dir() and not copies.is_symlink(), f"configs/{section} must be a real directory"
    names = sorted(p.name for p in shipped.glob("*.yaml"))
    assert names and sorted(p.name for p in copies.glob("*.yaml")) == names
    for name in names:
        assert not (copies / name).is_symlink()
        assert (copies / name).read_bytes() == (shipped / name).read_bytes(), (
            f"configs/{section}/{name} differs from the shipped preset; after editing "
            f"src/alm/resources/configs/{section}/{name}, run: cp src/alm/resources/configs/{section}/*.yaml "
            f"configs/{section}/"
        )
