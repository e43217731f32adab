"""Fusion: decide which nodes run together in one kernel (the last pass of the pipeline).

`fuse(graph)` returns a copy of the graph whose computed nodes carry `meta["group"]` (the index of
the kernel that computes them, in execution order) and, where fusion stopped at a producer,
`meta["fusion_stop"]` (one sentence per boundary). `compiler.schedule.build_program` turns the
groups into a `Program`.

Vocabulary used here:
- A *view* (broadcast, reshape, transpose, slice) is folded: it computes nothing, its consumers read
  its *root* (the nearest non-folded ancestor) through a `Layout` (strides + offset in the root's
  C-order element numbering). A view is *materialised* (computed as a copy) when it is a graph
  output, feeds a host kernel, or is the operand of a reshape that strides cannot express.
- A *loop group* has one iteration space (loop shape L, reduce axes R). Every member is FULL-shaped
  (its shape is L) or OUTER-shaped (L with the reduce axes set to 1 or dropped); every reduction
  in it reduces R of an operand of shape L. Inside a group a member reads another member only at
  that member's own indexing (`canonical_access`); anything else is read from memory.
- A *matmul group* is one matmul plus an elementwise epilogue over the matmul's output shape.
- A *host group* is one node run with its NumPy implementation.
- An *update* is a `setitem` with a basic index (ints, slices, None, Ellipsis): a loop member
  whose loop shape is the written region's shape (`loop_shape`). It computes no value inside the
  kernel: it stores its value operand (broadcast to the region) into its target's buffer, in
  place when the scheduler finds the old value dead. Nothing in its kernel reads it as a value;
  loads of that buffer in the kernel must read elements no store of the kernel writes, or
  (for the target's old value) exactly the element being written (`update_conflict`). An update
  whose target is another update of the same kernel continues its chain (one buffer).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from ..ir import Graph, Node, rebuild
from ..ops import ELEMENTWISE, OPS, REDUCTIONS, SOURCES, VIEWS, Execution, Op
from ..regions import Region, disjoint, is_basic_template, update_region

Shape = tuple[int, ...]

LOOP, MATMUL, HOST = Execution.LOOP.value, Execution.MATMUL.value, Execution.HOST.value


# ---------------------------------------------------------------- layouts: views as strides

@dataclass(frozen=True)
class Layout:
    """A node's value read as `root` viewed with `strides`/`offset` (in root elements)."""

    root: int
    shape: Shape
    strides: tuple[int, ...]
    offset: int = 0


def contiguous_strides(shape: Shape) -> tuple[int, ...]:
    strides, step = [], 1
    for extent in reversed(shape):
        strides.append(step)
        step *= max(extent, 1)
    return tuple(reversed(strides))


def identity_layout(node_id: int, shape: Shape) -> Layout:
    return Layout(node_id, tuple(shape), contiguous_strides(shape), 0)


# NumPy defines what a view means; applying the view op (its op-table `view`) to a fake uint8
# array whose strides are the layout's strides gives the composed strides (in elements) and the
# offset (pointer delta).
_FAKE_BASE = np.zeros(1, np.uint8)


def _address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def apply_view(node: Node, operand: Layout) -> Layout | None:
    """The layout of `node` (a view op) over the operand's root; None if strides cannot express
    it (a reshape of a non-contiguous view)."""
    fake = np.lib.stride_tricks.as_strided(_FAKE_BASE, operand.shape, operand.strides,
                                           writeable=False)
    try:
        viewed = OPS[node.op].view(fake, **node.attrs)
    except ValueError:
        return None
    offset = operand.offset + _address(viewed) - _address(_FAKE_BASE)
    return Layout(operand.root, tuple(viewed.shape), tuple(viewed.strides), offset)


