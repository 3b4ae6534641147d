"""A search tree as one self-contained HTML page: ``rest-mcts solve --tree out.html``.

The page is built from the same plain data as ``--tree-json`` (`Tree.to_dict`),
so a JSON tree saved earlier renders exactly like a live one. It needs nothing
but a browser: the CSS and the script are inline and nothing is fetched, since
users may be offline. Nodes are nested ``<details>`` elements, so they fold
without any script; the script only adds the expand / collapse / chosen-path
buttons. Every text from the tree is HTML-escaped: steps and answers are model
output.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agents.artifacts import write_text_atomically
from agents.search.tree import NO_PARENT, ROOT, Tree

Node = Mapping[str, Any]
"""One node record of `Tree.to_dict`: id, parent, children, depth, step, prm, value, visits,
terminal, answer, correct."""


def write_tree_html(
    tree: Tree | Mapping[str, Any], path: str | Path, *, chosen: int | None = None, oracle: str | None = None
) -> Path:
    """Write `tree` as one self-contained HTML page at `path`, atomically; returns the path.

    Args:
        tree: a `Tree`, or its `Tree.to_dict()` data (e.g. a ``--tree-json`` file
            read back with `json.load`).
        path: the file to write; missing parent folders are created. A reader
            sees the old file or the whole new one, never a partial page.
        chosen: id of the node the search answered with (`Tree.node_of` of its
            trace); the path from the root to it is highlighted. None: no path.
        oracle: the oracle answer, shown in the header when known.

    The page shows the question and, for every node, its step, search value V,
    PRM score and visit count; nodes that state an answer are marked correct or
    incorrect from their ``correct`` field (grade the tree first, e.g. with
    `Tree.grade_answers`; ungraded answers are marked as such).

    Raises:
        ValueError: `chosen` is not a node of the tree.
    """
    path = Path(path)
    write_text_atomically(path, render_tree_html(tree, chosen=chosen, oracle=oracle))
    return path


def render_tree_html(tree: Tree | Mapping[str, Any], *, chosen: int | None = None, oracle: str | None = None) -> str:
    """The page `write_tree_html` writes, as a string (same arguments)."""
    data = tree.to_dict() if isinstance(tree, Tree) else tree
    nodes = {node["id"]: node for node in data["nodes"]}
    if chosen is not None and chosen not in nodes:
        raise ValueError(f"chosen node {chosen} is not in the tree ({len(nodes)} nodes)")
    on_path = _path_to(nodes, chosen)
    title = f"MCTS* tree: {data['problem_id']}"
    body = (
        _header(data, nodes, chosen, oracle)
        + _controls(chosen)
        + f'<ul class="tree">{_node_html(nodes, ROOT, on_path, chosen)}</ul>'
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f"<body>{body}<script>{_SCRIPT}</script></body></html>\n"
    )


def _e(text: object) -> str:
    """`text` as HTML text or attribute value (``& < > " '`` escaped)."""
    return html.escape(str(text))


def _path_to(nodes: Mapping[int, Node], node: int | None) -> set[int]:
    """Ids from the root down to `node`, both included (empty for None)."""
    path: set[int] = set()
    while node is not None and node != NO_PARENT:
        path.add(node)
        node = nodes[node]["parent"]
    return path


# A node's ``correct`` field -> (CSS class, label) of its answer.
_GRADES = {True: ("correct", "\u2713 correct"), False: ("incorrect", "\u2717 incorrect"), None: ("ungraded", "answer")}


def _verdict(node: Node) -> tuple[str, str] | None:
    """(CSS class, label) for a node that states an answer or ends its branch; None otherwise."""
    answer = node["answer"]
    if answer is not None:
        kind, label = _GRADES[node["correct"]]
        return kind, f"{label}: {answer}"
    if node["terminal"]:
        # An inner node is terminal only once a widening expansion found no new step.
        return "terminal", "closed, no further expansion" if node["children"] else "terminal, no answer"
    return None


def _header(data: Mapping[str, Any], nodes: Mapping[int, Node], chosen: int | None, oracle: str | None) -> str:
    """The problem, counts of nodes and graded answers, the oracle and chosen answers, a legend."""
    answered = [node for node in nodes.values() if node["answer"] is not None]
    graded = [node["correct"] for node in answered if node["correct"] is not None]
    depth = max(node["depth"] for node in nodes.values())
    leaves = sum(1 for node in nodes.values() if not node["children"])
    facts = [
        f"{len(nodes)} nodes, {leaves} leaves, depth {depth}, root visits {nodes[ROOT]['visits']}",
        f"{len(answered)} nodes state an answer"
        + (f" ({graded.count(True)} correct, {graded.count(False)} incorrect)" if graded else " (not graded)"),
    ]
    if oracle is not None:
        facts.append(f"oracle answer: {oracle}")
    if chosen is not None:
        verdict = _verdict(nodes[chosen])
        facts.append(f"chosen: node #{chosen}" + (f", {verdict[1]}" if verdict else ", states no answer"))
    items = "".join(f"<li>{_e(fact)}</li>" for fact in facts)
    return (
        f"<header><h1>MCTS* search tree <small>{_e(data['problem_id'])}</small></h1>"
        f'<div class="question">{_e(data["question"])}</div><ul class="facts">{items}</ul>'
        '<p class="legend"><b>V</b> search value (PRM score, mixed with roll-forward values, then the '
        "visit-weighted mean of the children) shown by the bar; <b>PRM</b> the PRM's raw score; "
        "<b>n</b> visits. The chosen path is highlighted.</p></header>"
    )


def _controls(chosen: int | None) -> str:
    """The fold buttons (`_SCRIPT` wires them); "Chosen path" only when there is one."""
    buttons = '<button data-show="all">Expand all</button><button data-show="none">Collapse all</button>'
    if chosen is not None:
        buttons += '<button data-show="chosen">Chosen path</button>'
    return f'<nav class="controls">{buttons}</nav>'


def _node_html(nodes: Mapping[int, Node], node_id: int, on_path: set[int], chosen: int | None) -> str:
    """The ``<li>`` of `node_id` and, nested and open, its subtree."""
    node = nodes[node_id]
    verdict = _verdict(node)
    classes = ["node"] + (["chosen"] if node_id in on_path else []) + ([verdict[0]] if verdict else [])
    row = _row(node, verdict, node_id == chosen)
    opening = f'<li class="{" ".join(classes)}" id="node-{node_id}" data-node="{node_id}">'
    if not node["children"]:
        return f'{opening}<div class="row leaf">{row}</div></li>'
    subtree = "".join(_node_html(nodes, child, on_path, chosen) for child in node["children"])
    return f'{opening}<details open><summary class="row">{row}</summary><ul>{subtree}</ul></details></li>'


def _row(node: Node, verdict: tuple[str, str] | None, is_chosen: bool) -> str:
    """One node's line: id, value bar, V, PRM, n, the step and its tags."""
    value = node["value"]
    width = round(100 * min(max(value, 0.0), 1.0))
    prm = "-" if node["prm"] is None else f"{node['prm']:.3f}"
    step = "(problem)" if node["step"] is None else node["step"]
    tags = f'<span class="tag {verdict[0]}">{_e(verdict[1])}</span>' if verdict else ""
    if is_chosen:
        tags += '<span class="tag chosen-tag">chosen</span>'
    return (
        f'<span class="id">#{node["id"]}</span>'
        f'<span class="bar" title="V {value:.3f}"><i style="width:{width}%"></i></span>'
        f'<span class="num">V {value:.3f}</span><span class="num">PRM {prm}</span>'
        f'<span class="num">n {node["visits"]}</span><span class="step">{_e(step)}</span>{tags}'
    )


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em;color:#1f2328;background:#fff}
h1{font-size:1.3em;margin:0 0 .5em}h1 small{color:#666;font-weight:normal}
.question{white-space:pre-wrap;background:#f3f4f6;border-radius:4px;padding:.6em .8em}
.facts{margin:.6em 0;padding-left:1.2em}.legend{color:#555;font-size:.9em}
.controls{margin:.8em 0}.controls button{margin-right:.5em;padding:.25em .8em;cursor:pointer}
ul.tree,ul.tree ul{list-style:none;margin:0;padding-left:1.3em}
ul.tree{padding-left:0}ul.tree ul{border-left:1px dotted #b8bcc2}
.row{display:block;padding:.1em .3em;border-radius:3px}.row.leaf{padding-left:1.3em}
summary.row{display:list-item;cursor:pointer}.row:hover{background:#f0f4ff}
.row>span{margin-right:.55em}
.id{color:#888;font-size:.85em}
.num{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em;color:#444}
.bar{display:inline-block;width:48px;height:.6em;background:#e5e7eb;border-radius:2px;vertical-align:middle}
.bar i{display:block;height:100%;background:#3b82f6;border-radius:2px}
.step{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap}
.tag{font-size:.8em;padding:.05em .45em;border-radius:8px;white-space:nowrap}
.tag.correct{background:#d1f5db;color:#0b5a22}.tag.incorrect{background:#fbd6d6;color:#8b1111}
.tag.ungraded{background:#e7e9ee;color:#333}.tag.terminal{background:#eee;color:#666}
.tag.chosen-tag{background:#f5b800;color:#000;font-weight:600}
li.chosen>.row,li.chosen>details>summary{background:#fff4c2;font-weight:600}
li.chosen>.row:hover,li.chosen>details>summary:hover{background:#ffe98a}
"""

# Buttons fold the tree: everything, nothing, or only the chosen path (with its siblings in view).
_SCRIPT = """
document.querySelectorAll("nav.controls button").forEach(function (button) {
  button.addEventListener("click", function () {
    var show = button.dataset.show;
    document.querySelectorAll("ul.tree details").forEach(function (details) {
      details.open = show === "all" || (show === "chosen" && details.parentElement.classList.contains("chosen"));
    });
  });
});
"""
