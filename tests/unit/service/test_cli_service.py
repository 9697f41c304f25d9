"""``scopeflow db upgrade`` and ``scopeflow admin create-user|create-api-key``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from scopeflow.cli import app
from scopeflow.core import AlreadyExistsError
from scopeflow.service.auth import authenticate, resolve_token
from scopeflow.service.db import make_engine, session_factory
from scopeflow.service.migrate import current_revision, head_revision
from scopeflow.service.settings import ServiceSettings
from tests.conftest import EXAMPLE_TEMPLATES, run_cli

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("SCOPEFLOW_DATA_DIR", "SCOPEFLOW_DB_URL", "SCOPEFLOW_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "data"


def _session(data_dir: Path) -> Iterator[Session]:
    engine = make_engine(ServiceSettings.load(data_dir=data_dir).database_url)
    try:
        with session_factory(engine)() as s:
            yield s
    finally:
        engine.dispose()


def test_db_upgrade(data_dir: Path) -> None:
    result = runner.invoke(app, ["db", "upgrade", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    url = ServiceSettings.load(data_dir=data_dir).database_url
    assert current_revision(url) == head_revision()
    assert (data_dir / "scopeflow.db").is_file()
    assert f"revision {head_revision()}" in result.output


def test_create_user_with_password_then_login(data_dir: Path) -> None:
    args = ["admin", "create-user", "alice", "--password", "pw1", "--admin", "--group", "lab"]
    result = runner.invoke(app, [*args, "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert "created admin 'alice'" in result.output
    for s in _session(data_dir):
        user = authenticate(s, "alice", "pw1")
        assert user is not None
        assert user.is_admin
        assert user.group == "lab"
        assert authenticate(s, "alice", "pw2") is None


def test_create_user_prompts_for_the_password(data_dir: Path) -> None:
    db = f"sqlite:///{data_dir / 'other.db'}"
    result = runner.invoke(
        app, ["admin", "create-user", "bob", "--db", db], input="hunter22\nhunter22\n"
    )
    assert result.exit_code == 0, result.output
    assert "hunter22" not in result.output  # hidden input
    assert "created user 'bob'" in result.output
    engine = make_engine(db)
    with session_factory(engine)() as s:
        user = authenticate(s, "bob", "hunter22")
        assert user is not None
        assert not user.is_admin
    engine.dispose()
    # a mismatched confirmation is asked again: the second, matching pair is the password
    result = runner.invoke(
        app, ["admin", "create-user", "carol", "--db", db], input="aaa\nbbb\nccc\nccc\n"
    )
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output
    engine = make_engine(db)
    with session_factory(engine)() as s:
        assert authenticate(s, "carol", "ccc") is not None
        assert authenticate(s, "carol", "aaa") is None
    engine.dispose()


def test_create_user_errors(data_dir: Path) -> None:
    dd = ["--data-dir", str(data_dir)]
    assert (
        runner.invoke(app, ["admin", "create-user", "alice", "--password", "x", *dd]).exit_code == 0
    )
    result = runner.invoke(app, ["admin", "create-user", "alice", "--password", "y", *dd])
    assert isinstance(result.exception, AlreadyExistsError)
    result = runner.invoke(app, ["admin", "create-user", " x", "--password", "y", *dd])
    assert result.exit_code == 2
    assert "user name" in result.output
    result = runner.invoke(app, ["admin", "create-user", "dan", "--password", "", *dd])
    assert result.exit_code == 2
    assert "must not be empty" in result.output


def test_create_api_key(data_dir: Path) -> None:
    dd = ["--data-dir", str(data_dir)]
    runner.invoke(app, ["admin", "create-user", "alice", "--password", "pw", *dd])
    result = runner.invoke(app, ["admin", "create-api-key", "alice", "--label", "nightly", *dd])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert len(key) >= 43
    assert " " not in key
    for s in _session(data_dir):
        user = resolve_token(s, key)
        assert user is not None
        assert user.name == "alice"
    result = runner.invoke(app, ["admin", "create-api-key", "nobody", *dd])
    assert result.exit_code == 2
    assert "no user named 'nobody'" in result.output


def test_list_and_revoke_api_keys(data_dir: Path) -> None:
    dd = ["--data-dir", str(data_dir)]
    for name in ("alice", "bob"):
        runner.invoke(app, ["admin", "create-user", name, "--password", "pw", *dd])
    keys = {}
    for name, label in (("alice", "nightly"), ("bob", "robot")):
        result = runner.invoke(app, ["admin", "create-api-key", name, "--label", label, *dd])
        keys[name] = result.stdout.strip()
    result = runner.invoke(app, ["admin", "api-keys", *dd])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].split("\t") == [
        "id",
        "user",
        "name",
        "created_at",
        "expires_at",
        "last_used_at",
    ]
    rows = {line.split("\t")[1]: line.split("\t") for line in lines[1:]}
    assert set(rows) == {"alice", "bob"}
    assert rows["alice"][2] == "nightly"
    assert rows["alice"][4] == "-"  # never expires
    assert keys["alice"] not in result.stdout  # only the hash is kept
    result = runner.invoke(app, ["admin", "api-keys", "--user", "bob", *dd])
    assert [line.split("\t")[1] for line in result.stdout.strip().splitlines()[1:]] == ["bob"]
    result = runner.invoke(app, ["admin", "revoke-api-key", rows["alice"][0], *dd])
    assert result.exit_code == 0, result.output
    for s in _session(data_dir):
        assert resolve_token(s, keys["alice"]) is None
        assert resolve_token(s, keys["bob"]) is not None
    result = runner.invoke(app, ["admin", "revoke-api-key", rows["alice"][0], *dd])
    assert result.exit_code == 2
    assert "no API key" in result.output
    result = runner.invoke(app, ["admin", "api-keys", "--user", "nobody", *dd])
    assert result.exit_code == 2


def test_installed_command(data_dir: Path) -> None:
    """Through the real entry point: an existing user is a clear error (exit 2), no traceback."""
    dd = ["--data-dir", str(data_dir)]
    first = run_cli(["admin", "create-user", "alice", "--password", "pw", *dd], timeout=120)
    assert first.returncode == 0, first.stderr
    again = run_cli(["admin", "create-user", "alice", "--password", "pw", *dd], timeout=120)
    assert again.returncode == 2
    assert "user 'alice' exists already" in again.stderr
    assert "Traceback" not in again.stderr


def test_admin_templates_checks_before_installing(data_dir: Path) -> None:
    """A registry with a wrong template is refused (naming it) and nothing is replaced."""
    example = EXAMPLE_TEMPLATES
    args = ["admin", "templates", "--data-dir", str(data_dir)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0 and "no templates yet" in first.output
    ok = runner.invoke(app, [*args, "--load", str(example)])
    assert ok.exit_code == 0, ok.output
    assert "installed 4 templates" in ok.output and "toy" in ok.output
    installed = (data_dir / "templates.yaml").read_text()
    bad = data_dir / "bad.yaml"
    bad.write_text("templates:\n  - name: bad\n    pipeline: toy\n    user_parameters: [nosuch]\n")
    result = run_cli([*args, "--load", bad])
    assert result.returncode == 2
    assert "'bad'" in result.stderr and "nosuch" in result.stderr
    assert (data_dir / "templates.yaml").read_text() == installed
