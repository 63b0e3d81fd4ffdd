"""Draw an ArchitectureGraph as one SVG, on the boxes PictureLayout placed.

Edges are curves between box sides, under the boxes, coloured by kind (picture_style.EDGE_STYLES,
shown in the legend). The graph's text (`ArchitectureGraph.describe()`) is embedded as <metadata>,
so a test can tell a stale picture from a fresh synth without comparing pixels.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from refarch_local.architecture_picture.graph import ArchitectureGraph, Edge, Node
from refarch_local.architecture_picture.layout import Box, PictureLayout
from refarch_local.architecture_picture.picture_style import (
    BAND_GAP,
    BOX_PAD,
    EDGE_STYLES,
    FONT,
    KIND_STYLES,
    LINE_H,
    MARGIN,
)


class _Picture(PictureLayout):
    """The SVG document of one graph."""

    def __init__(self, graph: ArchitectureGraph, title: str) -> None:
        super().__init__(graph)
        self.title = title
        self.svg: list[str] = []

    # -- drawing -----------------------------------------------------------------------------------

    def draw(self) -> str:
        """The whole SVG document."""
        width, height = self.layout()
        out = self.svg
        out.append(
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="{FONT}">'
        )
        out.append(f"<title>{escape(self.title)}</title>")
        out.append(f'<metadata id="architecture-graph"><![CDATA[\n{self.graph.describe()}]]></metadata>')
        out.append("<defs>" + "".join(_arrow_marker(kind, style[0]) for kind, style in EDGE_STYLES.items()) + "</defs>")
        out.append(f'<rect width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>')
        out.append(
            f'<text x="{MARGIN}" y="{MARGIN + 16}" font-size="19" font-weight="700" fill="#222">'
            f"{escape(self.title)}</text>"
        )
        for stack, box in self.stack_boxes.items():
            self._draw_stack(stack, box)
        # Lines go under the boxes (a line crossing a box hides behind it), their labels over them.
        labels = [self._draw_edge(edge, start, end) for edge, (start, end) in self._routes()]
        for node_id in sorted(self.boxes, key=lambda n: self.graph.nodes[n].parent is not None):
            self._draw_node(self.graph.nodes[node_id])
        out.extend(label for label in labels if label)
        self._draw_entry()
        self._draw_legend()
        out.append("</svg>")
        return "\n".join(out) + "\n"

    def _draw_stack(self, stack: str, box: Box) -> None:
        outside = stack == ""
        self.svg.append(
            f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" height="{box.h:.1f}" rx="10" '
            f'fill="{"#ffffff" if outside else "#f6f7f9"}" stroke="#b8bcc4" stroke-width="1.2"'
            f"{_dash('5 4' if outside else '')}/>"
        )
        self.svg.append(
            f'<text x="{box.x + BOX_PAD:.1f}" y="{box.y + 20:.1f}" font-size="13" font-weight="700" fill="#4a4f59">'
            f"{escape(self._stack_title(stack))}</text>"
        )
        if stack in self.graph.summaries:
            self.svg.append(
                f'<text x="{box.x + BOX_PAD:.1f}" y="{box.y + 40:.1f}" font-size="10.5" fill="#555">'
                f"{escape(self.graph.summaries[stack])}</text>"
            )

    def _draw_node(self, node: Node) -> None:
        box = self.boxes[node.id]
        stripe, fill, _ = KIND_STYLES.get(node.kind, ("#888888", "#f2f2f2", node.kind))
        self.svg.append(
            f'<g id="{escape(node.id)}"><rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" height="{box.h:.1f}" '
            f'rx="6" fill="{fill}" stroke="{stripe}" stroke-width="1.3"/>'
            f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="5" height="{box.h:.1f}" rx="2" fill="{stripe}"/>'
        )
        y = box.y + 6
        for style, text in self._lines(node):
            y += LINE_H.get(style, 13)
            size, weight, colour, extra = {
                "caption": (9, 700, stripe, ' letter-spacing="0.6"'),
                "label": (13, 700, "#1d1f23", ""),
                "detail": (10.5, 400, "#4a4f59", ""),
                "extra": (10.5, 400, "#6a6f79", ""),
                "note": (10.5, 400, "#7a5bbf", ' font-style="italic"'),
            }[style]
            self.svg.append(
                f'<text x="{box.x + 13:.1f}" y="{y - 3:.1f}" font-size="{size}" font-weight="{weight}" '
                f'fill="{colour}"{extra}>{escape(text)}</text>'
            )
        self.svg.append("</g>")

    def _drawn_edges(self) -> list[Edge]:
        """The edges drawn as lines: a state machine's own functions are inside it (no line), and an edge
        every function of a state machine has is drawn once, from the machine."""
        edges = sorted({e for e in self.graph.edges if e.kind in EDGE_STYLES})
        drawn: set[Edge] = set()
        for edge in edges:
            source = self.graph.nodes[edge.source]
            if source.kind == "state machine" and self.graph.nodes[edge.target].parent == source.id:
                continue
            if source.parent:
                siblings = self.children[source.parent]
                if all(
                    Edge(s.id, edge.target, edge.kind, edge.label) in self.graph.edges or s.id == edge.source
                    for s in siblings
                ):
                    drawn.add(Edge(source.parent, edge.target, edge.kind, edge.label))
                    continue
            drawn.add(edge)
        return sorted(drawn)

    def _routes(self) -> list[tuple[Edge, tuple[tuple[float, float, str], tuple[float, float, str]]]]:
        """Each drawn edge's start and end (x, y, side), ends on one side spread out along it."""
        ends: dict[tuple[str, str], list[tuple[Edge, str, float]]] = {}
        plans = []
        for edge in self._drawn_edges():
            a, b = self.boxes[edge.source], self.boxes[edge.target]
            dx, dy = b.cx - a.cx, b.cy - a.cy
            apart_x = b.x >= a.x + a.w + 10 or a.x >= b.x + b.w + 10
            apart_y = b.y >= a.y + a.h + BAND_GAP / 2 or a.y >= b.y + b.h + BAND_GAP / 2
            # Between bands, lines leave and enter through the top and bottom, unless another box is in the way.
            horizontal = apart_x and (not apart_y or self._blocked(edge.source, edge.target))
            if horizontal:
                out_side, in_side = ("right", "left") if dx > 0 else ("left", "right")
            else:
                out_side, in_side = ("bottom", "top") if dy > 0 else ("top", "bottom")
            plans.append((edge, out_side, in_side))
            # Sort key: where the other end is, so lines leaving one side do not cross each other.
            ends.setdefault((edge.source, out_side), []).append((edge, "out", b.cy if horizontal else b.cx))
            ends.setdefault((edge.target, in_side), []).append((edge, "in", a.cy if horizontal else a.cx))
        points: dict[tuple[Edge, str], tuple[float, float, str]] = {}
        for (node_id, side), items in ends.items():
            box = self.boxes[node_id]
            items.sort(key=lambda item: item[2])
            for i, (edge, direction, _) in enumerate(items):
                share = (i + 1) / (len(items) + 1)
                if side in ("left", "right"):
                    x = box.x if side == "left" else box.x + box.w
                    y = box.y + min(box.h - 8, max(8, box.h * share))
                else:
                    x = box.x + box.w * share
                    y = box.y if side == "top" else box.y + box.h
                points[(edge, direction)] = (x, y, side)
        return [(edge, (points[(edge, "out")], points[(edge, "in")])) for edge, _, _ in plans]

    def _blocked(self, source: str, target: str) -> bool:
        """Whether a vertical line from `source` to `target` would cross another box of either one's stack
        in the way (in the target's or the source's column, between the two)."""
        a, b = self.boxes[source], self.boxes[target]
        low, high = (a.y + a.h, b.y) if a.y < b.y else (b.y + b.h, a.y)
        stacks = {self.graph.nodes[source].stack, self.graph.nodes[target].stack}
        related = {source, target, self.graph.nodes[source].parent, self.graph.nodes[target].parent}
        for node_id, box in self.boxes.items():
            node = self.graph.nodes[node_id]
            if node_id in related or node.stack not in stacks or node.parent in (source, target):
                continue
            in_between = box.y < high and box.y + box.h > low
            for end in (a, b):
                if in_between and box.x < end.x + end.w and box.x + box.w > end.x:
                    return True
        return False

    def _draw_edge(self, edge: Edge, start: tuple[float, float, str], end: tuple[float, float, str]) -> str:
        """Draw the edge's line; return its label's SVG (drawn later, over the boxes), or ""."""
        colour, dash, width, _ = EDGE_STYLES[edge.kind]
        (x1, y1, side1), (x2, y2, side2) = start, end
        pull = max(30.0, min(160.0, 0.45 * (abs(x2 - x1) + abs(y2 - y1))))
        c1, c2 = _pull(x1, y1, side1, pull), _pull(x2, y2, side2, pull)
        self.svg.append(
            f'<path d="M{x1:.1f},{y1:.1f} C{c1[0]:.1f},{c1[1]:.1f} {c2[0]:.1f},{c2[1]:.1f} {x2:.1f},{y2:.1f}" '
            f'fill="none" stroke="{colour}" stroke-width="{width}"'
            f'{_dash(dash)} marker-end="url(#arrow-{_slug(edge.kind)})" '
            f'opacity="0.9"><title>{escape(f"{edge.source} {edge.kind} {edge.target} {edge.label}")}</title></path>'
        )
        if edge.label and edge.kind != "connects":
            # The curve's midpoint (t = 0.5 of the cubic).
            mx = (x1 + 3 * c1[0] + 3 * c2[0] + x2) / 8
            my = (y1 + 3 * c1[1] + 3 * c2[1] + y2) / 8
            # One line per comma-separated part, beside a vertical line or above a horizontal one.
            parts = edge.label.split(", ")
            vertical = side1 in ("top", "bottom")
            anchor, lx, ly = ("start", mx + 6, my + 3) if vertical else ("middle", mx, my - 4 - 11 * (len(parts) - 1))
            spans = "".join(
                f'<tspan x="{lx:.1f}" dy="{0 if i == 0 else 11}">{escape(part)}</tspan>' for i, part in enumerate(parts)
            )
            return (
                f'<text x="{lx:.1f}" y="{ly:.1f}" font-size="10" text-anchor="{anchor}" fill="{colour}" '
                f'stroke="#ffffff" stroke-width="3" paint-order="stroke">{spans}</text>'
            )
        return ""

    def _draw_entry(self) -> None:
        """Users' requests come in at the front door: a CDN, or a load balancer nothing else forwards to."""
        forwarded = {e.target for e in self.graph.edges if e.kind == "request"}
        doors = [n for n in self.graph.nodes.values() if n.kind in ("cdn", "load balancer") and n.id not in forwarded]
        colour, _, width, _ = EDGE_STYLES["request"]
        for door in sorted(doors):
            box = self.boxes[door.id]
            top = self.stack_boxes[door.stack].y - BAND_GAP + 8
            self.svg.append(
                f'<path d="M{box.cx:.1f},{top:.1f} L{box.cx:.1f},{box.y:.1f}" stroke="{colour}" stroke-width="{width}" '
                f'marker-end="url(#arrow-request)"/>'
                f'<text x="{box.cx + 8:.1f}" y="{top + 12:.1f}" font-size="11" fill="{colour}">users, HTTPS</text>'
            )

    def _draw_legend(self) -> None:
        x, y = self.legend_origin
        self.svg.append(
            f'<text x="{x:.1f}" y="{y + 14:.1f}" font-size="12" font-weight="700" fill="#4a4f59">Lines</text>'
        )
        for i, (kind, (colour, dash, width, text)) in enumerate(EDGE_STYLES.items()):
            row_y = y + 32 + 17 * i
            self.svg.append(
                f'<line x1="{x:.1f}" y1="{row_y - 4:.1f}" x2="{x + 40:.1f}" y2="{row_y - 4:.1f}" stroke="{colour}" '
                f'stroke-width="{width}"{_dash(dash)} '
                f'marker-end="url(#arrow-{_slug(kind)})"/>'
                f'<text x="{x + 50:.1f}" y="{row_y:.1f}" font-size="11" fill="#333">{escape(text)}</text>'
            )


def _pull(x: float, y: float, side: str, distance: float) -> tuple[float, float]:
    """A Bezier control point `distance` away from (x, y), out of the box through `side`."""
    return {
        "left": (x - distance, y),
        "right": (x + distance, y),
        "top": (x, y - distance),
        "bottom": (x, y + distance),
    }[side]


def _dash(pattern: str) -> str:
    """A stroke-dasharray attribute, or nothing for a solid line."""
    return f' stroke-dasharray="{pattern}"' if pattern else ""


def _slug(kind: str) -> str:
    return kind.replace(" ", "-")


def _arrow_marker(kind: str, colour: str) -> str:
    return (
        f'<marker id="arrow-{_slug(kind)}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
    )


def render_svg(graph: ArchitectureGraph, *, title: str) -> str:
    """The picture of `graph` as an SVG document (with the graph's text as metadata)."""
    return _Picture(graph, title).draw()


def embedded_graph(svg: str) -> str | None:
    """The graph text a picture was drawn from (None if it has none)."""
    start = svg.find('<metadata id="architecture-graph"><![CDATA[\n')
    if start < 0:
        return None
    start = svg.index("\n", start) + 1
    return svg[start : svg.index("]]></metadata>", start)]
