"""The cyto pipeline's configuration refuses inconsistent settings at load time."""

from __future__ import annotations

from pathlib import Path

import pytest

from scopeflow.core import ConfigError
from scopeflow.core.config import validate_config
from scopeflow.pipelines.cyto import CytoConfig

BASE = {
    "input": {"layout": "channel_stacks", "pattern": "ch{c}.tif"},
    "channels": ["dna", "actin"],
}


def _load(tmp_path: Path, **extra: object) -> CytoConfig:
    return validate_config(CytoConfig, {**BASE, **extra}, source="c.yaml", base_dir=tmp_path)


def test_local_threshold_is_refused_in_ifc_mode(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"segment: method 'local' is for field mode"):
        _load(tmp_path, segment={"mode": "ifc", "method": "local"})
    cfg = _load(tmp_path, segment={"mode": "field", "method": "local", "channel": ["dna", 1]})
    assert cfg.segment.channels == ["dna", 1]


def test_qc_channel_is_checked_when_the_config_loads(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"qc\.channel"):
        _load(tmp_path, qc={"channel": "tubulin"})
    assert _load(tmp_path, segment={"channel": "actin"}).qc_channel_index() == 1
    assert _load(tmp_path, qc={"channel": "dna"}).qc_channel_index() == 0
