"""The config loader: typed dataclasses from YAML, with every mistake named by key and file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from alm.config import apply_overrides, from_dict, load, parse_override, require, split_overrides, to_dict
from alm.errors import ConfigError


@dataclass
class Inner:
    width: int = 4
    kind: Literal["a", "b"] = "a"


@dataclass
class Outer:
    name: str = "x"
    lr: float = 1e-3
    steps: int = 10
    flag: bool = False
    ratio: float | None = None
    tags: list[str] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)
    path: Path = Path("data")

    def validate(self) -> None:
        require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        require(self.inner.width % 2 == 0, "inner.width", "must be even")


def test_defaults_and_nested_values() -> None:
    cfg = from_dict(Outer, {"inner": {"width": 8, "kind": "b"}, "tags": ["t"], "path": "somewhere"})
    assert cfg.inner == Inner(8, "b")
    assert cfg.tags == ["t"]
    assert cfg.path == Path("somewhere")
    assert to_dict(cfg)["path"] == "somewhere"


@pytest.mark.parametrize(
    ("data", "key", "fragment"),
    [
        ({"nmae": "y"}, "nmae", "unknown key"),
        ({"inner": {"widht": 3}}, "inner.widht", "unknown key"),
        ({"steps": "ten"}, "steps", "expected an integer"),
        ({"steps": 1.5}, "steps", "expected an integer"),
        ({"flag": "yes"}, "flag", "expected true or false"),
        ({"inner": {"kind": "c"}}, "inner.kind", "must be one of"),
        ({"lr": -1.0}, "lr", "must be > 0"),
        ({"inner": {"width": 3}}, "inner.width", "must be even"),
        ({"tags": "t"}, "tags", "expected a list"),
        ({"inner": 5}, "inner", "expected a mapping"),
    ],
)
def test_mistakes_name_the_key_and_file(data: dict, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_dict(Outer, data, source="cfg.yaml")
    assert info.value.key == key
    assert fragment in str(info.value)
    assert "cfg.yaml" in str(info.value)
    assert info.value.exit_code == 2


def test_yaml_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: run\nlr: 1e-3\ninner:\n  width: 2\n")
    cfg = load(Outer, path, ["lr=3e-4", "inner.kind=b", "ratio=null", "tags=[a, b]"])
    assert cfg.lr == pytest.approx(
        3e-4
    )  # YAML reads "1e-3" as a string; the loader still takes it as a float
    assert cfg.inner.kind == "b"
    assert cfg.ratio is None
    assert cfg.tags == ["a", "b"]


def test_override_with_unknown_key_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'inner\.depth'"):
        load(Outer, None, ["inner.depth=3"])


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load(Outer, bad)
    with pytest.raises(ConfigError, match="not found"):
        load(Outer, tmp_path / "missing.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load(Outer, listing)


def test_parse_and_split_overrides() -> None:
    assert parse_override("train.lr=1e-3") == ("train.lr", "1e-3")
    assert parse_override("model.tie_embeddings=false") == ("model.tie_embeddings", False)
    with pytest.raises(ConfigError):
        parse_override("no-equals-sign")
    grouped = split_overrides(["model.d_model=64", "train.steps=5"], ["model", "train", "data"])
    assert grouped == {"model": ["d_model=64"], "train": ["steps=5"], "data": []}
    with pytest.raises(ConfigError, match="must start with one of"):
        split_overrides(["d_model=64"], ["model", "train"])


def test_prefixed_overrides_are_filtered() -> None:
    data = apply_overrides({}, ["model.d_model=64", "train.steps=5"], strip_prefix="model.")
    assert data == {"d_model": 64}
