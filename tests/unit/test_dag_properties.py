"""Property-based checks of the DAG expansion: any valid pipeline over any units."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scopeflow.core.config import StrictModel
from scopeflow.engine import ONCE, Dependency, Node, Pipeline, Step


class _Cfg(StrictModel):
    pass


def _noop(ctx: object) -> None:
    return None


@st.composite
def pipelines(draw: st.DrawFn) -> Pipeline:
    n = draw(st.integers(1, 7))
    fan = [draw(st.booleans()) for _ in range(n)]
    steps = []
    for i in range(n):
        deps = []
        for j in draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else []:
            per_unit = fan[i] and fan[j] and draw(st.booleans())
            deps.append(Dependency(f"s{j}", "unit" if per_unit else "all"))
        steps.append(Step(f"s{i}", _noop, fan_out=fan[i], after=tuple(deps)))
    order = draw(st.permutations(steps))
    return Pipeline("p", tuple(order), _Cfg, lambda c: [])


@settings(max_examples=150, deadline=None)
@given(pipelines(), st.integers(1, 6))
def test_expansion_is_complete_and_topological(pipe: Pipeline, n_units: int) -> None:
    units = [f"t{i}" for i in range(n_units)]
    graph = pipe.expand(units)
    position = {node: i for i, node in enumerate(graph.nodes)}
    assert len(position) == len(graph.nodes)  # no duplicates
    for step in pipe.steps:
        expected = units if step.fan_out else [ONCE]
        assert [n.unit for n in graph.nodes if n.step == step.name] == expected
    for node, ups in graph.deps.items():
        step = pipe.step(node.step)
        for up in ups:
            assert position[up] < position[node]
        for dep in step.after:
            up_units = [u.unit for u in ups if u.step == dep.step]
            if dep.mode == "unit":
                assert up_units == [node.unit]
            elif pipe.step(dep.step).fan_out:
                assert up_units == units
            else:
                assert up_units == [ONCE]
    # descendants of a node are exactly the nodes that can reach it through deps
    first = graph.nodes[0]
    reach = {first}
    for node in graph.nodes:
        if any(u in reach for u in graph.deps[node]):
            reach.add(node)
    assert set(graph.descendants(first)) == reach - {first}
    assert all(isinstance(n, Node) for n in reach)
