"""Demo data instead of an upload (``POST /jobs/{id}/demo-data``), in process, real database."""

from __future__ import annotations

import filecmp
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from scopeflow.service.app import API_PREFIX
from scopeflow.service.settings import ServiceSettings
from scopeflow.service.templates import Template
from scopeflow.testing import make_cyto_dataset
from scopeflow.testing._spim_cache import _draw
from tests.unit.service.conftest import EXAMPLE, create_job, login, service_app

API = API_PREFIX


def _templates() -> str:
    """The example templates with smaller demo data (20 IFC images; 32 x 64 x 64 views)."""
    registry = yaml.safe_load(EXAMPLE.read_text())
    for t in registry["templates"]:
        if t["name"] == "cyto-ifc":
            t["demo"]["images"] = 20
        if t["name"] == "spim-fusion":
            t["demo"]["shape"] = [32, 64, 64]
    return str(yaml.safe_dump(registry))


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, ServiceSettings]]:
    with service_app(db_url, tmp_path, templates=_templates()) as app:
        yield app


def _inputs(settings: ServiceSettings, user: str, job_id: str) -> Path:
    return settings.jobs_dir / user / job_id / "input"


def test_templates_list_their_demo_data(api: tuple[TestClient, ServiceSettings]) -> None:
    client, _ = api
    listed = {
        t["name"]: t["demo"]
        for t in client.get(f"{API}/templates", headers=login(client, "alice")).json()
    }
    assert listed["cyto-ifc"]["dataset"] == "cyto-ifc"
    assert "synthetic" in listed["cyto-ifc"]["description"]
    assert listed["spim-fusion"]["dataset"] == "spim"
    assert listed["toy"] is None


def test_ifc_demo_data_are_the_generators_files_and_the_job_can_start(
    api: tuple[TestClient, ServiceSettings], tmp_path: Path
) -> None:
    client, settings = api
    alice = login(client, "alice")
    job_id = create_job(client, alice, "cyto-ifc")["id"]
    r = client.post(f"{API}/jobs/{job_id}/demo-data", headers=alice)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "ready"
    inputs = _inputs(settings, "alice", job_id)
    expected = tmp_path / "expected"
    make_cyto_dataset(expected, kind="ifc", n=20, seed=0)
    assert r.json()["files"] == sum(1 for p in expected.rglob("*") if p.is_file()) - 1
    for c in range(6):  # the same bytes as the generator's, so its truth applies
        assert filecmp.cmp(inputs / f"ifc/ch{c}.tif", expected / f"ifc/ch{c}.tif", shallow=False)
    assert filecmp.cmp(inputs / "truth.csv", expected / "truth.csv", shallow=False)
    assert not (inputs / "config.yaml").exists()  # the job's config comes from its template
    assert not (inputs.parent / ".demo").exists()
    assert client.get(f"{API}/jobs/{job_id}", headers=alice).json()["state"] == "ready"
    listed = client.get(f"{API}/jobs/{job_id}/files", headers=alice).json()
    assert {"ifc/ch0.tif", "truth.csv"} <= {f["path"] for f in listed["files"]}
    r = client.post(f"{API}/jobs/{job_id}/start", headers=alice)  # the config validates
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "queued"


def test_spim_demo_data_follow_the_jobs_parameters(api: tuple[TestClient, ServiceSettings]) -> None:
    client, settings = api
    alice = login(client, "alice")
    job_id = create_job(client, alice, "spim-fusion", ntimepoints=2, angles=[0.0, 120.0, 240.0])[
        "id"
    ]
    r = client.post(f"{API}/jobs/{job_id}/demo-data", headers=alice)
    assert r.status_code == 200, r.text
    assert _draw.cache_info().currsize == 0  # the API process keeps no drawn scene
    inputs = _inputs(settings, "alice", job_id)
    tiffs = sorted(p.name for p in (inputs / "tiff").iterdir())
    assert tiffs == [f"t{t:03d}_v{v:02d}.tif" for t in range(2) for v in range(3)]
    truth = json.loads((inputs / "truth.json").read_text())
    assert len(truth["views"]) == 3
    assert client.post(f"{API}/jobs/{job_id}/start", headers=alice).status_code == 200