def broadcast_layout(layout: Layout, shape: Shape) -> Layout:
    """`layout` read broadcast to `shape` (NumPy's rules: leading dims added, unit dims
    repeated with stride 0). Leading unit dims beyond `shape`'s rank are dropped, as NumPy's
    assignment drops them (`x[0:3, 4] = v` takes a v of shape (1, 3))."""
    dropped = max(0, len(layout.shape) - len(shape))
    if any(extent != 1 for extent in layout.shape[:dropped]):
        raise AssertionError(f"a value of shape {layout.shape} cannot fill shape {shape}")
    layout = Layout(layout.root, layout.shape[dropped:], layout.strides[dropped:], layout.offset)
    extra = len(shape) - len(layout.shape)
    strides = [0] * extra
    for stride, extent, target in zip(layout.strides, layout.shape, shape[extra:]):
        strides.append(0 if extent == 1 and target != 1 else stride)
    return Layout(layout.root, tuple(shape), tuple(strides), layout.offset)


# ---------------------------------------------------------------- updates (basic setitem)

def update_of(graph: Graph, node_id: int) -> Region | None:
    """The region a basic-index setitem writes (over its target's C order), or None if the node
    is not an update (another op, an integer-array or boolean index, a value of another dtype)."""
    node = graph.node(node_id)
    if node.op is not Op.SETITEM or len(node.args) != 2:
        return None
    template = node.attrs["template"]
    if not is_basic_template(template) or graph.node(node.args[1]).dtype != node.dtype:
        return None
    return update_region(tuple(node.shape), template)


def is_update(graph: Graph, node_id: int) -> bool:
    return update_of(graph, node_id) is not None


def loop_shape(graph: Graph, node_id: int) -> Shape:
    """The shape a member spans in its loop: an update's region, any other node's own shape."""
    region = update_of(graph, node_id)
    return tuple(graph.node(node_id).shape) if region is None else region.shape


def update_value_layout(graph: Graph, analysis: "ViewAnalysis", node_id: int) -> Layout:
    """How an update reads its value: broadcast to the region it writes."""
    region = update_of(graph, node_id)
    return broadcast_layout(analysis.layout[graph.node(node_id).args[1]], region.shape)


def region_layout(graph: Graph, node_id: int) -> Layout:
    """An update's region as a layout over its target's buffer (C order of the target)."""
    region = update_of(graph, node_id)
    return Layout(graph.node(node_id).args[0], region.shape, region.strides, region.offset)


def may_update_in_place(graph: Graph, analysis: "ViewAnalysis", target: int) -> bool:
    """Could an update ever write `target`'s own buffer? Not a param's or a constant's, not a
    folded view's (it has none), not a graph output's (the caller receives the old value)."""
    node = graph.node(target)
    return (node.op not in SOURCES and not analysis.is_folded(graph, target)
            and target not in graph.outputs)


# ---------------------------------------------------------------- loop spaces

@dataclass(frozen=True)
class LoopSpace:
    shape: Shape
    reduce_axes: tuple[int, ...] = ()

    def node_dims(self, shape: Shape) -> tuple[int | None, ...] | None:
        """Which loop dim each dim of a value of `shape` runs along (None: a unit dim standing for
        a reduce axis); None if the value does not live in this loop space."""
        loop, reduce = self.shape, self.reduce_axes
        if tuple(shape) == loop:
            return tuple(range(len(loop)))
        if not reduce:
            return None
        if tuple(shape) == tuple(1 if d in reduce else e for d, e in enumerate(loop)):
            return tuple(None if d in reduce else d for d in range(len(loop)))
        if tuple(shape) == tuple(e for d, e in enumerate(loop) if d not in reduce):
            return tuple(d for d in range(len(loop)) if d not in reduce)
        return None

    def is_full(self, shape: Shape) -> bool:
        return tuple(shape) == self.shape

    def access(self, layout: Layout, dims: tuple[int | None, ...]) -> tuple[tuple[int, ...], int]:
        """(strides over the loop dims, offset) reading `layout` at loop index i, where the value's
        index k runs along loop dim dims[k]. Strides of unit loop dims are 0 (normal form)."""
        strides = [0] * len(self.shape)
        for stride, dim in zip(layout.strides, dims, strict=True):
            if dim is not None:
                strides[dim] += stride
        return self.normalize(strides), layout.offset

    def normalize(self, strides: Iterable[int]) -> tuple[int, ...]:
        return tuple(0 if extent == 1 else s for s, extent in zip(strides, self.shape))

    def varies_on_reduce(self, strides: tuple[int, ...]) -> bool:
        return any(strides[d] != 0 for d in self.reduce_axes)

    def canonical(self, node_id: int, shape: Shape) -> tuple[tuple[int, ...], int]:
        """How a member of this loop indexes its own value (its C-order numbering)."""
        dims = self.node_dims(shape)
        assert dims is not None, "not a member of this loop space"
        return self.access(identity_layout(node_id, shape), dims)


