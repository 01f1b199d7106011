"""The config loader: typed dataclasses from YAML, with every mistake named by key and file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from alm.config import (
    Presets,
    apply_overrides,
    build,
    from_dict,
    load,
    parse_override,
    qualify_overrides,
    require,
    to_dict,
)
from alm.errors import ConfigError, UsageError


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


def test_parse_and_qualify_overrides() -> None:
    assert parse_override("train.lr=1e-3") == ("train.lr", "1e-3")
    assert parse_override("model.tie_embeddings=false") == ("model.tie_embeddings", False)
    with pytest.raises(ConfigError):
        parse_override("no-equals-sign")
    qualified = qualify_overrides(["model.d_model=64", "train.steps=5"])
    assert qualified == ["model.d_model=64", "train.steps=5"]
    with pytest.raises(ConfigError, match="must start with one of"):
        qualify_overrides(["d_model=64"], ["model", "train"])
    # A command that reads one section takes bare keys too, resolved by the same code.
    assert qualify_overrides(["d_model=64", "model.n_layers=2"], ["model"]) == [
        "model.d_model=64",
        "model.n_layers=2",
    ]


def test_no_override_is_ever_skipped() -> None:
    """The old `apply_overrides(strip_prefix=)` dropped keys of other sections; now they are errors."""
    with pytest.raises(ConfigError, match=r"reads only model\.\* keys") as info:
        qualify_overrides(["model.d_model=64", "train.steps=5"], ["model"])
    assert info.value.key == "train.steps" and info.value.source == "--set"
    assert apply_overrides({}, ["model.d_model=64", "train.steps=5"]) == {
        "model": {"d_model": 64},
        "train": {"steps": 5},
    }


def test_build_blames_the_source_of_a_bad_value(tmp_path: Path) -> None:
    path = tmp_path / "outer.yaml"
    path.write_text("lr: -1.0\n")
    with pytest.raises(ConfigError) as info:
        load(Outer, path)
    assert (info.value.key, info.value.source) == ("lr", str(path))
    with pytest.raises(ConfigError) as info:
        build(Outer, {"lr": 1.0}, ["inner.width=3"], source=str(path))
    assert (info.value.key, info.value.source) == ("inner.width", "--set")
    with pytest.raises(ConfigError) as info:  # a section keeps its prefix in the key
        build(Inner, {}, ["inner.kind=c"], section="inner", source="preset.yaml")
    assert (info.value.key, info.value.source) == ("inner.kind", "--set")
    with pytest.raises(ConfigError) as info:  # per-section files, for the root config
        build(Outer, {"inner": {"width": 3}}, source={"inner": "inner.yaml"})
    assert (info.value.key, info.value.source) == ("inner.width", "inner.yaml")


def test_presets(tmp_path: Path) -> None:
    (tmp_path / "small.yaml").write_text("width: 2\n")
    presets = Presets("inner", Inner, tmp_path)
    assert presets.names() == ["small"] and presets.path("small") == tmp_path / "small.yaml"
    assert presets.load("small", ["kind=b"]) == Inner(2, "b")
    with pytest.raises(UsageError, match="unknown inner preset 'big'; available: small"):
        presets.load("big")


def test_alm_set_holds_default_overrides_for_the_sections_a_command_reads(monkeypatch) -> None:
    monkeypatch.setenv("ALM_SET", "train.steps=4 model.d_model=32 'data.root=my data'")
    # Before the command line's own --set (which wins), and only the sections the command reads.
    assert qualify_overrides(["train.steps=9"]) == [
        "train.steps=4",
        "model.d_model=32",
        "data.root=my data",
        "train.steps=9",
    ]
    assert qualify_overrides(["d_model=64"], ["model"]) == ["model.d_model=32", "model.d_model=64"]
    assert qualify_overrides([], ["data"]) == ["data.root=my data"]
    from alm.model.config import ModelConfig

    assert build(ModelConfig, {"n_heads": 4}, section="model").d_model == 32


def test_alm_set_mistakes_are_named_and_blamed_on_the_variable(monkeypatch) -> None:
    from alm.train.config import TrainConfig

    monkeypatch.setenv("ALM_SET", "train.steps=-3")
    with pytest.raises(ConfigError) as info:
        build(TrainConfig, {}, section="train")
    assert (info.value.key, info.value.source) == ("train.steps", "ALM_SET")
    with pytest.raises(ConfigError) as info:  # the command line's value is the one that counts
        build(TrainConfig, {}, ["steps=-5"], section="train")
    assert info.value.source == "--set"
    for bad, key in (("steps=4", "steps"), ("trian.steps=4", "trian.steps"), ("train.steps", "train.steps")):
        monkeypatch.setenv("ALM_SET", bad)
        with pytest.raises(ConfigError) as info:
            qualify_overrides([], ["model"])  # a typo is an error even where the command reads other sections
        assert (info.value.key, info.value.source) == (key, "ALM_SET")
    monkeypatch.setenv("ALM_SET", "train.steps='4")
    with pytest.raises(ConfigError, match="cannot split"):
        qualify_overrides([])
