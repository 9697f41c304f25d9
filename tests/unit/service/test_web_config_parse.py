"""The web UI's ``config-parse`` and ``config-preview`` routes, in process.

An edited ``config.yaml`` comes from the user: YAML anchors and aliases are refused (an alias
bomb of a few hundred bytes would otherwise expand to millions of keys, each one a problem),
and the problems answered are capped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from scopeflow.service.app import API_PREFIX
from scopeflow.service.web.router import MAX_PROBLEMS
from tests.unit.service.conftest import login, service_app

PARSE = f"{API_PREFIX}/web/config-parse"
PREVIEW = f"{API_PREFIX}/web/config-preview"


@pytest.fixture
def client(db_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    with service_app(db_url, tmp_path) as (c, _):
        yield c, login(c, "alice")


def _alias_bomb(levels: int = 6, width: int = 10) -> str:
    """``width ** levels`` leaves from a few hundred bytes: each level names the last ``width``
    times."""
    keys = [f"k{i}" for i in range(width)]
    lines = ["l0: &l0 {" + ", ".join(f"{k}: x" for k in keys) + "}"]
    for level in range(1, levels):
        refs = ", ".join(f"{k}: *l{level - 1}" for k in keys)
        lines.append(f"l{level}: &l{level} {{{refs}}}")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_with_one_problem(
    client: tuple[TestClient, dict[str, str]],
) -> None:
    c, auth = client
    bomb = _alias_bomb()
    assert len(bomb) < 1000
    r = c.post(PARSE, json={"template": "cyto-ifc", "yaml": bomb}, headers=auth)
    assert r.status_code == 422, r.text[:500]
    detail = r.json()["detail"]
    assert len(detail) == 1, detail[:3]
    assert detail[0]["loc"] == ["yaml"]
    assert "anchors and aliases are not accepted" in detail[0]["msg"], detail


@pytest.mark.parametrize(
    "text",
    [
        "pixel_size: &p 0.5\n",  # an anchor alone
        "a: {x: 1}\nsegment: {<<: *a}\n",  # an alias to an anchor never made
        "base: &b {min_area: 5}\nsegment:\n  <<: *b\n",  # a merge key
    ],
)
def test_anchors_and_aliases_are_refused(
    client: tuple[TestClient, dict[str, str]], text: str
) -> None:
    c, auth = client
    r = c.post(PARSE, json={"template": "cyto-ifc", "yaml": text}, headers=auth)
    assert r.status_code == 422, r.text
    assert [p["loc"] for p in r.json()["detail"]] == [["yaml"]]


def test_too_deep_a_nesting_is_a_422_not_a_500(
    client: tuple[TestClient, dict[str, str]],
) -> None:
    c, auth = client
    r = c.post(PARSE, json={"template": "cyto-ifc", "yaml": "[" * 100_000}, headers=auth)
    assert r.status_code == 422, r.text[:500]
    assert r.json()["detail"] == [{"loc": ["yaml"], "msg": "nested too deeply"}]


def test_the_problems_of_a_parsed_config_are_capped(
    client: tuple[TestClient, dict[str, str]],
) -> None:
    c, auth = client
    extra = 3 * MAX_PROBLEMS
    text = "pixel_size: 0.5\n" + "".join(f"unknown{i}: 1\n" for i in range(extra))
    r = c.post(PARSE, json={"template": "cyto-ifc", "yaml": text}, headers=auth)
    assert r.status_code == 200, r.text[:500]
    answer = r.json()
    assert answer["params"] == {"pixel_size": 0.5}
    detail = answer["detail"]
    assert len(detail) == MAX_PROBLEMS + 1
    assert detail[0] == {"loc": ["unknown0"], "msg": "not a parameter of this template (ignored)"}
    assert detail[-1]["loc"] == []
    assert f"{extra - MAX_PROBLEMS} more" in detail[-1]["msg"]


def test_a_few_problems_are_all_answered(client: tuple[TestClient, dict[str, str]]) -> None:
    c, auth = client
    text = "pixel_size: 0.5\nunknown: 1\n"
    r = c.post(PARSE, json={"template": "cyto-ifc", "yaml": text}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["detail"] == [
        {"loc": ["unknown"], "msg": "not a parameter of this template (ignored)"}
    ]


@pytest.mark.parametrize("template", ["cyto-ifc", "spim-fusion", "example-segment", "toy"])
def test_a_previewed_config_parses_back(
    client: tuple[TestClient, dict[str, str]], template: str
) -> None:
    """The preview's YAML never holds anchors, so applying it unchanged is never refused."""
    c, auth = client
    r = c.post(PREVIEW, json={"template": template, "params": {}}, headers=auth)
    assert r.status_code == 200, r.text
    r = c.post(PARSE, json={"template": template, "yaml": r.json()["yaml"]}, headers=auth)
    assert r.status_code == 200, r.text


def test_the_preview_and_job_creation_answer_the_same_problems(
    client: tuple[TestClient, dict[str, str]],
) -> None:
    """Both build ``detail`` with :func:`~scopeflow.core.errors.problems_json`."""
    c, auth = client
    params = {"segment": {"sigma": -1}, "nonsense": 1}
    r = c.post(PREVIEW, json={"template": "example-segment", "params": params}, headers=auth)
    assert r.status_code == 200, r.text
    previewed = r.json()["detail"]
    body = {"template": "example-segment", "name": "n", "params": params}
    r = c.post(f"{API_PREFIX}/jobs", json=body, headers=auth)
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == previewed
    assert ["segment", "sigma"] in [p["loc"] for p in previewed], previewed
