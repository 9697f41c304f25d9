"""An expired download link (``/dl/…``) is a 401 with the challenge RFC 9110 requires."""

from __future__ import annotations

from pathlib import Path

from scopeflow.service.app import API_PREFIX
from scopeflow.service.web.downloads import DownloadSigner
from tests.unit.service.conftest import Clock, login, service_app


def test_an_expired_link_is_a_401_with_a_www_authenticate_challenge(
    db_url: str, tmp_path: Path
) -> None:
    with service_app(db_url, tmp_path) as (client, settings):
        clock = Clock()
        client.app.state.download_signer = DownloadSigner(clock=clock)  # type: ignore[attr-defined]
        auth = login(client, "alice")
        body = {"template": "toy", "name": "t", "params": {"units": 1}}
        job_id = client.post(f"{API_PREFIX}/jobs", json=body, headers=auth).json()["id"]
        run = settings.jobs_dir / "alice" / job_id / "run"
        run.mkdir(parents=True, exist_ok=True)
        (run / "summary.json").write_text("{}")
        url = f"{API_PREFIX}/web/jobs/{job_id}/download-token"
        token = client.post(url, headers=auth, json={"ttl_s": 5}).json()["token"]
        assert client.get(f"/dl/{token}/summary.json").status_code == 200
        clock.now += 6
        for r in (
            client.get(f"/dl/{token}/summary.json", headers={"Origin": "https://viewer.example"}),
            client.head(f"/dl/{token}/summary.json"),
            client.get(f"/dl/{token}/results.zip"),
        ):
            assert r.status_code == 401
            challenge = r.headers["www-authenticate"]
            assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge
            exposed = r.headers["access-control-expose-headers"].lower()
            assert "www-authenticate" in exposed  # a viewer on another origin may read it
        # a forged token stays a 404, like a missing file
        forged = token[:-1] + ("B" if token.endswith("A") else "A")
        assert client.get(f"/dl/{forged}/summary.json").status_code == 404
