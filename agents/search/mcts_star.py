"""MCTS*: process-reward-guided Monte Carlo tree search (ReST-MCTS*, Zhang et al. 2024).

After the paper and its reference implementation (THUDM/ReST-MCTS, ``MCTS/mcts.py``).
Node values are the PRM's raw scores V(s) in [0, 1]. One iteration:

1. simulate (select): from the root, descend by the selection rule (UCT on
   values, a bonus for unvisited children) to a leaf;
2. expand: propose `branch` distinct next steps for the leaf (duplicates of
   siblings or of steps already written are asked again, up to `max_retries`
   times; with `without_replacement`, the default here, one step per ask with
   the steps already taken out of the policy's distribution) and score each
   child with the PRM;
3. evaluate: take the best new child by the selection rule, count a visit, roll
   forward greedily up to `roll_forward_steps` steps (each the PRM-best of
   `roll_branch` proposals) and mix the best value seen into the child,
   V <- (1 - alpha) V + alpha max_V;
4. backup: along the path to the root, count a visit and set each expanded
   node's value to the visit-weighted mean of its visited children's values.

A node is terminal (never expanded) when it states a final answer, hits an
episode limit (or, on planning tasks, is an illegal move), or got no valid
proposal. A selected terminal leaf is only backed up. The reference also closes
a node that reaches `end_gate` without stating an answer; here it stays open
(it is the most promising node, and closed it gives no answer: selected again
and again, such leaves ran searches to their iteration limit with budget left).
With `widen` (the default), an expanded node all of whose children are
terminal is *saturated*: selection stops there and expands it again with up to
`branch` new distinct steps (its existing children's steps excluded), so a small
tree (a short-horizon planning task) does not end the search while budget is
left. A node that gets no new proposal `dead_end_after` times in a row becomes a
dead end (the reference: at once); before that it stays open and is asked again
later with fresh samples, so a peaked policy whose first draws repeat the steps
already tried does not end the search with budget left; a proposal rejected at a
node (it reached a sibling's position, or was too long) is named in its later asks, so
it is not drawn again (`propose_children`). With
`widen_exponent` > 0, nodes also widen progressively with their visits (up to
``branch * floor(N ** widen_exponent)`` children), so a node whose first
proposals were all poor gets new ones. With `widen_by_value`, a node also widens
when a fresh proposal (valued at the mean PRM score of its children) would win
the selection among its open children. The reference expands a node once
(``widen: false``). The search of a problem stops
after `iterations`, when no expandable node is left, when its next call might
exceed the budget, or (unless `data_mode`) as soon as a node that states an
answer reaches `end_gate`.

Answer (``answer_mode``), among the tree's leaves:

- ``"best"``: the first node (in creation order) that states an answer with a
  value >= `end_gate`; else the highest-valued leaf that states an answer; else
  the highest-valued leaf (then the answer is None);
- ``"vote"``: the answer whose leaves' values sum highest (leaves grouped by
  `voting.answer_key`), represented by its highest-valued leaf.

Problems advance together: each iteration makes one batched policy call (plus
one per retry and per roll-forward step) and one batched PRM call (plus one per
roll-forward step) for every problem in play; with `active`, at most that many
are in play and a finished one's slot goes to the next problem
(`agents.search.scheduler`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from agents.models.base import Policy, ValueModel
from agents.search.agent import SearchResult, choose
from agents.search.budget import Budget
from agents.search.ledger import Ledger
from agents.search.proposals import ProposalRequest, propose_children
from agents.search.scheduler import forgetting, run_rounds
from agents.search.sampling import SamplingOptions
from agents.search.traces import is_finished
from agents.search.tree import NO_PARENT, ROOT, Tree
from agents.search.voting import ANSWER_MODES
from reasoning_gym import EpisodeLimits, Problem, ReasoningState, Verifier


@dataclass(frozen=True)
class MCTSStarConfig(SamplingOptions):
    """Hyperparameters of MCTS* (reference defaults; sampling per step, see `SamplingOptions`).

    Attributes:
        iterations: select-expand-evaluate-backup rounds per problem (reference
            README: 50; its scripts use 40-100).
        branch: distinct steps proposed per expansion (reference: 3).
        exploration: c in the UCT rule V + c * sqrt(2 ln N / n) (reference: 0.4-0.7).
        unvisited_bonus: added to an unvisited child's value in selection
            (reference ``INF``: 0.8-1.0).
        end_gate: a node that states an answer with a value at least this ends
            the search (reference: 0.8-0.9).
        alpha: weight of the roll-forward value, V <- (1 - alpha) V + alpha max_V
            (reference: 0.5).
        roll_forward_steps: greedy roll-forward depth from the best new child;
            0 evaluates it by its PRM value alone (reference: 1-3).
        roll_branch: proposals per roll-forward step, the PRM-best one taken
            (reference: 1).
        max_retries: extra asks per rejected proposal (reference: 3).
        widen: expand a saturated node again (all its children terminal) instead
            of ending the search when every leaf is terminal (the reference: False).
        dead_end_after: expansions in a row that bring no new child before a node
            becomes a terminal dead end (the reference: 1); more than 1 needs `widen`.
        widen_temperature: sampling temperature when a node that already has
            children is expanded again (widening); None: `temperature`. A peaked
            policy's first draws are its likeliest steps; asked again at the same
            temperature it mostly repeats them, and the node closes with budget left.
        without_replacement: proposals at a node are sampled with the steps it
            already has (and those proposed earlier in the same expansion) taken out
            of the policy's distribution, where the policy can (`HFPolicy`;
            `agents.models.exclusion`). The reference samples with replacement and
            drops repeats, and a repeat costs its tokens.
        widen_by_value: (with `widen`) a node is also expanded again when a new
            child would win the selection among its open children: an arm valued at
            the mean PRM score of the node's children so far, visited once per
            expansion (`widening`). A node whose children turned out worse than a
            fresh proposal promises gets new ones instead of sending the search
            deeper into them (with exact values the reference rule expanded children
            valued 0 on Countdown until they closed). A node whose widening brought
            nothing `dead_end_after` times in a row is not widened again.
        widen_exponent: progressive widening (with `widen`): an expanded node
            visited N times may hold up to ``branch * floor(N ** widen_exponent)``
            children, and selection stops at a node below that to add `branch`
            more; 0 widens saturated nodes only.
        answer_mode: "best" or "vote" (see the module docstring).
        data_mode: run every iteration even after a node reaches the end gate,
            and grade every answer node against the oracle (for training data).
    """

    iterations: int = 50
    branch: int = 3
    exploration: float = 0.5
    unvisited_bonus: float = 1.0
    end_gate: float = 0.9
    alpha: float = 0.5
    roll_forward_steps: int = 3
    roll_branch: int = 1
    max_retries: int = 3
    widen: bool = True
    dead_end_after: int = 1
    widen_temperature: float | None = None
    without_replacement: bool = True
    widen_by_value: bool = False
    widen_exponent: float = 0.0
    answer_mode: str = "best"
    data_mode: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("iterations", "branch", "roll_branch", "dead_end_after"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("exploration", "unvisited_bonus", "roll_forward_steps", "max_retries", "widen_exponent"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.widen_temperature is not None and self.widen_temperature <= 0:
            raise ValueError(f"widen_temperature must be > 0 (or None), got {self.widen_temperature}")
        if self.widen_by_value and not self.widen:
            raise ValueError("widen_by_value expands nodes again, which needs widen")
        if self.dead_end_after > 1 and not self.widen:
            raise ValueError("dead_end_after > 1 keeps a childless node open to be expanded again, which needs widen")
        if self.answer_mode not in ANSWER_MODES:
            raise ValueError(f"answer_mode must be one of {ANSWER_MODES}, got {self.answer_mode!r}")


SelectChild = Callable[[Tree, int, Sequence[int]], int]
"""A selection rule: (tree, expanded node, candidate children) -> the one to descend into."""


def uct_score(value: float, visits: int, parent_visits: int, exploration: float, unvisited_bonus: float) -> float:
    """V + c * sqrt(2 ln N / n) for an arm visited n times under a parent visited N times; V + bonus if n = 0."""
    if visits == 0:
        return value + unvisited_bonus
    return value + exploration * math.sqrt(2.0 * math.log(max(parent_visits, 1)) / visits)


def uct(exploration: float, unvisited_bonus: float) -> SelectChild:
    """UCT on values: argmax over the candidates of `uct_score`. Ties go to the first child."""

    def select_child(tree: Tree, node: int, candidates: Sequence[int]) -> int:
        return max(
            candidates,
            key=lambda c: uct_score(tree.value[c], tree.visits[c], tree.visits[node], exploration, unvisited_bonus),
        )

    return select_child


Widen = Callable[[Tree, int], bool]
"""A widening rule: (tree, expanded non-terminal node) -> expand it again now?"""


def widening(branch: int, exponent: float, by_value: tuple[float, float] | None = None) -> Widen:
    """Saturated nodes always; with `exponent` > 0, also nodes holding fewer than
    ``branch * floor(visits ** exponent)`` children (progressive widening); with
    ``by_value = (exploration, unvisited_bonus)``, also a node whose new child would
    win the selection among its open children (`uct_score`): the new child is an arm
    valued at the mean PRM score of the node's children (what a fresh proposal has
    been worth here) and visited once per expansion so far."""

    def widen(tree: Tree, node: int) -> bool:
        if tree.saturated(node):
            return True
        children = tree.children[node]
        if exponent > 0 and len(children) < branch * math.floor(max(tree.visits[node], 1) ** exponent):
            return True
        if by_value is None or not children:
            return False
        exploration, bonus = by_value
        expansions = math.ceil(len(children) / branch)
        fresh = sum(tree.prm[c] or 0.0 for c in children) / len(children)  # what a proposal here has been worth
        new = uct_score(fresh, expansions, tree.visits[node], exploration, bonus)
        return all(
            new > uct_score(tree.value[c], tree.visits[c], tree.visits[node], exploration, bonus)
            for c in children
            if not tree.terminal[c]
        )

    return widen


def simulate(tree: Tree, select_child: SelectChild, widen: Widen | None = None) -> int:
    """The node reached from the root by `select_child`: an unexpanded or terminal node,
    or one the widening rule `widen` wants expanded again.

    Terminal children are passed over while a sibling is still open: selecting
    one only backs it up again, an iteration that spends no budget and learns
    nothing, and a high-valued closed branch could take every iteration while an
    open sibling waited (seen on Countdown: 1,000 iterations with budget left).
    """
    node = ROOT
    while tree.expanded[node] and not tree.terminal[node]:
        if widen is not None and widen(tree, node):
            return node
        children = tree.children[node]
        node = select_child(tree, node, [child for child in children if not tree.terminal[child]] or children)
    return node


def backup(tree: Tree, node: int) -> None:
    """Count a visit on `node` and its ancestors; each expanded one takes the
    visit-weighted mean of its visited children's values, sum(n_c V_c) / sum(n_c)."""
    while node != NO_PARENT:
        tree.visits[node] += 1
        visited = [child for child in tree.children[node] if tree.visits[child] > 0]
        if visited:
            total = sum(tree.visits[child] for child in visited)
            tree.value[node] = sum(tree.visits[child] * tree.value[child] for child in visited) / total
        node = tree.parent[node]


