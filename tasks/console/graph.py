"""The state graph of an ASL definition, laid out in layers and drawn as SVG.

A small Sugiyama-style layout, enough for a state machine of a few dozen states: edges that
close a loop are set aside, every state goes to the layer of its longest path from StartAt,
edges that skip layers get a bend point per layer, and a few barycenter sweeps order each layer
to cut crossings. Each state is drawn with its status class (succeeded, failed, caught, running,
not-reached) so the page's stylesheet colours the path an execution took.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any

NODE_HEIGHT = 34
LAYER_GAP = 30
NODE_GAP = 26
BEND_WIDTH = 14
CHAR_WIDTH = 7.2
MARGIN = 16
START = "(start)"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: str  # "next", "choice", "default", "catch", "start"
    label: str = ""


@dataclass
class Layout:
    positions: dict[str, tuple[float, float]]  # centre of every state
    widths: dict[str, float]
    routes: dict[Edge, list[tuple[float, float]]]  # bend points between source and target
    width: float
    height: float
    edges: list[Edge] = field(default_factory=list)


def edges_of(definition: Mapping[str, Any]) -> list[Edge]:
    """Every transition a definition allows: Next, Choice branches and Default, Catch."""
    edges = [Edge(START, str(definition["StartAt"]), "start")]
    for name, state in definition["States"].items():
        if "Next" in state:
            edges.append(Edge(name, state["Next"], "next"))
        for choice in state.get("Choices", []):
            edges.append(Edge(name, choice["Next"], "choice"))
        if "Default" in state:
            edges.append(Edge(name, state["Default"], "default", "otherwise"))
        for catch in state.get("Catch", []):
            edges.append(Edge(name, catch["Next"], "catch", ", ".join(catch["ErrorEquals"])))
    # A state reached twice from one source (two Catch clauses to one target) is one line.
    unique: dict[tuple[str, str], Edge] = {}
    for edge in edges:
        unique.setdefault((edge.source, edge.target), edge)
    return list(unique.values())


def _forward_edges(nodes: list[str], edges: list[Edge]) -> list[Edge]:
    """The edges without those that close a loop (found by depth-first search from the start)."""
    outgoing: dict[str, list[Edge]] = {node: [] for node in nodes}
    for edge in edges:
        outgoing[edge.source].append(edge)
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    back: set[Edge] = set()
    for root in nodes:
        if root in state:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        state[root] = 1
        while stack:
            node, index = stack.pop()
            if index < len(outgoing[node]):
                stack.append((node, index + 1))
                edge = outgoing[node][index]
                if state.get(edge.target) == 1:
                    back.add(edge)
                elif edge.target not in state:
                    state[edge.target] = 1
                    stack.append((edge.target, 0))
            else:
                state[node] = 2
    return [edge for edge in edges if edge not in back]


def _layers(nodes: list[str], forward: list[Edge]) -> dict[str, int]:
    """Longest path from the start: a state sits below everything that leads to it."""
    incoming: dict[str, list[str]] = {node: [] for node in nodes}
    for edge in forward:
        incoming[edge.target].append(edge.source)
    layer: dict[str, int] = {}

    def depth(node: str) -> int:
        if node not in layer:
            layer[node] = 0  # guards a malformed cycle; the DAG never revisits
            layer[node] = max((depth(s) + 1 for s in incoming[node]), default=0)
        return layer[node]

    for node in nodes:
        depth(node)
    return layer


def layout(definition: Mapping[str, Any]) -> Layout:
    names = [START, *definition["States"]]
    edges = [e for e in edges_of(definition) if e.target in definition["States"]]
    forward = _forward_edges(names, edges)
    layer = _layers(names, forward)
    # Chains of bend points for edges that skip layers (and for loop edges, drawn upwards).
    chains: dict[Edge, list[str]] = {}
    rank = dict(layer)
    for edge in edges:
        low, high = sorted((layer[edge.source], layer[edge.target]))
        bends = [f"{edge.source}->{edge.target}#{i}" for i in range(low + 1, high)]
        if layer[edge.source] > layer[edge.target]:
            bends.reverse()
        for i, bend in enumerate(bends):
            rank[bend] = (
                low + 1 + i
                if layer[edge.source] < layer[edge.target]
                else layer[edge.source] - 1 - i
            )
        chains[edge] = bends
    rows: dict[int, list[str]] = {}
    for node in names:
        rows.setdefault(rank[node], []).append(node)
    for bends in chains.values():
        for bend in bends:
            rows.setdefault(rank[bend], []).append(bend)
    neighbours: dict[str, list[str]] = {node: [] for node in rank}
    # Straightening follows the main flow: a Catch edge pulls its ends only a little.
    pulls: dict[str, list[tuple[str, float]]] = {node: [] for node in rank}
    for edge, bends in chains.items():
        path = [edge.source, *bends, edge.target]
        weight = 0.1 if edge.kind == "catch" else 1.0
        for a, b in itertools.pairwise(path):
            neighbours[a].append(b)
            neighbours[b].append(a)
            pulls[a].append((b, 1.0 if "#" in a else weight))
            pulls[b].append((a, 1.0 if "#" in b else weight))
    order = _order(rows, rank, neighbours)
    widths = {
        node: _width(node) if node in rank and "#" not in node else BEND_WIDTH for node in rank
    }
    positions = _straightened(order, widths, pulls, _coordinates(order, widths))
    width = max(x + widths[n] / 2 for n, (x, _) in positions.items()) + MARGIN
    height = max(y for _, y in positions.values()) + NODE_HEIGHT / 2 + MARGIN
    routes = {edge: [positions[bend] for bend in bends] for edge, bends in chains.items()}
    states = {n: p for n, p in positions.items() if "#" not in n}
    return Layout(states, widths, routes, width, height, edges)


def _width(name: str) -> float:
    return max(len(name) * CHAR_WIDTH + 24, 60.0)


def _order(
    rows: dict[int, list[str]], rank: dict[str, int], neighbours: dict[str, list[str]]
) -> dict[int, list[str]]:
    """Barycenter sweeps, down then up, a few times: each node moves to the mean position of
    its neighbours in the layer before."""
    order = {level: list(nodes) for level, nodes in rows.items()}
    levels = sorted(order)
    for sweep in range(8):
        sequence = levels[1:] if sweep % 2 == 0 else list(reversed(levels[:-1]))
        for level in sequence:
            adjacent = level - 1 if sweep % 2 == 0 else level + 1
            index = {node: i for i, node in enumerate(order.get(adjacent, []))}

            def barycenter(node: str, position: int, index: dict[str, int] = index) -> float:
                places = [index[n] for n in neighbours[node] if n in index]
                return sum(places) / len(places) if places else float(position)

            current = order[level]
            order[level] = [
                node
                for _, _, node in sorted(
                    (barycenter(node, i), i, node) for i, node in enumerate(current)
                )
            ]
    return order


def _coordinates(
    order: dict[int, list[str]], widths: dict[str, float]
) -> dict[str, tuple[float, float]]:
    """Each layer centred on the widest one's axis."""
    spans = {
        level: sum(widths[n] for n in nodes) + NODE_GAP * (len(nodes) - 1)
        for level, nodes in order.items()
    }
    widest = max(spans.values())
    positions: dict[str, tuple[float, float]] = {}
    for level, nodes in order.items():
        x = MARGIN + (widest - spans[level]) / 2
        y = MARGIN + NODE_HEIGHT / 2 + level * (NODE_HEIGHT + LAYER_GAP)
        for node in nodes:
            positions[node] = (x + widths[node] / 2, y)
            x += widths[node] + NODE_GAP
    return positions


