"""Pictures of graphs: DOT text with fused kernels as clusters, and files drawn with or without
Graphviz (the matplotlib fallback must work after a plain pip install)."""
from __future__ import annotations

import os
import re
import stat
from types import SimpleNamespace

import numpy as np
import pytest

import graphjit as gj
from graphjit.render import group_of_nodes, layout, render, short_source, to_dot


def block(x, w, b, g):
    h = x @ w + b
    h = 0.5 * h * (1 + np.tanh(0.7978845608 * (h + 0.044715 * h**3)))
    mu = h.mean(axis=-1, keepdims=True)
    var = ((h - mu) ** 2).mean(axis=-1, keepdims=True)
    return (h - mu) / np.sqrt(var + 1e-5) * g


def block_args():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((4, 8), dtype=np.float32),
            rng.standard_normal((8, 16), dtype=np.float32),
            rng.standard_normal(16, dtype=np.float32), rng.standard_normal(16, dtype=np.float32))


@pytest.fixture(scope="module")
def lowered():
    return gj.jit(block).lower(*block_args())


def three_step_program(graph):
    """A stand-in Program: the nodes split into three consecutive steps (params excluded)."""
    ids = [i for i, node in graph.items() if i not in graph.params]
    third = len(ids) // 3
    chunks = (ids[:third], ids[third:2 * third], ids[2 * third:])
    steps = [SimpleNamespace(name=f"fused_{k}", nodes=tuple(chunk))
             for k, chunk in enumerate(chunks)]
    return SimpleNamespace(steps=steps)


def cluster_members(dot: str) -> dict[str, set[int]]:
    members, current = {}, None
    for line in dot.splitlines():
        opened = re.match(r"\s*subgraph (cluster_k\d+) \{", line)
        if opened:
            current = opened.group(1)
            members[current] = set()
        elif line.strip() == "}":
            current = None
        elif current and re.match(r"\s*n(\d+) \[", line):
            members[current].add(int(re.match(r"\s*n(\d+) \[", line).group(1)))
    return members


def test_dot_clusters_hold_exactly_the_nodes_of_each_step(lowered):
    program = three_step_program(lowered.graph)
    members = cluster_members(to_dot(lowered.graph, program))
    assert members == {f"cluster_k{k}": set(step.nodes) for k, step in enumerate(program.steps)}


def test_dot_labels_name_op_type_and_source_line(lowered):
    dot = to_dot(lowered.graph, three_step_program(lowered.graph))
    for node_id, node in lowered.graph.items():
        line = next(l for l in dot.splitlines() if re.match(rf"\s*n{node_id} \[", l))
        shape = ",".join(str(d) for d in node.shape)
        assert f"%{node_id} {node.op.value}" in line
        assert f"[{shape}]" in line
        if node.source:
            assert short_source(node.source) in line
            assert "test_render.py:" in line   # the user's file, not graphjit's
    for node_id, node in lowered.graph.items():
        for arg in node.args:
            assert f"n{arg} -> n{node_id};" in dot


def test_dot_without_program_has_no_clusters(lowered):
    dot = to_dot(lowered.graph, None)
    assert "subgraph" not in dot
    assert dot.startswith('digraph "block" {') and dot.rstrip().endswith("}")


def test_dot_with_the_real_program_when_the_backend_builds_one(lowered):
    if lowered.program is None:
        pytest.skip("this build compiles without a Program (reference backend): no clusters")
    groups = group_of_nodes(lowered.program)
    assert groups, "a real program must put nodes in steps"
    members = cluster_members(lowered.to_dot())
    assert set().union(*members.values()) == set(groups)


def test_dot_escapes_quotes_and_backslashes():
    graph = gj.jit(lambda x: x + 1).lower(np.ones(3, np.float32)).graph
    graph.name = 'we"ird\\name'
    assert 'digraph "we\\"ird\\\\name" {' in to_dot(graph)


def test_short_source_keeps_file_name_and_line():
    assert short_source("/a/b/model.py:12") == "model.py:12"
    assert short_source("C:\\x\\m.py:3").endswith("m.py:3")
    assert short_source("") == ""


def test_layout_edges_point_down_and_clusters_do_not_overlap(lowered):
    program = three_step_program(lowered.graph)
    positions, rectangles = layout(lowered.graph, program)
    assert len(set(positions.values())) == len(positions)        # no two nodes on one spot
    for node_id, node in lowered.graph.items():
        for arg in node.args:
            assert positions[arg][1] < positions[node_id][1]
    assert len(rectangles) == 3
    for i, (_, ax0, ay0, ax1, ay1) in enumerate(rectangles):
        for _, bx0, by0, bx1, by1 in rectangles[i + 1:]:
            assert ax1 < bx0 or bx1 < ax0 or ay1 < by0 or by1 < ay0
    groups = group_of_nodes(program)
    for group, x0, y0, x1, y1 in rectangles:   # every member inside its own rectangle
        for node_id in (n for n, g in groups.items() if g == group):
            x, y = positions[node_id]
            assert x0 <= x <= x1 and y0 <= y <= y1


def hide_graphviz(monkeypatch, tmp_path):
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@pytest.mark.parametrize("extension, magic", [("svg", b"<svg"), ("png", b"\x89PNG"),
                                              ("pdf", b"%PDF")])
def test_render_without_graphviz_uses_matplotlib(lowered, monkeypatch, tmp_path, extension, magic):
    hide_graphviz(monkeypatch, tmp_path)
    path = str(tmp_path / "out" / f"graph.{extension}")
    assert render(lowered.graph, three_step_program(lowered.graph), path) == path
    data = open(path, "rb").read()
    assert len(data) > 1000 and magic in data[:4096]


def test_render_svg_contains_the_node_labels(lowered, monkeypatch, tmp_path):
    hide_graphviz(monkeypatch, tmp_path)
    path = lowered.render(str(tmp_path / "g.svg"))   # Lowered.render goes through render()
    text = open(path, encoding="utf-8").read()
    assert "matmul" in text or "<path" in text   # labels are text or glyph paths in the SVG


def write_fake_dot(folder, script: str):
    folder.mkdir()
    dot = folder / "dot"
    dot.write_text("#!/bin/sh\n" + script)
    dot.chmod(dot.stat().st_mode | stat.S_IEXEC)


@pytest.mark.skipif(os.name != "posix", reason="fake `dot` is a shell script")
def test_render_uses_graphviz_dot_when_on_path(lowered, monkeypatch, tmp_path):
    # a fake `dot` that records its stdin as the picture: proves the DOT text is handed over
    write_fake_dot(tmp_path / "bin", 'out="$3"; cat > "$out"\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    path = render(lowered.graph, None, str(tmp_path / "g.svg"))
    assert open(path).read() == to_dot(lowered.graph, None)


@pytest.mark.skipif(os.name != "posix", reason="fake `dot` is a shell script")
def test_render_falls_back_when_graphviz_fails(lowered, monkeypatch, tmp_path):
    write_fake_dot(tmp_path / "bin", "exit 3\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    path = render(lowered.graph, None, str(tmp_path / "g.png"))
    assert open(path, "rb").read(4) == b"\x89PNG"


def test_render_rejects_unknown_extensions(lowered, tmp_path):
    with pytest.raises(gj.GraphjitError, match=r"\.svg"):
        render(lowered.graph, None, str(tmp_path / "g.gif"))
