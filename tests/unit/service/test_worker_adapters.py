"""The adapters a worker uses are :func:`make_scheduler`'s, with the adapters' own defaults."""

from __future__ import annotations

import shutil
from pathlib import Path

from scopeflow.service.migrate import upgrade
from scopeflow.service.schedulers import LocalScheduler, SlurmScheduler, make_scheduler
from scopeflow.service.settings import ServiceSettings
from scopeflow.service.worker import Worker
from tests.conftest import EXAMPLE_TEMPLATES


def _settings(tmp_path: Path, scheduler: str) -> ServiceSettings:
    data = tmp_path / scheduler
    data.mkdir()
    shutil.copy(EXAMPLE_TEMPLATES, data / "templates.yaml")
    settings = ServiceSettings(data_dir=data, db_url=None, scheduler=scheduler)
    upgrade(settings.database_url)
    return settings


def test_the_local_cancel_grace_has_one_default(tmp_path: Path) -> None:
    """The worker's local adapter waits as long as any other between SIGTERM and SIGKILL."""
    with Worker(_settings(tmp_path, "local")) as worker:
        adapter = worker.scheduler
        assert isinstance(adapter, LocalScheduler)
        assert adapter.grace_s == LocalScheduler().grace_s == 5.0
        assert worker._scheduler_for("slurm").name == "slurm"  # a job submitted elsewhere
    local = make_scheduler("local")
    assert isinstance(local, LocalScheduler) and local.grace_s == adapter.grace_s
    with Worker(_settings(tmp_path, "slurm")) as worker:
        assert isinstance(worker.scheduler, SlurmScheduler)
        other = worker._scheduler_for("local")  # a job submitted to the local adapter
        assert isinstance(other, LocalScheduler) and other.grace_s == 5.0