def _straightened(
    order: dict[int, list[str]],
    widths: dict[str, float],
    pulls: dict[str, list[tuple[str, float]]],
    positions: dict[str, tuple[float, float]],
) -> dict[str, tuple[float, float]]:
    """Pull each node towards the mean x of its neighbours, layer by layer, keeping the order
    and the gaps, so chains run straight instead of drifting with their layer's width."""
    x = {node: position[0] for node, position in positions.items()}
    levels = sorted(order)
    for sweep in range(6):
        for level in levels if sweep % 2 == 0 else reversed(levels):
            nodes = order[level]
            wanted = []
            for node in nodes:
                total = sum(weight for _, weight in pulls[node])
                pulled = sum(x[n] * weight for n, weight in pulls[node])
                wanted.append(pulled / total if total else x[node])
            gaps = [widths[a] / 2 + NODE_GAP + widths[b] / 2 for a, b in itertools.pairwise(nodes)]
            # Two placements that keep the order and gaps, one pushing right and one pushing
            # left; their mean keeps them too and favours neither side.
            rightwards = list(wanted)
            for i in range(1, len(nodes)):
                rightwards[i] = max(wanted[i], rightwards[i - 1] + gaps[i - 1])
            leftwards = list(wanted)
            for i in range(len(nodes) - 2, -1, -1):
                leftwards[i] = min(wanted[i], leftwards[i + 1] - gaps[i])
            for node, a, b in zip(nodes, rightwards, leftwards, strict=True):
                x[node] = (a + b) / 2
    left = min(x[node] - widths[node] / 2 for node in x)
    return {node: (x[node] - left + MARGIN, positions[node][1]) for node in x}


# ---------------------------------------------------------------------------- SVG


