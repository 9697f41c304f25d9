"""Service settings: defaults, YAML file, environment variables, account mapping."""

from __future__ import annotations

from pathlib import Path

import pytest

from scopeflow.core import ConfigError
from scopeflow.service.settings import AccountMapping, ServiceSettings


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = ServiceSettings.load(environ={})
    assert s.data_dir == tmp_path / "scopeflow-data"
    assert s.data_dir.is_absolute()
    assert s.db_url is None
    assert s.database_url == f"sqlite:///{(tmp_path / 'scopeflow-data' / 'scopeflow.db')}"
    assert s.jobs_dir == s.data_dir / "jobs"
    assert s.templates_file is None
    assert s.templates_path == s.data_dir / "templates.yaml"
    assert s.token_ttl_s == 12 * 3600
    assert s.quota_bytes == 50 * 1024**3
    assert s.scheduler == "local"
    assert s.accounts == {}
    assert s.default_account is None


def test_from_file_resolves_paths_against_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "conf" / "service.yaml"
    cfg.parent.mkdir()
    cfg.write_text(
        "data_dir: data\n"
        "templates_file: tpl/templates.yaml\n"
        "scheduler: slurm\n"
        "token_ttl_s: 60\n"
        "accounts:\n"
        "  alice: {account: proj-a, partition: gpu}\n"
        "  imaging: {account: proj-img, qos: long}\n"
        "default_account: {account: general}\n"
    )
    s = ServiceSettings.from_file(cfg)
    assert s.data_dir == tmp_path / "conf" / "data"
    assert s.templates_path == tmp_path / "conf" / "tpl" / "templates.yaml"
    assert s.scheduler == "slurm"
    assert s.token_ttl_s == 60
    assert s.account_for("alice", "imaging") == AccountMapping(account="proj-a", partition="gpu")
    assert s.account_for("bob", "imaging") == AccountMapping(account="proj-img", qos="long")
    assert s.account_for("carol") == AccountMapping(account="general")


def test_environment_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "service.yaml"
    cfg.write_text("data_dir: from-file\n")
    monkeypatch.chdir(tmp_path)
    env = {"SCOPEFLOW_DATA_DIR": "from-env", "SCOPEFLOW_DB_URL": "postgresql+psycopg://u@h/db"}
    s = ServiceSettings.load(cfg, environ=env)
    # a relative path from the environment is relative to the current directory
    assert s.data_dir == tmp_path / "from-env"
    assert s.database_url == "postgresql+psycopg://u@h/db"
    s = ServiceSettings.load(cfg, environ=env, data_dir=tmp_path / "cli", db_url=None)
    assert s.data_dir == tmp_path / "cli"
    assert ServiceSettings.load(cfg, environ={}).data_dir == tmp_path / "from-file"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("scheduler: pbs\n", "scheduler"),
        ("token_ttl_s: 0\n", "token_ttl_s"),
        ("unknown: 1\n", "unknown"),
        ("accounts: {alice: {acount: x}}\n", "accounts.alice.acount"),
    ],
)
def test_invalid_settings(tmp_path: Path, text: str, key: str) -> None:
    cfg = tmp_path / "service.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        ServiceSettings.from_file(cfg)
    assert [k for k, _ in info.value.problems] == [key]
