"""Where the architecture picture's boxes go: a box per stack, the flow from left to right, no layout engine.

Where each stack's box goes is a presentation choice (picture_style.STACK_PLACES): the request
path and the data on the left (web, then Postgres), change capture above (Pelican), then the
queues, Emu and the index to the right. A stack that table does not know yet goes in the bottom
row, so a new stack is never left out. Inside a box, nodes stand in columns by kind
(KIND_COLUMNS); a state machine's functions are drawn inside it, in the order it runs them.
"""

from __future__ import annotations

from dataclasses import dataclass

from refarch_local.architecture_picture.graph import ArchitectureGraph, Node
from refarch_local.architecture_picture.picture_style import (
    BAND_GAP,
    BOX_PAD,
    COLUMN_GAP,
    EDGE_STYLES,
    KIND_COLUMNS,
    KIND_ORDER,
    KIND_STYLES,
    LINE_H,
    MARGIN,
    NODE_GAP,
    STACK_GAP,
    STACK_PLACES,
    TITLE_H,
)


def _text_width(text: str, size: float, bold: bool = False) -> float:
    """A sans-serif text's width in pixels, estimated (no font metrics at hand; generous on purpose)."""
    return len(text) * size * (0.58 if bold else 0.52)


@dataclass
class Box:
    """A placed rectangle."""

    x: float
    y: float
    w: float
    h: float

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