def reduce_axes_of(node: Node) -> tuple[int, ...]:
    """The axes a reduction node folds, sorted (the tracer normalises them)."""
    if "axes" in node.attrs:
        return tuple(sorted(int(a) for a in node.attrs["axes"]))
    return (int(node.attrs["axis"]),)


# ---------------------------------------------------------------- the analysis of views

@dataclass
class ViewAnalysis:
    """Where every node's value is read from, given which views are materialised."""

    layout: dict[int, Layout] = field(default_factory=dict)        # node -> read through
    copy_input: dict[int, Layout] = field(default_factory=dict)    # materialised view -> source
    materialized_views: set[int] = field(default_factory=set)
    consumers: dict[int, list[int]] = field(default_factory=dict)  # root -> non-folded readers

    def is_folded(self, graph: Graph, node_id: int) -> bool:
        return graph.node(node_id).op in VIEWS and node_id not in self.materialized_views


def views_to_materialize(graph: Graph) -> set[int]:
    """Views that must exist in memory: graph outputs and operands of host kernels."""
    needed = {o for o in graph.outputs if graph.node(o).op in VIEWS}
    for node_id, node in graph.items():
        if node_kind(graph, node_id) == HOST:
            needed.update(a for a in node.args if graph.node(a).op in VIEWS)
    return needed


def analyze_views(graph: Graph, materialized: set[int], strict: bool = False) -> ViewAnalysis:
    """Fold every view into a layout over its root, materialising reshape operands where strides
    cannot express the reshape (or raising, when `strict`: the set was supposed to be final).
    Runs again from scratch whenever it had to materialise a view, so that every layout is
    expressed over the final set of roots."""
    while True:
        analysis = _analyze_views_once(graph, set(materialized), strict)
        if analysis.materialized_views == set(materialized):
            return analysis
        materialized = analysis.materialized_views


def _analyze_views_once(graph: Graph, materialized: set[int], strict: bool) -> ViewAnalysis:
    analysis = ViewAnalysis(materialized_views=set(materialized))
    for node_id, node in graph.items():
        if node.op not in VIEWS:
            analysis.layout[node_id] = identity_layout(node_id, node.shape)
            continue
        operand = node.args[0]
        viewed = apply_view(node, analysis.layout[operand])
        if viewed is None:
            if strict or graph.node(operand).op not in VIEWS:
                raise AssertionError(f"%{node_id}: reshape not expressible as strides")
            analysis.materialized_views.add(operand)
            analysis.layout[operand] = identity_layout(operand, graph.node(operand).shape)
            viewed = apply_view(node, analysis.layout[operand])
        analysis.copy_input[node_id] = viewed
        if node_id in analysis.materialized_views:
            analysis.layout[node_id] = identity_layout(node_id, node.shape)
        else:
            analysis.layout[node_id] = viewed
    for node_id, _ in graph.items():
        if analysis.is_folded(graph, node_id):
            continue
        for layout in inputs_of(graph, analysis, node_id):
            analysis.consumers.setdefault(layout.root, []).append(node_id)
    return analysis


def inputs_of(graph: Graph, analysis: ViewAnalysis, node_id: int) -> list[Layout]:
    """The layouts a non-folded node reads, in operand order (an update: its target, then its
    value broadcast to the region it writes)."""
    node = graph.node(node_id)
    if node.op in VIEWS:
        return [analysis.copy_input[node_id]]
    if is_update(graph, node_id):
        return [analysis.layout[node.args[0]], update_value_layout(graph, analysis, node_id)]
    return [analysis.layout[a] for a in node.args]


