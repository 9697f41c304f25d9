from __future__ import annotations

import pytest

from scopeflow.core import PipelineError
from scopeflow.core.config import StrictModel
from scopeflow.engine import ONCE, Node, Pipeline, Step, all_units, per_unit


def _noop(ctx: object) -> None:
    return None


class _Cfg(StrictModel):
    n: int = 3


def _pipeline(*steps: Step) -> Pipeline:
    return Pipeline("p", steps, _Cfg, lambda c: [f"t{i}" for i in range(c.n)])


def test_expand_per_unit_and_all_units() -> None:
    pipe = _pipeline(
        Step("merge", _noop, fan_out=False, after=(all_units("b"),)),
        Step("a", _noop),
        Step("b", _noop, after=(per_unit("a"),)),
        Step("fuse", _noop, after=(all_units("merge"), per_unit("b"))),
    )
    assert [s.name for s in pipe.order()] == ["a", "b", "merge", "fuse"]
    graph = pipe.expand(["t0", "t1"])
    assert len(graph.nodes) == 2 + 2 + 1 + 2
    assert graph.deps[Node("b", "t1")] == (Node("a", "t1"),)
    assert set(graph.deps[Node("merge", ONCE)]) == {Node("b", "t0"), Node("b", "t1")}
    assert set(graph.deps[Node("fuse", "t0")]) == {Node("merge", ONCE), Node("b", "t0")}
    # nodes come in topological order
    seen: set[Node] = set()
    for node in graph.nodes:
        assert set(graph.deps[node]) <= seen
        seen.add(node)
    assert set(graph.descendants(Node("a", "t0"))) == {
        Node("b", "t0"),
        Node("merge", ONCE),
        Node("fuse", "t0"),
        Node("fuse", "t1"),
    }


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ((Step("a", _noop, after=(per_unit("x"),)),), "unknown step 'x'"),
        ((Step("a", _noop), Step("a", _noop)), "defined twice"),
        (
            (Step("a", _noop, after=(per_unit("b"),)), Step("b", _noop, after=(per_unit("a"),))),
            "cycle",
        ),
        (
            (Step("m", _noop, fan_out=False), Step("b", _noop, after=(per_unit("m"),))),
            "needs both steps to fan out",
        ),
        ((Step("bad name", _noop),), "bad step name"),
    ],
)
def test_invalid_pipelines_are_rejected(steps: tuple[Step, ...], message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        _pipeline(*steps)


@pytest.mark.parametrize("units", [["a", "a"], ["all"], ["../x"], [""], ["a b"]])
def test_bad_unit_names_are_rejected(units: list[str]) -> None:
    pipe = _pipeline(Step("a", _noop))
    with pytest.raises(PipelineError):
        pipe.expand(units)