class PictureLayout:
    """Where every stack and node of one graph goes (boxes in pixels); the drawing subclasses it."""

    def __init__(self, graph: ArchitectureGraph) -> None:
        self.graph = graph
        self.children: dict[str, list[Node]] = {}
        for node in sorted(graph.nodes.values()):
            if node.parent:
                self.children.setdefault(node.parent, []).append(node)
        for nodes in self.children.values():
            nodes.sort(key=lambda n: (n.step, n.id))
        self.reads: dict[str, list[str]] = {}
        self.logins: dict[str, str] = {}
        for edge in sorted(set(graph.edges)):
            if edge.kind == "reads":
                self.reads.setdefault(edge.source, []).append(graph.nodes[edge.target].label.removeprefix("refarch/"))
            elif edge.kind == "connects":
                self.logins[edge.source] = edge.label
        self.boxes: dict[str, Box] = {}
        self.stack_boxes: dict[str, Box] = {}
        self.legend_origin = (0.0, 0.0)

    # -- node geometry --------------------------------------------------------------------------

    def _lines(self, node: Node) -> list[tuple[str, str]]:
        """(style, text) lines of a node's box, top to bottom."""
        caption = KIND_STYLES.get(node.kind, ("", "", node.kind))[2]
        lines = [("caption", caption.upper()), ("label", node.label)]
        if node.detail:
            lines.append(("detail", node.detail))
        if node.id in self.logins and node.parent is None:
            lines += [("extra", line) for line in _wrap(f"Postgres login: {self.logins[node.id]}")]
        if node.id in self.reads:
            lines += [("extra", line) for line in _wrap("secrets: " + ", ".join(self.reads[node.id]))]
        if node.note:
            lines.append(("note", node.note))
        return lines

    def _size(self, node: Node) -> tuple[float, float]:
        """Width and height of a node's box (a state machine's includes its functions)."""
        lines = self._lines(node)
        width = max(_text_width(text, 13 if style == "label" else 10.5, style == "label") for style, text in lines) + 24
        height: float = sum(LINE_H.get(style, 13) for style, _ in lines) + 14
        kids = self.children.get(node.id, [])
        if kids:
            sizes = [self._size(kid) for kid in kids]
            width = max(width, sum(w for w, _ in sizes) + 22 * (len(kids) - 1) + 24)
            height += max(h for _, h in sizes) + 12
        return max(width, 150), height

    # -- layout ------------------------------------------------------------------------------------

    def _layout_stack(self, stack: str, x: float, y: float) -> Box:
        """Place a stack's nodes in columns by kind; return the stack's box."""
        nodes = [n for n in self.graph.nodes.values() if n.stack == stack and n.parent is None]
        columns: dict[int, list[Node]] = {}
        for node in sorted(nodes, key=_row_key):
            columns.setdefault(KIND_COLUMNS.get(node.kind, 0), []).append(node)
        title_w = _text_width(self._stack_title(stack), 13, True) + 2 * BOX_PAD
        cursor_x, bottom = x + BOX_PAD, y + TITLE_H
        if stack in self.graph.summaries:
            bottom += 16
        for column in sorted(columns):
            sizes = [self._size(node) for node in columns[column]]
            width = max(w for w, _ in sizes)
            cursor_y = y + TITLE_H
            for node, (_, h) in zip(columns[column], sizes, strict=True):
                self.boxes[node.id] = Box(cursor_x, cursor_y, width, h)
                self._layout_children(node)
                cursor_y += h + NODE_GAP
            bottom = max(bottom, cursor_y - NODE_GAP)
            cursor_x += width + COLUMN_GAP
        width = max(cursor_x - COLUMN_GAP + BOX_PAD - x, title_w)
        if stack in self.graph.summaries:
            width = max(width, _text_width(self.graph.summaries[stack], 10.5) + 2 * BOX_PAD)
        box = Box(x, y, width, bottom - y + BOX_PAD)
        self.stack_boxes[stack] = box
        return box

    def _layout_children(self, node: Node) -> None:
        """Place a state machine's functions side by side at the bottom of its box."""
        kids = self.children.get(node.id, [])
        if not kids:
            return
        box = self.boxes[node.id]
        sizes = [self._size(kid) for kid in kids]
        kid_h = max(h for _, h in sizes)
        x = box.x + 12
        for kid, (w, _) in zip(kids, sizes, strict=True):
            self.boxes[kid.id] = Box(x, box.y + box.h - kid_h - 10, w, kid_h)
            x += w + 22

    def _stack_title(self, stack: str) -> str:
        return f"{stack} stack" if stack else "Created by you, outside the stacks"

    def layout(self) -> tuple[float, float]:
        """Place every stack; return the picture's width and height."""
        bands: dict[str, list[str]] = {"top": [], "middle": [], "bottom": []}
        for stack in self.graph.stacks:
            band, _ = STACK_PLACES.get(stack, ("bottom", 99))
            bands[band].append(stack)
        for members in bands.values():
            members.sort(key=lambda s: STACK_PLACES.get(s, ("", 99))[1])
        if any(n.stack == "" for n in self.graph.nodes.values()):
            bands["bottom"].insert(0, "")
        top_y = MARGIN + 44
        # Lay the top band out first at a provisional place to learn its height, then again for real.
        middle_first_w = self._dry_width(bands["middle"][:1])
        x = MARGIN + middle_first_w + STACK_GAP
        top_h = 0.0
        for stack in bands["top"]:
            box = self._layout_stack(stack, x, top_y)
            x += box.w + STACK_GAP
            top_h = max(top_h, box.h)
        middle_y = top_y + top_h + BAND_GAP
        x, middle_h = MARGIN, 0.0
        for stack in bands["middle"]:
            box = self._layout_stack(stack, x, middle_y)
            x += box.w + STACK_GAP
            middle_h = max(middle_h, box.h)
        width = max(b.x + b.w for b in self.stack_boxes.values()) + MARGIN
        bottom_y, x, bottom_h = middle_y + middle_h + BAND_GAP, MARGIN, 0.0
        for stack in bands["bottom"]:
            box = self._layout_stack(stack, x, bottom_y)
            x += box.w + STACK_GAP
            bottom_h = max(bottom_h, box.h)
        legend_x = x
        self.legend_origin = (legend_x, bottom_y)
        legend_w = 330
        width = max(width, legend_x + legend_w + MARGIN)
        height = bottom_y + max(bottom_h, 22 + 17 * len(EDGE_STYLES)) + MARGIN
        return width, height

    def _dry_width(self, stacks: list[str]) -> float:
        """Width of stacks laid out (then forgotten): to place the top band over the middle band's second box."""
        width = 0.0
        for stack in stacks:
            box = self._layout_stack(stack, 0, 0)
            width += box.w
        return width


def _row_key(node: Node) -> tuple[int, int, str]:
    """Order within a column: by kind, then by lane (a lane's parts line up); the bulk lane first, as more
    parts send to it and the top of a column is the easiest to reach."""
    lane = 0 if "bulk lane" in node.detail else 1 if "live lane" in node.detail else 2
    kind = KIND_ORDER.index(node.kind) if node.kind in KIND_ORDER else len(KIND_ORDER)
    return (kind, lane, node.id)


def _wrap(text: str, width: int = 46) -> list[str]:
    """Break a comma-separated line after commas so that no line is much longer than `width` characters."""
    lines = [""]
    for part in text.split(", "):
        candidate = f"{lines[-1]}, {part}" if lines[-1] else part
        if len(candidate) > width and lines[-1]:
            lines[-1] += ","
            lines.append("    " + part)
        else:
            lines[-1] = candidate
    return lines