def loop_reads(graph: Graph, analysis: ViewAnalysis, space: LoopSpace, member: int
               ) -> list[tuple[Layout, tuple[int | None, ...] | None]]:
    """(layout, dims) of every value a loop member reads inside its kernel (an update reads its
    value, not its target: the target's other elements stay where they are)."""
    if is_update(graph, member):
        return [(update_value_layout(graph, analysis, member),
                 space.node_dims(loop_shape(graph, member)))]
    node = graph.node(member)
    if node.op in REDUCTIONS:
        dims = tuple(range(len(space.shape)))
    else:
        dims = space.node_dims(node.shape)
    return [(layout, dims) for layout in inputs_of(graph, analysis, member)]


def kind_of(op: Op) -> str | None:
    """Which kind of group computes a node of this op (None for params and constants)."""
    execution = OPS[op].execution
    return None if execution is None else execution.value


def node_kind(graph: Graph, node_id: int) -> str | None:
    """Which kind of group computes this node: its op's kind, except that updates are loops."""
    if is_update(graph, node_id):
        return LOOP
    return kind_of(graph.node(node_id).op)


# ---------------------------------------------------------------- checking a candidate group

def loop_space_of(graph: Graph, members: Iterable[int]) -> LoopSpace | str:
    """The one loop space a set of loop-group members can share, or why there is none."""
    members = sorted(members)
    nodes = [graph.node(m) for m in members]
    matmuls = [n for n in nodes if n.op is Op.MATMUL]
    if matmuls:
        return LoopSpace(matmuls[0].shape)
    reductions = [(m, n) for m, n in zip(members, nodes) if n.op in REDUCTIONS]
    if not reductions:
        shapes = {loop_shape(graph, m) for m in members}
        if len(shapes) > 1:
            return f"loop shapes differ {sorted(shapes)}"
        return LoopSpace(shapes.pop())
    spaces = {(graph.node(n.args[0]).shape, reduce_axes_of(n)) for _, n in reductions}
    if len(spaces) > 1:
        described = ", ".join(f"{shape} over axes {axes}" for shape, axes in sorted(spaces))
        return f"reductions over different loops ({described})"
    shape, axes = spaces.pop()
    return LoopSpace(shape, axes)


def _is_outer_member(graph: Graph, space: LoopSpace, member: int) -> bool:
    node = graph.node(member)
    return node.op in REDUCTIONS or not space.is_full(loop_shape(graph, member))


def space_representatives(graph: Graph, members: Iterable[int]) -> list[int]:
    """The few members that decide a group's loop space (its first matmul, else one reduction,
    else any member): `loop_space_of` on them equals it on all members of a valid group."""
    members = sorted(members)
    for wanted in (lambda n: n.op is Op.MATMUL, lambda n: n.op in REDUCTIONS):
        for m in members:
            if wanted(graph.node(m)):
                return [m]
    return members[:1]


