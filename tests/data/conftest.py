"""A tiny, fully built dataset shared by the data tests."""

from __future__ import annotations

import pytest
from data_helpers import tiny_config

from alm.data.config import DataConfig
from alm.data.pipeline import DataPaths, ensure_dataset


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> tuple[DataConfig, DataPaths]:
    cfg = tiny_config(tmp_path_factory.mktemp("built") / "data")
    return cfg, ensure_dataset(cfg)
