"""The HTML tree view (`rest-mcts solve --tree`): what the page holds, how a real headless
Chromium renders it, and the command line that writes it."""

from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from PIL import Image
from scripted import ScriptedPolicy, ScriptedPRM

from agents.cli import main
from agents.compare import Models
from agents.integrations.tree_view import render_tree_html, write_tree_html
from agents.search import Budget, MCTSStar, MCTSStarConfig
from reasoning_gym import Problem

# --- a small real tree: MCTS* on scripted proposals (as in test_search) ------------------

HOSTILE = "<script>alert('step')</script> & \"x\" < 1"  # model output is text, never markup
TOY = Problem("toy", "What is 2 + 3 * 4? (<b>not bold</b> & no tags)", "14")
A, B, B1 = "2 + 3 = 5", "3 * 4 = 12", "2 + 12 = 14"
ANSWER_14, ANSWER_12 = "The answer is 14", "The answer is 12"
TOY_STEPS = {(): [A, B, HOSTILE], (B,): [B1, "12 - 2 = 10"], (B, B1): [ANSWER_14, ANSWER_12]}
TOY_VALUES = {(A,): 0.3, (B,): 0.7, (HOSTILE,): 0.2, (B, B1): 0.8, (B, "12 - 2 = 10"): 0.4,
              (B, B1, ANSWER_14): 0.95, (B, B1, ANSWER_12): 0.3}  # fmt: skip


@pytest.fixture(scope="module")
def toy():
    """(tree, chosen node) of a data-mode search: every answer graded, the path B, B1, ANSWER_14 chosen."""
    config = MCTSStarConfig(iterations=4, branch=3, exploration=0.5, unvisited_bonus=0.0, roll_forward_steps=0,
                            max_new_tokens=5, max_retries=0, data_mode=True)  # fmt: skip
    result = MCTSStar(ScriptedPolicy(TOY_STEPS), ScriptedPRM(TOY_VALUES), config).solve([TOY], Budget())[0]
    assert result.trace.steps == (B, B1, ANSWER_14)
    return result.tree, result.tree.node_of(result.trace)


ROW = re.compile(
    r'<li class="([^"]*)" id="node-(\d+)" data-node="\d+">(?:<details open(?:="")?>)?'
    r'<(summary|div) class="row[^"]*">(.*?)</\3>'
)


def rows(page: str) -> dict[int, tuple[set[str], str]]:
    """Node id -> (the classes of its ``<li>``, the text of its row) in `page` (or a dumped DOM)."""
    found = {}
    for match in ROW.finditer(page):
        text = html.unescape(re.sub(r"<[^>]+>", " ", match[4]))
        found[int(match[2])] = (set(match[1].split()), " ".join(text.split()))
    return found


def test_page_shows_every_node_its_numbers_verdicts_and_the_chosen_path(toy, tmp_path):
    tree, chosen = toy
    path = write_tree_html(tree, tmp_path / "views" / "tree.html", chosen=chosen, oracle="14")
    assert path == tmp_path / "views" / "tree.html" and os.listdir(path.parent) == ["tree.html"]  # no temp file left
    page = path.read_text(encoding="utf-8")
    found = rows(page)
    assert sorted(found) == list(range(len(tree)))
    for node, (classes, text) in found.items():
        prm = "-" if tree.prm[node] is None else f"{tree.prm[node]:.3f}"
        assert f"V {tree.value[node]:.3f} PRM {prm} n {tree.visits[node]}" in text
        assert " ".join((tree.step(node) or "(problem)").split()) in text
        assert ("chosen" in classes) == (node in tree.path(chosen))
    answers = {tree.answer(node): node for node in range(len(tree)) if tree.answer(node)}
    assert "correct" in found[answers["14"]][0] and "\u2713 correct: 14" in found[answers["14"]][1]
    assert "incorrect" in found[answers["12"]][0] and "\u2717 incorrect: 12" in found[answers["12"]][1]
    assert "chosen" in found[chosen][1]
    assert "oracle answer: 14" in page and "2 nodes state an answer (1 correct, 1 incorrect)" in page


def test_text_is_escaped_and_nothing_is_fetched(toy):
    tree, chosen = toy
    page = render_tree_html(tree, chosen=chosen)
    assert HOSTILE not in page and html.escape(HOSTILE) in page
    assert "<b>not bold</b>" not in page and html.escape(TOY.question) in page
    assert page.count("<script") == 1  # the page's own script; the step's tag is text
    assert not re.search(r"https?://|<link|\bsrc=|@import|url\(", page)


def test_a_tree_json_renders_like_the_live_tree(toy):
    tree, chosen = toy
    assert render_tree_html(json.loads(tree.to_json()), chosen=chosen) == render_tree_html(tree, chosen=chosen)
    with pytest.raises(ValueError, match="not in the tree"):
        render_tree_html(tree, chosen=len(tree))


# --- a real headless Chromium -------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-logging=stderr", "--v=0",  # page console messages (script errors) go to stderr
)  # fmt: skip
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)"
)