def svg(
    definition: Mapping[str, Any],
    statuses: Mapping[str, str],
    taken: set[tuple[str, str]],
    *,
    machine: str,
    links: Mapping[str, str] | None = None,
    titles: Mapping[str, str] | None = None,
) -> str:
    """The graph as an SVG element; ``statuses`` colours states (others are not-reached),
    ``taken`` marks the edges the execution went along, ``links`` makes a state open another
    execution (StartLabsWorkflow opens the labs child)."""
    shape = layout(definition)
    links = links or {}
    titles = titles or {}
    parts = [
        f'<svg class="state-graph" data-machine="{machine}" '
        f'width="{shape.width:.0f}" height="{shape.height:.0f}" '
        f'viewBox="0 0 {shape.width:.0f} {shape.height:.0f}" role="img" '
        f'aria-label="state graph of the {machine} state machine">',
        "<defs>"
        + "".join(
            f'<marker id="{marker}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
            'markerHeight="8" markerUnits="userSpaceOnUse" orient="auto-start-reverse">'
            f'<path d="M0,0 L10,5 L0,10 z" class="{marker}"/></marker>'
            for marker in ("arrow", "arrow-taken")
        )
        + "</defs>",
    ]
    states = definition["States"]
    first = str(definition["StartAt"])
    for edge in shape.edges:
        was_taken = (edge.source, edge.target) in taken or (
            edge.source == START and edge.target == first and first in statuses
        )
        parts.append(_edge_svg(shape, edge, was_taken))
    for name, (x, y) in shape.positions.items():
        if name == START:
            status = "succeeded" if first in statuses else "not-reached"
            parts.append(f'<circle class="start status-{status}" cx="{x:.1f}" cy="{y:.1f}" r="8"/>')
            continue
        kind = states[name]["Type"]
        status = statuses.get(name, "not-reached")
        parts.append(_node_svg(name, kind, status, x, y, shape.widths[name], links, titles))
    parts.append("</svg>")
    return "".join(parts)


def _edge_svg(shape: Layout, edge: Edge, taken: bool) -> str:
    sx, sy = shape.positions[edge.source]
    tx, ty = shape.positions[edge.target]
    points = shape.routes.get(edge, [])
    downward = ty > sy
    half = 8 if edge.source == START else NODE_HEIGHT / 2
    start = (sx, sy + half if downward else sy - half)
    end = (tx, ty - NODE_HEIGHT / 2 if downward else ty + NODE_HEIGHT / 2)
    path = [start, *points, end]
    d = f"M{path[0][0]:.1f},{path[0][1]:.1f}"
    for (ax, ay), (bx, by) in itertools.pairwise(path):
        middle = (ay + by) / 2
        d += f" C{ax:.1f},{middle:.1f} {bx:.1f},{middle:.1f} {bx:.1f},{by:.1f}"
    classes = f"edge edge-{edge.kind}" + (" taken" if taken else "")
    title = f"<title>{escape(edge.label)}</title>" if edge.label else ""
    return (
        f'<path class="{classes}" data-source="{escape(edge.source)}" '
        f'data-target="{escape(edge.target)}" d="{d}" '
        f'marker-end="url(#{"arrow-taken" if taken else "arrow"})">{title}</path>'
    )


def _node_svg(
    name: str,
    kind: str,
    status: str,
    x: float,
    y: float,
    width: float,
    links: Mapping[str, str],
    titles: Mapping[str, str],
) -> str:
    left, top = x - width / 2, y - NODE_HEIGHT / 2
    if kind == "Choice":
        inset = 12
        body = (
            f'<polygon points="{left:.1f},{y:.1f} {left + inset:.1f},{top:.1f} '
            f"{left + width - inset:.1f},{top:.1f} {left + width:.1f},{y:.1f} "
            f"{left + width - inset:.1f},{top + NODE_HEIGHT:.1f} "
            f'{left + inset:.1f},{top + NODE_HEIGHT:.1f}"/>'
        )
    else:
        radius = NODE_HEIGHT / 2 if kind in ("Succeed", "Fail") else 5
        body = (
            f'<rect x="{left:.1f}" y="{top:.1f}" width="{width:.1f}" height="{NODE_HEIGHT}" '
            f'rx="{radius:.0f}"/>'
        )
    link = links.get(name)
    extra = f' data-link="{escape(link)}" tabindex="0"' if link else ""
    title = titles.get(name, f"{name} ({kind}): {status.replace('-', ' ')}")
    return (
        f'<g class="state kind-{kind.lower()} status-{status}{" linked" if link else ""}" '
        f'data-state="{escape(name)}" data-status="{status}"{extra}>'
        f"<title>{escape(title)}</title>{body}"
        f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle">{escape(name)}</text></g>'
    )