def check_group(graph: Graph, analysis: ViewAnalysis, members: set[int], kind: str,
                new_member: int | None = None, space_members: Iterable[int] | None = None
                ) -> str | None:
    """None if `members` can run as one kernel of `kind`; otherwise why not.

    With `new_member` (one node joining one valid group whose loop space it keeps, the space
    computed from `space_members`), only that node's reads are checked: the other members'
    checks depend on the loop space and on which of their inputs are members, and no member
    reads the newcomer. This keeps fusion linear in the length of a chain."""
    space = loop_space_of(graph, members if space_members is None else space_members)
    if isinstance(space, str):
        return space
    for member in sorted(members) if new_member is None else (new_member,):
        node = graph.node(member)
        if node.op is Op.MATMUL:
            continue
        if kind == MATMUL and node.op not in ELEMENTWISE:
            return f"{node.op.value} cannot run in a matmul epilogue"
        shape = loop_shape(graph, member)
        if space.node_dims(shape) is None:
            return (f"%{member} of shape {shape} does not fit the loop {space.shape} "
                    f"(reduce axes {space.reduce_axes})")
        for layout, dims in loop_reads(graph, analysis, space, member):
            if layout.root not in members or is_update(graph, layout.root):
                continue   # read from memory (an update's buffer: see update_conflict)
            if space.access(layout, dims) != space.canonical(layout.root,
                                                            graph.node(layout.root).shape):
                return (f"%{member} reads %{layout.root} through a view that re-indexes it "
                        "inside the loop")
            full_use = node.op in REDUCTIONS or (node.op in VIEWS and space.is_full(node.shape))
            if full_use and space.reduce_axes and _is_outer_member(graph, space, layout.root):
                return f"%{member} would fold the row-wise value %{layout.root} again"
    return None


def update_conflict(graph: Graph, analysis: ViewAnalysis, members: set[int]) -> str | None:
    """None if the updates among `members` can store in place in one kernel; otherwise why not.

    Each update either starts a chain (its target is not computed by the kernel) or continues
    one (its target is the previous update of the chain, which nothing else reads). A chain
    writes one buffer; its stores must be pairwise disjoint, and every load of that buffer in
    the kernel (of the chain's base target, where the base may be written in place, or of an
    update of the chain) must touch no stored element, except a load of the base target at
    exactly the stored element (it reads the old value before the store)."""
    updates = sorted(m for m in members if is_update(graph, m))
    if not updates:
        return None
    space = loop_space_of(graph, members)
    if isinstance(space, str):
        return space
    base: dict[int, int] = {}                # update -> the target its chain starts from
    stores: dict[int, list[tuple[tuple[int, ...], int]]] = {}   # chain base -> stored accesses
    targets: set[int] = set()
    outputs = set(graph.outputs)
    for update in updates:
        target = graph.node(update).args[0]
        if target in targets:
            return f"%{target} is updated twice in one kernel"
        targets.add(target)
        if target in base:
            readers = analysis.consumers.get(target, ())
            if target in outputs or any(r != update and r not in members for r in readers):
                return f"%{update} updates %{target}, which is read after this kernel"
            base[update] = base[target]
        else:
            if analysis.layout[target].root in members:
                return f"%{update} updates %{target}, which this kernel computes"
            base[update] = target
            stores[target] = []
        region = region_layout(graph, update)
        stores[base[update]].append(space.access(region, space.node_dims(region.shape)))
    for chain, accesses in stores.items():
        shape = tuple(graph.node(chain).shape)
        for n, (a_strides, a_offset) in enumerate(accesses):
            for b_strides, b_offset in accesses[n + 1:]:
                if not disjoint(a_strides, a_offset, b_strides, b_offset, space.shape, shape):
                    return "two updates of one array in a kernel write overlapping regions"
    for member in sorted(members):
        for layout, dims in loop_reads(graph, analysis, space, member):
            root = layout.root
            if root in base:
                chain, old = base[root], False
            elif root in stores and may_update_in_place(graph, analysis, root):
                chain, old = root, True
            else:
                continue
            strides, offset = space.access(layout, dims)
            shape = tuple(graph.node(chain).shape)
            for store in stores[chain]:
                if old and (strides, offset) == store:
                    continue
                if not disjoint(strides, offset, store[0], store[1], space.shape, shape):
                    return (f"%{member} reads elements of %{root} that an update in the same "
                            "kernel overwrites")
    return None


# ---------------------------------------------------------------- grouping

MAX_KERNEL_NODES = 512
# each reduction in a loop group is one more pass over the loop space, and LLVM's time on a
# function grows much faster than its number of loops: chains of dependent reductions are cut
MAX_KERNEL_REDUCTIONS = 16
SIBLING_CANDIDATES = 8   # loop groups reading an input that a new reader may join

@dataclass
class Group:
    id: int
    kind: str
    members: set[int]


