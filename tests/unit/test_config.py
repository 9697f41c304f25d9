from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from scopeflow.core import ConfigError, InputNotFoundError
from scopeflow.core.config import InputPath, OutputPath, StrictModel, load_config


class Inner(StrictModel):
    sigma: float = Field(1.0, gt=0)


class Cfg(StrictModel):
    input: InputPath
    output: OutputPath = Path("out")
    inner: Inner = Field(default_factory=Inner)
    views: list[int] = Field(default_factory=list)


def test_relative_paths_resolve_against_config_folder(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text("input: data\noutput: results\n")
    cfg = load_config(Cfg, cfg_file)
    assert cfg.input == tmp_path / "data"
    assert cfg.output == tmp_path / "results"


def test_errors_name_every_key_and_expectation(tmp_path: Path) -> None:
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text("input: nowhere\ninner: {sigma: -1}\nviews: [1, x]\nextra: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(Cfg, cfg_file)
    keys = dict(info.value.problems)
    assert "path does not exist" in keys["input"]
    assert "greater than 0" in keys["inner.sigma"]
    assert "valid integer" in keys["views[1]"]
    assert keys["extra"].startswith("unknown key")
    assert str(cfg_file) in str(info.value)


def test_missing_required_key_and_bad_yaml(tmp_path: Path) -> None:
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("{}\n")
    with pytest.raises(ConfigError, match="input: required key is missing"):
        load_config(Cfg, cfg_file)
    cfg_file.write_text("input: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Cfg, cfg_file)
    cfg_file.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(Cfg, cfg_file)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match="configuration file not found") as info:
        load_config(Cfg, tmp_path / "absent.yaml")
    assert isinstance(info.value, FileNotFoundError)