def run_chromium(tmp_path: Path, *args: str, timeout: float = 120) -> tuple[str, str]:
    """Run Chromium with a fresh profile; (stdout, stderr). Its whole process group dies on a timeout."""
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    command = [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as process:  # fmt: skip
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the wrapper script, the browser and its renderers
            process.communicate()
            pytest.fail(f"chromium did not finish within {timeout} s: {' '.join(command)}")
    assert process.returncode == 0, err[-3000:]
    assert "Uncaught" not in err, err[-3000:]  # the page's script ran without errors
    return out, err


@needs_chromium
def test_chromium_renders_the_nodes_in_a_screenshot(toy, tmp_path):
    tree, chosen = toy
    page = write_tree_html(tree, tmp_path / "tree.html", chosen=chosen, oracle="14")
    shot = tmp_path / "shot.png"
    run_chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,900", page.as_uri())
    with Image.open(shot) as image:
        assert (image.format, image.size) == ("PNG", (1200, 900))
        colours = {colour for _, colour in image.convert("RGB").getcolors(1 << 24)}
    assert len(colours) > 100, "the screenshot is (nearly) blank"
    # Fills that only styled nodes paint: the chosen-path highlight, value bars, correct and incorrect tags.
    for fill in ((255, 244, 194), (59, 130, 246), (209, 245, 219), (251, 214, 214)):
        assert fill in colours, fill


@needs_chromium
def test_chromium_builds_the_dom_and_the_buttons_fold_to_the_chosen_path(toy, tmp_path):
    tree, chosen = toy
    page = render_tree_html(tree, chosen=chosen)
    # Press "Collapse all", then "Chosen path", as a reader would, before the DOM is dumped.
    click = "for (const show of ['none', 'chosen']) document.querySelector(`[data-show=${show}]`).click();"
    probe = f"<script>{click}</script>"
    path = tmp_path / "probe.html"
    path.write_text(page.replace("</body>", probe + "</body>"), encoding="utf-8")
    dom, _ = run_chromium(tmp_path, "--dump-dom", path.as_uri())
    found = rows(dom)
    assert sorted(found) == list(range(len(tree)))
    assert {node for node, (classes, _) in found.items() if "chosen" in classes} == set(tree.path(chosen))
    opened = {int(n) for n in re.findall(r'data-node="(\d+)"><details open', dom)}
    assert opened == {node for node in tree.path(chosen) if tree.children[node]}
    assert dom.count("<script") == 2 and html.escape(HOSTILE, quote=False) in dom  # the step stayed text


# --- the command line -----------------------------------------------------------------------


MCTS = {"max_new_tokens": 8, "branch": 2, "roll_forward_steps": 1, "max_retries": 0, "iterations": 4, "seed": 0}


def solve_countdown(tmp_path: Path, config: dict, *extra: str) -> list[str]:
    """`solve` arguments for Countdown problem 0 (basic: 4 5 6 7, make 20) with MCTS* `config`."""
    (tmp_path / "mcts.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return ["solve", "--source", "countdown", "--difficulty", "basic", "--index", "0", "--max-steps", "4",
            "--config", str(tmp_path / "mcts.yaml"), *extra]  # fmt: skip


def test_solve_writes_the_tree_view_of_the_same_tree_as_tree_json(model_dirs, tmp_path, capsys):
    policy, value = model_dirs
    page, data = tmp_path / "out" / "tree.html", tmp_path / "out" / "tree.json"
    code = main(solve_countdown(tmp_path, MCTS, "--policy", policy, "--value", value, "--tree", str(page),
                                "--tree-json", str(data)))  # fmt: skip
    assert code == 0 and f"tree view written to {page}" in capsys.readouterr().out
    nodes = json.loads(data.read_text())["nodes"]
    found = rows(page.read_text(encoding="utf-8"))
    assert len(nodes) > 1 and sorted(found) == [node["id"] for node in nodes]
    for node in nodes[1:]:  # random models write random characters: each step shows as written
        assert " ".join(node["step"].split()) in found[node["id"]][1]
    assert any("chosen" in classes for classes, _ in found.values())


def test_solve_marks_leaves_as_the_task_grades_them(tmp_path, monkeypatch, capsys):
    """A correct Countdown expression other than the reference one is graded correct (by the task)."""
    # The engine renders each move with the numbers left; the last move also states the expression.
    first, second = "7 - 5 = 2 (left: 2 4 6)", "6 + 4 = 10 (left: 2 10)"
    right = "2 * 10 = 20 (left: 20) The answer is (7 - 5) * (6 + 4)"
    steps = {(): ["7 - 5 = 2", "6 * 4 = 24"], (first,): ["6 + 4 = 10"], (first, second): ["2 * 10 = 20", "10 + 2 = 12"]}
    values = {(first,): 0.7, (first, second): 0.8, (first, second, right): 0.95}
    models = Models(ScriptedPolicy(steps), ScriptedPRM(values), "scripted", "scripted", "basic")
    monkeypatch.setattr("agents.compare.load_models", lambda *args, **kwargs: models)
    page = tmp_path / "tree.html"
    config = {**MCTS, "roll_forward_steps": 0, "unvisited_bonus": 0.0}  # rolling forward would use up the script
    assert main(solve_countdown(tmp_path, config, "--tree", str(page))) == 0
    assert "(oracle (6 + 4) * (7 - 5): correct)" in capsys.readouterr().out
    verdicts = {}
    for classes, text in rows(page.read_text(encoding="utf-8")).values():
        if match := re.search(r"(?:\u2713 correct|\u2717 incorrect): (.+?)(?: chosen)?$", text):
            verdicts[match[1]] = classes
    assert verdicts == {"(7 - 5) * (6 + 4)": {"node", "chosen", "correct"}, "(6 + 4) + (7 - 5)": {"node", "incorrect"}}


def test_solve_tree_needs_a_tree_search(capsys):
    assert main(["solve", "Q?", "--agent", "beam", "--tree", "t.html"]) == 2
    assert "--tree needs a tree search" in capsys.readouterr().err