@dataclass
class FusionPlan:
    """The outcome of grouping, in execution order."""

    groups: list[Group]
    analysis: ViewAnalysis
    notes: dict[int, list[str]]        # node -> why it was not fused with a producer
    graph: Graph | None = None         # the graph grouped (the scheduler lowers it)

    def group_of(self) -> dict[int, int]:
        return {m: g.id for g in self.groups for m in g.members}


class _Grouper:
    def __init__(self, graph: Graph, analysis: ViewAnalysis):
        self.graph = graph
        self.analysis = analysis
        self.groups: dict[int, Group] = {}
        self.group_of: dict[int, int] = {}
        self.notes: dict[int, list[str]] = {}
        self.readers_of_root: dict[int, set[int]] = {}   # source/root -> loop groups reading it
        self.update_groups: set[int] = set()               # groups with an update among them
        self._reps: dict[int, list[int]] = {}   # group -> the members deciding its loop space
        self._next = 0

    # ------------------------------------------------------------ helpers
    def note(self, node_id: int, text: str) -> None:
        self.notes.setdefault(node_id, []).append(text)

    def new_group(self, kind: str, node_id: int) -> Group:
        group = Group(self._next, kind, {node_id})
        self._next += 1
        self.groups[group.id] = group
        self.group_of[node_id] = group.id
        if is_update(self.graph, node_id):
            self.update_groups.add(group.id)
        return group

    def producer_roots(self, node_id: int) -> list[int]:
        roots: list[int] = []
        for layout in inputs_of(self.graph, self.analysis, node_id):
            if layout.root not in roots:
                roots.append(layout.root)
        return roots

    def successors(self, group_ids: Iterable[int], assign: Callable[[int], int | None]) -> set[int]:
        """Groups (as `assign` names them) reading a value of the groups `group_ids`."""
        out = set()
        for group_id in group_ids:
            for member in self.groups[group_id].members:
                own = assign(member)
                for reader in self.analysis.consumers.get(member, ()):
                    target = assign(reader)
                    if target is not None and target != own:
                        out.add(target)
        return out

    def creates_cycle(self, merged: set[int], producers: set[int]) -> bool:
        """Would a group made of the groups `merged` (plus the new node, whose producer groups
        are `producers`) sit on a cycle? Only paths leaving the merged group and coming back
        matter; the new node has no readers yet."""
        def assign(node_id: int) -> int | None:
            group = self.group_of.get(node_id)
            return -1 if group in merged else group

        frontier = self.successors(merged, assign)
        targets = (producers - merged) | {-1}
        seen: set[int] = set()
        while frontier:
            group_id = frontier.pop()
            if group_id in targets:
                return True
            if group_id in seen:
                continue
            seen.add(group_id)
            frontier |= self.successors([group_id], assign)
        return False

    # ------------------------------------------------------------ placing one node
    def place(self, node_id: int) -> None:
        node = self.graph.node(node_id)
        kind = node_kind(self.graph, node_id)
        if kind == HOST:
            self.new_group(HOST, node_id)
            self.note(node_id, f"{node.op.value} has no native lowering: it runs on the host "
                               "with its NumPy implementation")
            return
        if kind == MATMUL:
            self.new_group(MATMUL, node_id)
            return
        roots = self.producer_roots(node_id)
        producer_groups = [self.group_of[r] for r in roots if r in self.group_of]
        producer_groups = list(dict.fromkeys(producer_groups))
        chosen = self.join_producers(node_id, producer_groups)
        if chosen is None:
            chosen = self.join_siblings(node_id, roots)
        if chosen is None:
            chosen = self.new_group(LOOP, node_id)
        for root in roots:
            if root not in chosen.members:
                self.readers_of_root.setdefault(root, set()).add(chosen.id)

    def join_producers(self, node_id: int, candidates: list[int]) -> Group | None:
        chosen: Group | None = None
        for group_id in candidates:
            group = self.groups[group_id]
            if group.kind == HOST:
                self.note(node_id, f"not fused with %{min(group.members)}: "
                                   f"{self.describe(group)} runs on the host")
                continue
            if chosen is not None and MATMUL in (chosen.kind, group.kind):
                self.note(node_id, f"not fused with {self.describe(group)}: it already joined "
                                   f"{self.describe(chosen)}")
                continue
            merged_ids = {group_id} | ({chosen.id} if chosen else set())
            reason = self.try_merge(node_id, merged_ids, set(candidates))
            if reason:
                self.note(node_id, f"not fused with {self.describe(group)}: {reason}")
                continue
            chosen = self.merge(node_id, merged_ids)
        return chosen

    def join_siblings(self, node_id: int, roots: list[int]) -> Group | None:
        """Fuse with a loop group that reads the same inputs (so they are read once)."""
        producers = {self.group_of[r] for r in roots if r in self.group_of}
        for root in roots:
            # the most recent readers only: an input every step of an unrolled loop reads (a
            # stencil's right-hand side) would otherwise cost a cycle search per earlier step
            for group_id in sorted(self.readers_of_root.get(root, ()))[-SIBLING_CANDIDATES:]:
                group = self.groups.get(group_id)
                if group is None or group.kind != LOOP:
                    continue
                if self.try_merge(node_id, {group_id}, producers) is None:
                    return self.merge(node_id, {group_id})
        return None

    def _reductions_in(self, group_id: int) -> int:
        return sum(1 for m in self.groups[group_id].members if self.graph.node(m).op in REDUCTIONS)

    def try_merge(self, node_id: int, group_ids: set[int], producers: set[int]) -> str | None:
        size = 1 + sum(len(self.groups[g].members) for g in group_ids)
        if size > MAX_KERNEL_NODES:
            # LLVM's time on one huge loop body grows faster than its size: long unrolled
            # chains are cut into kernels of bounded size (one extra pass over memory each)
            return f"the kernel already has {size - 1} nodes (the cap is {MAX_KERNEL_NODES})"
        if self.graph.node(node_id).op in REDUCTIONS:
            reductions = 1 + sum(self._reductions_in(g) for g in group_ids)
            if reductions > MAX_KERNEL_REDUCTIONS:
                return (f"the kernel already has {reductions - 1} reductions (the cap is "
                        f"{MAX_KERNEL_REDUCTIONS})")
        kinds = {self.groups[g].kind for g in group_ids}
        kind = MATMUL if MATMUL in kinds else LOOP
        reason = None
        if len(group_ids) == 1:
            # one node joining one group: check the newcomer only, if the space stays the same
            (group_id,) = group_ids
            reps = self._reps.get(group_id)
            if reps is None:
                reps = self._reps[group_id] = space_representatives(
                    self.graph, self.groups[group_id].members)
            before = loop_space_of(self.graph, reps)
            after = loop_space_of(self.graph, reps + [node_id])
            if isinstance(after, str):
                return after
            if before == after:   # (no member reads the newcomer: its group's set will do)
                reason = check_group(self.graph, self.analysis, self.groups[group_id].members,
                                     kind, new_member=node_id, space_members=reps + [node_id])
            else:
                reason = check_group(self.graph, self.analysis, self._members(node_id, group_ids),
                                     kind)
        else:
            reason = check_group(self.graph, self.analysis, self._members(node_id, group_ids),
                                 kind)
        if reason:
            return reason
        if is_update(self.graph, node_id) or group_ids & self.update_groups:
            reason = update_conflict(self.graph, self.analysis, self._members(node_id, group_ids))
            if reason:
                return reason
        if (len(group_ids) > 1 or not producers <= group_ids) and \
                self.creates_cycle(group_ids, producers):
            # (a node that reads only the one group it joins cannot close a cycle)
            return "fusing would create a cycle between kernels"
        return None

    def _members(self, node_id: int, group_ids: set[int]) -> set[int]:
        return {node_id}.union(*(self.groups[g].members for g in group_ids))

    def merge(self, node_id: int, group_ids: set[int]) -> Group:
        keep = self.groups[min(group_ids)]
        reps = self._reps.get(keep.id) if len(group_ids) == 1 else None
        for group_id in group_ids:
            self._reps.pop(group_id, None)
        if reps is not None:
            self._reps[keep.id] = space_representatives(self.graph, reps + [node_id])
        if any(self.groups[g].kind == MATMUL for g in group_ids):
            keep.kind = MATMUL
        for group_id in sorted(group_ids - {keep.id}):
            for member in self.groups.pop(group_id).members:
                keep.members.add(member)
                self.group_of[member] = keep.id
            for readers in self.readers_of_root.values():
                if group_id in readers:
                    readers.discard(group_id)
                    readers.add(keep.id)
        keep.members.add(node_id)
        self.group_of[node_id] = keep.id
        if is_update(self.graph, node_id) or group_ids & self.update_groups:
            self.update_groups -= group_ids
            self.update_groups.add(keep.id)
        return keep

    def describe(self, group: Group) -> str:
        first = min(group.members)
        return f"the {group.kind} kernel of %{first} ({self.graph.node(first).op.value})"

    # ------------------------------------------------------------ ordering
    def ordered(self) -> list[Group]:
        """Groups in a topological order of their dependencies (ties: first member first)."""
        depends: dict[int, set[int]] = {g: set() for g in self.groups}
        for group_id, group in self.groups.items():
            for member in group.members:
                for root in self.producer_roots(member):
                    source = self.group_of.get(root)
                    if source is not None and source != group_id:
                        depends[group_id].add(source)
        order: list[Group] = []
        done: set[int] = set()
        pending = sorted(self.groups, key=lambda g: min(self.groups[g].members))
        while pending:
            for group_id in pending:
                if depends[group_id] <= done:
                    break
            else:
                raise AssertionError("fusion produced a cycle between kernels")
            pending.remove(group_id)
            done.add(group_id)
            order.append(self.groups[group_id])
        for index, group in enumerate(order):
            group.id = index
        return order


