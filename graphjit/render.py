"""Pictures of a graph: Graphviz DOT text, and SVG/PNG/PDF files with fused kernels as clusters.

`to_dot(graph, program)` needs nothing. `render(graph, program, path)` uses Graphviz's `dot` when
it is on PATH (the nicer layout) and otherwise draws the same picture with matplotlib alone, so a
plain `pip install graphjit` can always render.

The cluster of a node is the program step whose `.nodes` contains it (the same grouping that
`print(fn.lower(...))` shows as `[kN]`).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from graphjit.compiler.dtypes import short_name
from graphjit.compiler.ir import Graph, Node
from graphjit.compiler.ops import Op, attrs_repr

FORMATS = ("svg", "png", "pdf")
DOT_TIMEOUT_S = 60
MAX_ATTRS_CHARS = 22
# one colour per cluster, cycled: light fills that keep black labels readable
CLUSTER_COLOURS = ("#dbe9fb", "#fde2c8", "#d9f2d9", "#f3d9f2", "#fff3b0", "#d5f0f0")
PARAM_COLOUR = "#eeeeee"
OUTPUT_EDGE = "#b22222"


# ------------------------------------------------------------------ grouping and labels
def group_of_nodes(program: Any) -> dict[int, int]:
    """Node id -> index of the first program step that contains it (empty without a program)."""
    groups: dict[int, int] = {}
    if program is None:
        return groups
    for index, step in enumerate(getattr(program, "steps", ())):
        for node_id in getattr(step, "nodes", ()):
            groups.setdefault(int(node_id), index)
    return groups


def step_title(program: Any, index: int) -> str:
    """`k3 LoopKernel` (plus the step's name when it has one), as printed next to a cluster."""
    step = program.steps[index]
    name = getattr(step, "name", "")
    kind = type(step).__name__
    redundant = (kind, f"k{index}", "")
    return f"k{index} {kind}" + ("" if name in redundant else f" {name}")


def short_source(source: str) -> str:
    """`/long/path/model.py:12` -> `model.py:12` (a picture has little room)."""
    if not source:
        return ""
    path, sep, line = source.rpartition(":")
    if not sep or not line.isdigit():
        return os.path.basename(source)
    return f"{os.path.basename(path)}:{line}"


def node_label_lines(node_id: int, node: Node) -> list[str]:
    """`%4 matmul`, `f32[8,32]`, `model.py:5`: the op (with short attributes), type and source."""
    head = f"%{node_id} {node.op.value}"
    attrs = _short_attrs(node)
    if attrs:
        head = f"{head} {attrs}"
    type_text = f"{short_name(node.dtype)}[{','.join(str(d) for d in node.shape)}]"
    lines = [head, type_text]
    source = short_source(node.source)
    if source:
        lines.append(source)
    return lines


def _short_attrs(node: Node) -> str:
    if node.op is Op.PARAM:
        return str(node.attrs.get("name", f"#{node.attrs.get('index', '')}"))
    text = attrs_repr(node.attrs)
    return text if len(text) <= MAX_ATTRS_CHARS else text[: MAX_ATTRS_CHARS - 3] + "..."


# ------------------------------------------------------------------ DOT text
def _dot_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _dot_label(lines: Iterable[str]) -> str:
    return _dot_string("\n".join(lines)).replace("\n", "\\n")


def _dot_node(node_id: int, node: Node, is_output: bool) -> str:
    attributes = [f"label={_dot_label(node_label_lines(node_id, node))}"]
    if node.op in (Op.PARAM, Op.CONST):
        attributes.append(f'shape=ellipse, style=filled, fillcolor="{PARAM_COLOUR}"')
    if is_output:
        attributes.append(f'peripheries=2, color="{OUTPUT_EDGE}"')
    return f"n{node_id} [{', '.join(attributes)}];"


def to_dot(graph: Graph, program: Any = None) -> str:
    """Graphviz DOT text of `graph`; each program step's nodes form a shaded `cluster_kN`."""
    groups = group_of_nodes(program)
    outputs = set(graph.outputs)
    lines = [
        f"digraph {_dot_string(graph.name)} {{",
        "  rankdir=TB;",
        '  node [shape=box, fontname="Helvetica", fontsize=10];',
        '  edge [color="#555555", arrowsize=0.6];',
    ]
    members: dict[int, list[int]] = {}
    for node_id, _ in graph.items():
        if node_id in groups:
            members.setdefault(groups[node_id], []).append(node_id)
        else:
            lines.append("  " + _dot_node(node_id, graph.node(node_id), node_id in outputs))
    for index in sorted(members):
        colour = CLUSTER_COLOURS[index % len(CLUSTER_COLOURS)]
        lines.append(f"  subgraph cluster_k{index} {{")
        lines.append(f"    label={_dot_string(step_title(program, index))};")
        lines.append(f'    style="filled,rounded"; fillcolor="{colour}"; color="#888888";')
        for node_id in members[index]:
            lines.append("    " + _dot_node(node_id, graph.node(node_id), node_id in outputs))
        lines.append("  }")
    for node_id, node in graph.items():
        for arg in dict.fromkeys(node.args):   # one edge per distinct operand
            lines.append(f"  n{arg} -> n{node_id};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ files
def render(graph: Graph, program: Any, path: str) -> str:
    """Write a picture of the graph to `path` (.svg, .png or .pdf); return the path written."""
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    if extension not in FORMATS:
        from graphjit.compiler.errors import GraphjitError

        raise GraphjitError(f"render: cannot write {path!r}; use a .svg, .png or .pdf file name")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    if not _render_with_graphviz(to_dot(graph, program), path, extension):
        _render_with_matplotlib(graph, program, path, extension)
    return path


def _render_with_graphviz(dot_text: str, path: str, extension: str) -> bool:
    """True when Graphviz drew the file; False (nothing written) when `dot` is absent or fails."""
    dot = shutil.which("dot")
    if dot is None:
        return False
    try:
        completed = subprocess.run([dot, f"-T{extension}", "-o", path], input=dot_text.encode(),
                                   capture_output=True, timeout=DOT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return completed.returncode == 0 and os.path.exists(path) and os.path.getsize(path) > 0


# ------------------------------------------------------------------ matplotlib layout
@dataclass
class _Block:
    """Nodes drawn together in one vertical lane: a cluster, or one unclustered node."""

    nodes: list[int]
    group: int | None
    first_layer: int = 0
    last_layer: int = 0
    width: int = 1           # most nodes of the block in any one layer
    lane: int = 0


def layer_of_nodes(graph: Graph) -> dict[int, int]:
    """Top-to-bottom layers: longest path from the inputs, then every node with users moved down
    to just above its first user, so constants and their broadcasts sit next to where they are
    used instead of crowding the top row."""
    layers: dict[int, int] = {}
    for node_id, node in graph.items():
        layers[node_id] = 1 + max((layers[a] for a in node.args), default=0)
    for node_id in reversed(graph.order()):
        users = graph.users(node_id)
        if users and node_id not in graph.outputs:
            layers[node_id] = min(layers[u] for u in users) - 1
    return layers


def _blocks(graph: Graph, groups: dict[int, int], layers: dict[int, int]) -> list[_Block]:
    by_group: dict[int, _Block] = {}
    blocks: list[_Block] = []
    for node_id, _ in graph.items():
        group = groups.get(node_id)
        if group is None:
            blocks.append(_Block([node_id], None))
        elif group not in by_group:
            by_group[group] = _Block([node_id], group)
            blocks.append(by_group[group])
        else:
            by_group[group].nodes.append(node_id)
    for block in blocks:
        node_layers = [layers[n] for n in block.nodes]
        block.first_layer, block.last_layer = min(node_layers), max(node_layers)
        block.width = max(node_layers.count(layer) for layer in set(node_layers))
    return blocks


def _assign_lanes(blocks: list[_Block]) -> list[int]:
    """Greedy interval packing: a block goes into the leftmost lane free over its layers, so
    cluster rectangles never overlap. Returns the width of each lane."""
    lane_free_from: list[int] = []
    lane_widths: list[int] = []
    for block in sorted(blocks, key=lambda b: (b.first_layer, b.nodes[0])):
        for lane, free_from in enumerate(lane_free_from):
            if free_from <= block.first_layer:
                break
        else:
            lane = len(lane_free_from)
            lane_free_from.append(0)
            lane_widths.append(0)
        block.lane = lane
        lane_free_from[lane] = block.last_layer + 1
        lane_widths[lane] = max(lane_widths[lane], block.width)
    return lane_widths


def layout(graph: Graph, program: Any = None) -> tuple[dict[int, tuple[float, float]], list]:
    """Node positions (x, y in slot units, y growing downwards) and the cluster rectangles
    `(group, x0, y0, x1, y1)` for the matplotlib drawing."""
    groups = group_of_nodes(program)
    layers = layer_of_nodes(graph)
    blocks = _blocks(graph, groups, layers)
    lane_widths = _assign_lanes(blocks)
    lane_x = [sum(lane_widths[:lane]) for lane in range(len(lane_widths))]
    positions: dict[int, tuple[float, float]] = {}
    rectangles = []
    for block in blocks:
        used_in_layer: dict[int, int] = {}
        for node_id in block.nodes:
            layer = layers[node_id]
            column = used_in_layer.get(layer, 0)
            used_in_layer[layer] = column + 1
            positions[node_id] = (lane_x[block.lane] + column, float(layer))
        if block.group is not None:
            x0 = lane_x[block.lane]
            rectangles.append((block.group, x0, block.first_layer, x0 + block.width - 1,
                               block.last_layer))
    return positions, rectangles


SLOT_WIDTH_IN = 1.9      # inches per column
SLOT_HEIGHT_IN = 0.85    # inches per layer
BOX_WIDTH = 0.86         # of a slot
BOX_HEIGHT = 0.62
MAX_FIGURE_IN = 300      # matplotlib's canvas limit is 2**16 pixels a side


def _render_with_matplotlib(graph: Graph, program: Any, path: str, extension: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    positions, rectangles = layout(graph, program)
    columns = 1 + max((x for x, _ in positions.values()), default=0)
    rows = 1 + max((y for _, y in positions.values()), default=0)
    figure = Figure(figsize=(min(MAX_FIGURE_IN, columns * SLOT_WIDTH_IN + 0.6),
                             min(MAX_FIGURE_IN, rows * SLOT_HEIGHT_IN + 0.8)))
    FigureCanvasAgg(figure)   # Agg: no display needed, whatever pyplot's backend is
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(-0.6, columns - 0.4)
    axes.set_ylim(rows - 0.3, -0.9)     # y grows downwards: inputs at the top
    axes.axis("off")
    _draw_clusters(axes, program, rectangles)
    _draw_edges(axes, graph, positions)
    _draw_nodes(axes, graph, positions)
    axes.set_title(f"graph {graph.name}", fontsize=10, y=1.0, pad=-14)
    figure.savefig(path, format=extension)


def _draw_clusters(axes: Any, program: Any, rectangles: list) -> None:
    from matplotlib.patches import FancyBboxPatch

    for group, x0, y0, x1, y1 in rectangles:
        colour = CLUSTER_COLOURS[group % len(CLUSTER_COLOURS)]
        left, top = x0 - 0.48, y0 - 0.5
        axes.add_patch(FancyBboxPatch((left, top), x1 - x0 + 0.96, y1 - y0 + 0.92,
                                      boxstyle="round,pad=0.02", facecolor=colour,
                                      edgecolor="#888888", linewidth=0.8, zorder=0))
        axes.text(left + 0.04, top + 0.07, step_title(program, group), fontsize=6.5,
                  va="top", ha="left", color="#333333", zorder=1)


def _draw_edges(axes: Any, graph: Graph, positions: dict) -> None:
    for node_id, node in graph.items():
        x1, y1 = positions[node_id]
        for arg in dict.fromkeys(node.args):
            x0, y0 = positions[arg]
            axes.annotate("", xy=(x1, y1 - BOX_HEIGHT / 2), xytext=(x0, y0 + BOX_HEIGHT / 2),
                          arrowprops={"arrowstyle": "-|>", "color": "#555555", "lw": 0.6,
                                      "shrinkA": 0, "shrinkB": 0}, zorder=2)


def _draw_nodes(axes: Any, graph: Graph, positions: dict) -> None:
    from matplotlib.patches import FancyBboxPatch

    outputs = set(graph.outputs)
    for node_id, node in graph.items():
        x, y = positions[node_id]
        is_source = node.op in (Op.PARAM, Op.CONST)
        axes.add_patch(FancyBboxPatch(
            (x - BOX_WIDTH / 2, y - BOX_HEIGHT / 2), BOX_WIDTH, BOX_HEIGHT,
            boxstyle="round,pad=0.01" if is_source else "square,pad=0.01",
            facecolor=PARAM_COLOUR if is_source else "white",
            edgecolor=OUTPUT_EDGE if node_id in outputs else "#333333",
            linewidth=1.6 if node_id in outputs else 0.7, zorder=3))
        axes.text(x, y, "\n".join(node_label_lines(node_id, node)), fontsize=6, ha="center",
                  va="center", family="monospace", zorder=4)