def test_demo_data_refused_without_writing_anything(
    api: tuple[TestClient, ServiceSettings],
) -> None:
    client, settings = api
    alice, bob = login(client, "alice"), login(client, "bob")
    job_id = create_job(client, alice, "cyto-ifc")["id"]
    # another user's job: not found, nothing written
    assert client.post(f"{API}/jobs/{job_id}/demo-data", headers=bob).status_code == 404
    assert client.post(f"{API}/jobs/{job_id}/demo-data").status_code == 401
    # a job that has an upload under way
    r = client.post(
        f"{API}/jobs/{job_id}/files",
        headers=alice,
        json={"path": "ifc/ch0.tif", "size": 10, "sha256": "0" * 64},
    )
    assert r.status_code == 200, r.text
    r = client.post(f"{API}/jobs/{job_id}/demo-data", headers=alice)
    assert r.status_code == 409
    assert "uploading" in r.json()["detail"]
    assert list(_inputs(settings, "alice", job_id).rglob("*")) == []
    # a template without demo data
    toy = create_job(client, alice, "toy")["id"]
    r = client.post(f"{API}/jobs/{toy}/demo-data", headers=alice)
    assert r.status_code == 409
    assert "no demo data" in r.json()["detail"]
    # twice: the second finds the job ready
    job2 = create_job(client, alice, "cyto-ifc")["id"]
    assert client.post(f"{API}/jobs/{job2}/demo-data", headers=alice).status_code == 200
    r = client.post(f"{API}/jobs/{job2}/demo-data", headers=alice)
    assert r.status_code == 409
    assert "ready" in r.json()["detail"]


def test_demo_data_count_against_the_quota(db_url: str, tmp_path: Path) -> None:
    with service_app(db_url, tmp_path, templates=_templates(), quota_bytes=100_000) as (
        client,
        settings,
    ):
        alice = login(client, "alice")
        job_id = create_job(client, alice, "cyto-ifc")["id"]
        r = client.post(f"{API}/jobs/{job_id}/demo-data", headers=alice)
        assert r.status_code == 413, r.text
        assert "quota" in r.json()["detail"]
        job_dir = settings.jobs_dir / "alice" / job_id
        assert list((job_dir / "input").rglob("*")) == []
        assert not (job_dir / ".demo").exists()
        assert client.get(f"{API}/jobs/{job_id}", headers=alice).json()["state"] == "created"


def test_a_template_demo_must_suit_its_pipeline() -> None:
    registry = yaml.safe_load(EXAMPLE.read_text())
    ifc = next(t for t in registry["templates"] if t["name"] == "cyto-ifc")
    ifc["demo"] = {"dataset": "spim"}
    with pytest.raises(ValueError, match="not for the cyto pipeline"):
        Template.model_validate(ifc)
    ifc["demo"] = {"dataset": "cyto-ifc", "shape": [8, 64, 64]}
    with pytest.raises(ValueError, match="shape"):
        Template.model_validate(ifc)


def test_a_crashed_writer_leaves_nothing_in_the_way_and_one_writes_at_a_time(
    api: tuple[TestClient, ServiceSettings],
) -> None:
    from scopeflow.service.files import file_lock

    client, settings = api
    alice = login(client, "alice")
    job_id = create_job(client, alice, "cyto-ifc")["id"]
    job_dir = settings.jobs_dir / "alice" / job_id
    # another request is writing this job's demo data: refused, nothing touched
    with file_lock(job_dir / ".demo.lock") as held:
        assert held
        r = client.post(f"{API}/jobs/{job_id}/demo-data", headers=alice)
        assert r.status_code == 409
        assert "being written" in r.json()["detail"]
    # a process that died while writing left its scratch folder: the next request starts over
    (job_dir / ".demo" / "ifc").mkdir(parents=True)
    (job_dir / ".demo" / "ifc" / "half-written.tif").write_bytes(b"junk")
    r = client.post(f"{API}/jobs/{job_id}/demo-data", headers=alice)
    assert r.status_code == 200, r.text
    inputs = _inputs(settings, "alice", job_id)
    assert not (inputs / "ifc" / "half-written.tif").exists()
    assert not (job_dir / ".demo").exists()