def plan_fusion(graph: Graph) -> FusionPlan:
    """Group the computed nodes of `graph` into kernels (see the module docstring)."""
    analysis = analyze_views(graph, views_to_materialize(graph))
    grouper = _Grouper(graph, analysis)
    for node_id, node in graph.items():
        if node.op in SOURCES or analysis.is_folded(graph, node_id):
            continue
        grouper.place(node_id)
    return FusionPlan(grouper.ordered(), analysis, grouper.notes, graph)


def plan_from_meta(graph: Graph) -> FusionPlan | None:
    """The plan `fuse` recorded in the graph's meta, or None if some computed node has none."""
    groups: dict[int, Group] = {}
    for node_id, node in graph.items():
        group_id = graph.meta(node_id).get("group")
        if group_id is None:
            continue
        kind = node_kind(graph, node_id)
        group = groups.setdefault(group_id, Group(group_id, LOOP, set()))
        group.members.add(node_id)
        if kind in (MATMUL, HOST):
            group.kind = kind
    materialized = {n for g in groups.values() for n in g.members if graph.node(n).op in VIEWS}
    analysis = analyze_views(graph, materialized, strict=True)
    for node_id, node in graph.items():
        computed = node.op not in SOURCES and not analysis.is_folded(graph, node_id)
        if computed and "group" not in graph.meta(node_id):
            return None
    notes = {n: list(graph.meta(n).get("fusion_stop", ())) for n, _ in graph.items()
             if graph.meta(n).get("fusion_stop")}
    ordered = [groups[g] for g in sorted(groups)]
    return FusionPlan(ordered, analysis, notes)


def fuse(graph: Graph) -> Graph:
    """A copy of `graph` annotated with `meta["group"]` and `meta["fusion_stop"]`."""
    fused = rebuild(graph)
    plan = plan_fusion(fused)
    for group in plan.groups:
        for member in group.members:
            fused.meta(member)["group"] = group.id
    for node_id, reasons in plan.notes.items():
        fused.meta(node_id)["fusion_stop"] = list(reasons)
    return fused