class MCTSStar:
    """MCTS* over many problems at once; `select_child` defaults to `uct` from the config."""

    def __init__(
        self,
        policy: Policy,
        value: ValueModel,
        config: MCTSStarConfig = MCTSStarConfig(),
        select_child: SelectChild | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        self.policy = policy
        self.value = value
        self.config = config
        self.select_child = select_child or uct(config.exploration, config.unvisited_bonus)
        by_value = (config.exploration, config.unvisited_bonus) if config.widen_by_value else None
        self.widen = widening(config.branch, config.widen_exponent, by_value) if config.widen else None
        self.verifier = verifier

    def solve(
        self,
        problems: Sequence[Problem],
        budget: Budget,
        limits: EpisodeLimits = EpisodeLimits(),
        *,
        active: int | None = None,
        on_done: Callable[[int], None] | None = None,
    ) -> list[SearchResult]:
        config = self.config
        ledger = Ledger(budget, len(problems))
        trees = [Tree.new(ReasoningState(problem)) for problem in problems]
        fruitless: list[dict[int, int]] = [{} for _ in problems]  # {node: expansions in a row with no new child}
        rejected: list[dict[int, set[str]]] = [{} for _ in problems]  # {node: proposals rejected there}
        solved: list[int | None] = [None] * len(problems)  # the first answer node reaching end_gate
        reasons = ["iterations"] * len(problems)
        iterations = [0] * len(problems)

        def advance(running: Sequence[int]) -> list[int]:
            """One iteration for every problem in play; the problems whose search ended."""
            leaves = {
                i: simulate(trees[i], self.select_child, self.widen_unless_fruitless(fruitless[i]))
                for i in running
                if ledger.open(i)
            }
            to_expand = {i: leaf for i, leaf in leaves.items() if not trees[i].terminal[leaf]}
            expanded = self.expand(ledger, trees, to_expand, limits, fruitless, rejected)
            self.evaluate(ledger, trees, expanded, limits)
            for i, leaf in leaves.items():
                tree = trees[i]
                if tree.terminal[leaf] or expanded.get(i) == leaf:  # not when the budget cut the expansion
                    backup(tree, leaf)
                if solved[i] is None:
                    solved[i] = self.first_solution(tree, leaf)
                stop_solved = solved[i] is not None and not config.data_mode
                if ledger.open(i) and (stop_solved or not tree.expandable(config.widen)):
                    reasons[i] = "solved" if stop_solved else "exhausted"
                    ledger.close(i)
            for i in running:
                iterations[i] += 1
                if iterations[i] >= config.iterations:
                    ledger.close(i)
            return [i for i in running if not ledger.open(i)]

        done = forgetting((self.policy, self.value), problems, on_done)  # cached prefixes go with the problem
        run_rounds(len(problems), active, ledger.begin, advance, done)
        return [self.result(ledger, i, tree, solved[i], reasons[i]) for i, tree in enumerate(trees)]

    def widen_unless_fruitless(self, fruitless: dict[int, int]) -> Widen | None:
        """The widening rule, except at unsaturated nodes whose last `dead_end_after` expansions
        brought nothing. A saturated node is always widened: a fruitless widening there makes
        it a dead end (`expand`). Skipping it instead sent selection into its closed children,
        iterations that spend nothing: on Countdown a node widened by value in vain while it
        had an open child, later saturated, spun searches to their iteration limit with a
        third of the budget left (14 of 290 puzzles, MCTS* with exact values at 16x)."""
        if self.widen is None:
            return None
        widen, limit = self.widen, self.config.dead_end_after
        return lambda tree, node: tree.saturated(node) or (fruitless.get(node, 0) < limit and widen(tree, node))

    # --- expansion and evaluation ------------------------------------------------------

    def expand(
        self,
        ledger: Ledger,
        trees: list[Tree],
        leaves: dict[int, int],
        limits: EpisodeLimits,
        fruitless: list[dict[int, int]],
        rejected: list[dict[int, set[str]]],
    ) -> dict[int, int]:
        """Add `branch` distinct PRM-scored children to each leaf; {problem: leaf} of the expanded.

        One batched policy call (plus retries) and one batched PRM call. A leaf
        whose problem ran out of budget meanwhile stays unexpanded; a leaf with
        no valid proposal `dead_end_after` times in a row becomes a terminal dead
        end (once, as in the reference, by default) unless it has an open child.
        A saturated node (widening) gets new children distinct from its old ones.
        `fruitless[i]` counts, per node of tree i, the expansions in a row that
        brought no new child; `rejected[i]` holds, per node, the proposals rejected
        there (never asked for again, `propose_children`).
        """
        config = self.config
        requests = [
            (i, trees[i].state[leaf], tuple(trees[i].step(child) for child in trees[i].children[leaf]))
            for i, leaf in leaves.items()
        ]
        proposals = self.propose(ledger, requests, limits, [rejected[i].setdefault(leaf, set()) for i, leaf in leaves.items()])
        flat = [(i, child) for (i, _, _), children in zip(requests, proposals) for child in children]
        values = iter(ledger.score(self.value, flat))
        expanded: dict[int, int] = {}
        for (i, leaf), children in zip(leaves.items(), proposals):
            child_values = [next(values) for _ in children]
            if not ledger.open(i):
                continue
            tree = trees[i]
            tree.expanded[leaf] = True
            misses = fruitless[i][leaf] = 0 if children else fruitless[i].get(leaf, 0) + 1
            # A node with an open child is never a dead end, even when a progressive
            # widening found nothing new: closing it would hide that child from selection.
            open_child = any(not tree.terminal[c] for c in tree.children[leaf])
            tree.terminal[leaf] = misses >= config.dead_end_after and not open_child
            for child, value in zip(children, child_values):
                tree.add(leaf, child, value, terminal=is_finished(child, limits))
            expanded[i] = leaf
        return expanded

    def propose(
        self, ledger: Ledger, requests: list[ProposalRequest], limits: EpisodeLimits, rejected: list[set[str]]
    ) -> list[list[ReasoningState]]:
        """`branch` distinct children per request: first expansions at `temperature`, widenings
        (requests with siblings) at `widen_temperature`, one batched call per group;
        `rejected[k]`: request k's earlier rejected proposals (updated)."""
        config = self.config
        widening = config.sampling
        if config.widen_temperature is not None:
            widening = replace(widening, temperature=config.widen_temperature)
        groups: dict[bool, list[int]] = {}
        for k, (_, _, siblings) in enumerate(requests):
            groups.setdefault(bool(siblings) and widening != config.sampling, []).append(k)
        proposals: list[list[ReasoningState]] = [[] for _ in requests]
        for widen, ks in groups.items():
            found = propose_children(ledger, self.policy, [requests[k] for k in ks], config.branch,
                                     widening if widen else config.sampling, limits, config.max_retries,
                                     config.without_replacement, [rejected[k] for k in ks])  # fmt: skip
            for k, children in zip(ks, found):
                proposals[k] = children
        return proposals

    def evaluate(self, ledger: Ledger, trees: list[Tree], expanded: dict[int, int], limits: EpisodeLimits) -> None:
        """Visit the best new child of each expanded leaf; roll it forward and mix:
        V <- (1 - alpha) V + alpha max_V (only when the roll-forward scored a step)."""
        rolled: dict[int, int] = {}
        for i, leaf in expanded.items():
            tree = trees[i]
            if not tree.children[leaf]:
                continue
            child = self.select_child(tree, leaf, tree.children[leaf])
            tree.visits[child] += 1
            if not tree.terminal[child]:
                rolled[i] = child
        best = self.roll_forward(ledger, {i: trees[i].state[child] for i, child in rolled.items()}, limits)
        alpha = self.config.alpha
        for i, max_value in best.items():
            tree, child = trees[i], rolled[i]
            tree.value[child] = (1.0 - alpha) * tree.value[child] + alpha * max_value

    def roll_forward(
        self, ledger: Ledger, starts: dict[int, ReasoningState], limits: EpisodeLimits
    ) -> dict[int, float]:
        """Greedy roll-forward from each start; {problem: best PRM value seen} where a step was scored.

        Each step: `roll_branch` distinct proposals per state (one batched call),
        scored (one batched call), the best taken; a state that is finished or
        reaches `end_gate` stops rolling. Rolled states are not added to the tree.
        """
        config = self.config
        best: dict[int, float] = {}
        current = dict(starts)
        for _ in range(config.roll_forward_steps):
            requests = [(i, state, ()) for i, state in current.items() if ledger.open(i)]
            if not requests:
                break
            proposals = propose_children(ledger, self.policy, requests, config.roll_branch, config.sampling, limits,
                                         config.max_retries, config.without_replacement)  # fmt: skip
            flat = [(i, child) for (i, _, _), children in zip(requests, proposals) for child in children]
            step_best: dict[int, tuple[float, ReasoningState]] = {}
            for (i, child), value in zip(flat, ledger.score(self.value, flat)):
                if value is not None and (i not in step_best or value > step_best[i][0]):
                    step_best[i] = (value, child)
            current = {}
            for i, (value, state) in step_best.items():
                best[i] = max(best.get(i, value), value)
                if not (is_finished(state, limits) or value >= config.end_gate):
                    current[i] = state
        return best

    # --- answers -------------------------------------------------------------------

    def first_solution(self, tree: Tree, leaf: int) -> int | None:
        """The first child of `leaf` (just expanded) that states an answer with a value >= end_gate."""
        for child in tree.children[leaf]:
            if tree.answer(child) is not None and tree.value[child] >= self.config.end_gate:
                return child
        return None

    def result(self, ledger: Ledger, i: int, tree: Tree, solved: int | None, reason: str) -> SearchResult:
        if self.config.data_mode:
            tree.grade_answers(self.verifier)
        leaves = tree.leaves()
        chosen = leaves.index(solved) if solved is not None and self.config.answer_mode == "best" else None
        return choose(
            ledger,
            i,
            tree.state[ROOT],
            [tree.state[node] for node in leaves],
            [tree.value[node] for node in leaves],
            self.config.answer_mode,
            chosen=chosen,
            stop_reason=reason,
            tree=tree,
        )
