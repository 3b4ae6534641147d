"""Search arithmetic with a scripted policy and PRM: every expected number is worked out by hand."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
import yaml
from scripted import ScriptedPolicy, ScriptedPRM

from agents.config import ConfigError
from agents.models.base import Generation, Scores
from agents.search import (
    BeamSearch,
    BeamSearchConfig,
    BestOfN,
    BestOfNConfig,
    Budget,
    ChainOfThought,
    CoTConfig,
    MCTSStar,
    MCTSStarConfig,
    SelfConsistency,
    SelfConsistencyConfig,
    Tree,
    Usage,
    backup,
    make_agent,
    play_episode,
    uct,
)
from agents.search.mcts_star import simulate
from agents.search.ledger import Ledger
from agents.search.proposals import propose_children
from agents.search.voting import answer_key, majority, select
from reasoning_gym import EpisodeLimits, Problem, ReasoningState

TOY = Problem("toy", "What is 2 + 3 * 4?", "14")
A, B, C = "2 + 3 = 5", "3 * 4 = 12", "2 * 4 = 8"
B1, B2, B3 = "2 + 12 = 14", "12 - 2 = 10", "12 + 2 = 15"
ANSWER_14, ANSWER_12 = "The answer is 14", "The answer is 12"

# The known best path is B, B1, ANSWER_14.
TOY_STEPS = {
    (): [A, B, C],
    (B,): [B1, B2, B3],
    (B, B1): [ANSWER_14, "14 - 0 = 14", ANSWER_12],
}
TOY_VALUES = {
    (A,): 0.3, (B,): 0.7, (C,): 0.2,
    (B, B1): 0.8, (B, B2): 0.4, (B, B3): 0.1,
    (B, B1, ANSWER_14): 0.95, (B, B1, "14 - 0 = 14"): 0.5, (B, B1, ANSWER_12): 0.3,
}  # fmt: skip


def mcts(policy, prm, **options) -> MCTSStar:
    # The reference's proposal arithmetic by default: one call asks `branch` steps of a node.
    defaults = {
        "exploration": 0.5, "unvisited_bonus": 0.0, "roll_forward_steps": 0, "max_new_tokens": 5,
        "without_replacement": False,
    }  # fmt: skip
    return MCTSStar(policy, prm, MCTSStarConfig(**{**defaults, **options}))


def filler(index: int) -> Problem:
    return Problem(f"p{index}", f"Count to {index}.", str(index))


# --- selection, backup, the loop ----------------------------------------------------


def test_uct_picks_the_child_worked_out_by_hand():
    tree = Tree.new(ReasoningState(TOY))
    tree.expanded[0] = True
    tree.visits[0] = 10
    for step, value, visits in ((A, 0.6, 5), (B, 0.5, 1), (C, 0.7, 4)):
        node = tree.add(0, ReasoningState(TOY, (step,)), value, terminal=False)
        tree.visits[node] = visits
    # V + 0.5 sqrt(2 ln 10 / n): A 0.6 + 0.5*0.9597 = 1.0799, B 0.5 + 0.5*2.1460 = 1.5730, C 0.7 + 0.5*1.0730 = 1.2365
    assert uct(0.5, 1.0)(tree, 0, tree.children[0]) == 2
    unvisited = tree.add(0, ReasoningState(TOY, ("7 = 7",)), 0.6, terminal=False)
    assert uct(0.5, 1.0)(tree, 0, tree.children[0]) == unvisited  # 0.6 + 1.0 = 1.6 > 1.5730
    assert uct(0.5, 0.5)(tree, 0, tree.children[0]) == 2  # 0.6 + 0.5 = 1.1 < 1.5730


def test_backup_sets_visit_weighted_means_up_to_the_root():
    tree = Tree.new(ReasoningState(TOY))
    a = tree.add(0, ReasoningState(TOY, (A,)), 0.5, terminal=False)
    b = tree.add(0, ReasoningState(TOY, (B,)), 0.4, terminal=False)
    tree.visits[:] = [4, 3, 1]
    for step, value, visits in ((B1, 0.8, 2), (B2, 0.2, 1), (B3, 0.9, 0)):
        child = tree.add(a, ReasoningState(TOY, (A, step)), value, terminal=False)
        tree.visits[child] = visits
    backup(tree, a)
    assert tree.visits[a] == 4 and tree.visits[0] == 5
    assert tree.value[a] == pytest.approx((2 * 0.8 + 1 * 0.2) / 3)  # the unvisited 0.9 does not count
    assert tree.value[0] == pytest.approx((4 * 0.6 + 1 * 0.4) / 5)
    assert tree.value[b] == 0.4


def test_selection_order_with_unvisited_bonus():
    policy, prm = ScriptedPolicy(TOY_STEPS), ScriptedPRM(TOY_VALUES)
    result = mcts(policy, prm, unvisited_bonus=1.0, iterations=4).solve([TOY], Budget())[0]
    # 1: root -> A .3, B .7, C .2; the best new child B gets the visit; root V = .7
    # 2: root N=1 (ln 1 = 0): A 1.3, B .7, C 1.2 -> A; fillers .1; root V = (.7 + .1) / 2
    # 3: root N=2: A .1 + .5 sqrt(2 ln 2) = .689, B .7 + .589 = 1.289, C 1.2 -> B
    # 4: root N=3: A .841, B .8 + .5 sqrt(ln 3) = 1.324, C 1.2 -> B;
    #    B N=2: B1 .8 + .5 sqrt(2 ln 2) = 1.389, B2 .4 + 1 = 1.4 -> B2
    assert [call.states for call in policy.calls] == [[()], [(A,)], [(B,)], [(B, B2)]]
    tree = result.tree
    # root: A (1 visit, .1) and B (3 visits: B1 .8 and B2 .1 once each -> .45)
    assert tree.visits[0] == 4
    assert tree.value[0] == pytest.approx((1 * 0.1 + 3 * 0.45) / 4)
    assert result.stop_reason == "iterations"


def test_mcts_follows_the_best_path_and_stops_at_the_end_gate():
    policy, prm = ScriptedPolicy(TOY_STEPS), ScriptedPRM(TOY_VALUES)
    result = mcts(policy, prm, iterations=10).solve([TOY], Budget())[0]
    # 1: expand root, visit B; 2: B (.7) wins with no bonus; 3: root -> B -> B1 (1.389); B1's child ANSWER_14 is .95
    assert [call.states for call in policy.calls] == [[()], [(B,)], [(B, B1)]]
    assert len(prm.calls) == 3
    assert result.stop_reason == "solved"
    assert result.answer == "14" and result.trace.steps == (B, B1, ANSWER_14)
    tree = result.tree
    assert len(tree) == 10 and tree.value[0] == pytest.approx(0.95)
    assert [tree.terminal[n] for n in tree.children[tree.children[2][0]]] == [True, False, True]


def test_a_step_above_the_end_gate_that_states_no_answer_stays_open():
    steps = {(): [A, B], (B,): [B1, B2], (B, B1): [ANSWER_14, ANSWER_12]}
    values = {(A,): 0.1, (B,): 0.95, (B, B1): 0.6, (B, B2): 0.2, (B, B1, ANSWER_14): 0.97}
    result = mcts(ScriptedPolicy(steps), ScriptedPRM(values), iterations=20, branch=2).solve([TOY], Budget())[0]
    tree = result.tree
    assert not tree.terminal[tree.children[0][1]] and tree.expanded[tree.children[0][1]]
    assert result.stop_reason == "solved" and result.answer == "14"


def test_data_mode_runs_every_iteration_and_grades_answers():
    policy, prm = ScriptedPolicy(TOY_STEPS), ScriptedPRM(TOY_VALUES)
    result = mcts(policy, prm, iterations=4, data_mode=True).solve([TOY], Budget())[0]
    # iteration 4 passes over the terminal ANSWER_14 (selecting it would only back it up
    # again) and expands its open sibling: root -> B -> B1 -> "14 - 0 = 14"
    assert [call.states for call in policy.calls][-1] == [(B, B1, "14 - 0 = 14")] and len(policy.calls) == 4
    assert result.stop_reason == "iterations"
    tree = result.tree
    answers = {tree.answer(n): n for n in range(len(tree)) if tree.answer(n)}
    assert tree.visits[answers["14"]] == 1
    assert tree.correct[answers["14"]] is True and tree.correct[answers["12"]] is False
    assert result.answer == "14"


def test_roll_forward_mixes_the_best_value_seen():
    steps = {(): [B], (B,): [B1], (B, B1): ["12 + 2 = 14"]}
    values = {(B,): 0.4, (B, B1): 0.8, (B, B1, "12 + 2 = 14"): 0.6}
    policy, prm = ScriptedPolicy(steps), ScriptedPRM(values)
    result = mcts(policy, prm, iterations=1, branch=1, roll_forward_steps=2, alpha=0.5).solve([TOY], Budget())[0]
    tree = result.tree
    assert len(tree) == 2  # rolled states stay out of the tree
    assert tree.prm[1] == 0.4
    assert tree.value[1] == pytest.approx(0.5 * 0.4 + 0.5 * 0.8)  # max of .8, .6
    assert tree.value[0] == pytest.approx(0.6) and tree.visits == [1, 1]
    assert [call.states for call in policy.calls] == [[()], [(B,)], [(B, B1)]]


# --- proposals ------------------------------------------------------------------------


def test_duplicate_and_empty_proposals_are_asked_again():
    policy = ScriptedPolicy({(): ["a = 1", "a = 1", "", "b = 2", "a = 1", "c = 3"]})
    result = mcts(policy, ScriptedPRM(), iterations=1, branch=3, max_retries=3).solve([TOY], Budget())[0]
    tree = result.tree
    assert [tree.step(n) for n in tree.children[0]] == ["a = 1", "b = 2", "c = 3"]
    # first call: 3 samples of the root; retry 1: one sample per missing proposal (2 rows); retry 2: 1 row
    assert [(len(call.states), call.n) for call in policy.calls] == [(1, 3), (2, 1), (1, 1)]
    assert result.usage.policy_completion_tokens == (3 + 2 + 1) * 4 and result.usage.policy_calls == 3


def test_steps_already_in_the_solution_are_rejected():
    state = ReasoningState(TOY, ("a = 1",))
    policy = ScriptedPolicy({("a = 1",): ["a = 1", "d = 4", "Step 2: d = 4"]})
    ledger = Ledger(Budget(), 1)
    children = propose_children(ledger, policy, [(0, state, ())], 2, MCTSStarConfig().sampling, EpisodeLimits(), 1)
    assert [child.steps for child in children[0]] == [("a = 1", "d = 4")]


def test_a_leaf_without_valid_proposals_is_a_dead_end():
    policy = ScriptedPolicy({(): []})
    result = mcts(policy, ScriptedPRM(), iterations=5, branch=2, max_retries=1).solve([TOY], Budget())[0]
    assert result.stop_reason == "exhausted" and result.answer is None and result.trace.steps == ()
    assert result.tree.terminal[0] and len(policy.calls) == 2


def test_a_saturated_node_is_expanded_again_with_new_steps_when_widening():
    # The root's first two children state wrong answers (terminal): the tree is saturated.
    steps = {(): [ANSWER_12, "The answer is 10", ANSWER_14, "The answer is 11"]}
    values = {(ANSWER_12,): 0.2, ("The answer is 10",): 0.1, (ANSWER_14,): 0.95}
    result = mcts(ScriptedPolicy(steps), ScriptedPRM(values), iterations=5, branch=2).solve([TOY], Budget())[0]
    tree = result.tree
    assert [tree.step(n) for n in tree.children[0]] == [ANSWER_12, "The answer is 10", ANSWER_14, "The answer is 11"]
    assert result.answer == "14" and result.stop_reason == "solved"
    reference = mcts(ScriptedPolicy(steps), ScriptedPRM(values), iterations=5, branch=2, widen=False)
    closed = reference.solve([TOY], Budget())[0]
    assert closed.stop_reason == "exhausted" and len(closed.tree.children[0]) == 2 and closed.answer == "12"


def test_a_saturated_node_without_new_steps_becomes_a_dead_end():
    steps = {(): [ANSWER_12, "The answer is 10", ANSWER_12, "The answer is 10"]}  # only repeats the second time
    result = mcts(ScriptedPolicy(steps), ScriptedPRM(), iterations=9, branch=2, max_retries=0).solve([TOY], Budget())[0]
    assert result.stop_reason == "exhausted" and result.tree.terminal[0] and len(result.tree.children[0]) == 2


def test_a_node_stays_open_until_dead_end_after_fruitless_expansions():
    # Second call: only repeats. Third call: a new step that solves the problem.
    steps = {(): [ANSWER_12, "The answer is 10", ANSWER_12, "The answer is 10", ANSWER_14, ANSWER_12]}
    values = {(ANSWER_14,): 0.95}
    policy = ScriptedPolicy(steps)
    result = mcts(policy, ScriptedPRM(values), iterations=9, branch=2, max_retries=0, dead_end_after=2).solve([TOY], Budget())[0]
    assert result.stop_reason == "solved" and result.answer == "14" and len(policy.calls) == 3
    assert [result.tree.step(n) for n in result.tree.children[0]] == [ANSWER_12, "The answer is 10", ANSWER_14]
    # two fruitless expansions in a row close it (calls: the first brings children, then two bring none)
    repeats = {(): [ANSWER_12, "The answer is 10"] * 3}
    closed = mcts(ScriptedPolicy(repeats), ScriptedPRM(), iterations=9, branch=2, max_retries=0, dead_end_after=2)
    result = closed.solve([TOY], Budget())[0]
    assert result.stop_reason == "exhausted" and result.tree.terminal[0] and len(closed.policy.calls) == 3
    with pytest.raises(ValueError, match="needs widen"):
        MCTSStarConfig(dead_end_after=2, widen=False)
    with pytest.raises(ValueError, match="dead_end_after"):
        MCTSStarConfig(dead_end_after=0)


def test_a_saturated_node_is_widened_even_after_a_fruitless_widening():
    # A by-value widening of the root brought nothing while it had an open child; that
    # child closed since. Descending into closed children spends nothing (the search
    # ran to its iteration limit); the root is widened, and closes if that brings nothing.
    agent = mcts(ScriptedPolicy(), ScriptedPRM(), branch=2, widen_by_value=True)
    tree = Tree.new(ReasoningState(TOY))
    tree.expanded[0] = True
    for step in (ANSWER_12, A):
        tree.add(0, ReasoningState(TOY, (step,)), 0.2, terminal=step == ANSWER_12)
    tree.visits[:] = [3, 1, 2]
    rule = agent.widen_unless_fruitless({0: 1})
    assert simulate(tree, agent.select_child, rule) == 2  # unsaturated and fruitless: into the open child
    tree.terminal[2] = True
    assert simulate(tree, agent.select_child, rule) == 0  # saturated: widened again
    steps = {(): [ANSWER_12, "The answer is 10", ANSWER_12, "The answer is 10"]}
    result = mcts(ScriptedPolicy(steps), ScriptedPRM(), iterations=50, branch=2, widen_by_value=True).solve([TOY], Budget())[0]
    assert result.stop_reason == "exhausted" and result.tree.terminal[0]


def test_widenings_sample_at_the_widen_temperature():
    steps = {(): [ANSWER_12, "The answer is 10", ANSWER_14, "The answer is 11"]}
    values = {(ANSWER_12,): 0.2, ("The answer is 10",): 0.1, (ANSWER_14,): 0.95}
    policy = ScriptedPolicy(steps)
    agent = mcts(policy, ScriptedPRM(values), iterations=5, branch=2, temperature=0.5, widen_temperature=1.2)
    assert agent.solve([TOY], Budget())[0].answer == "14"
    assert [(call.states, call.temperature) for call in policy.calls] == [([()], 0.5), ([()], 1.2)]
    with pytest.raises(ValueError, match="widen_temperature"):
        MCTSStarConfig(widen_temperature=0.0)


def test_without_replacement_draws_one_step_per_call_naming_the_steps_already_taken():
    # The root asks one step at a time; the second ask names the first; widening names both.
    steps = {(): [ANSWER_12, "The answer is 10", ANSWER_14, "The answer is 11"]}
    values = {(ANSWER_12,): 0.2, ("The answer is 10",): 0.1, (ANSWER_14,): 0.95}
    policy = ScriptedPolicy(steps)
    agent = mcts(policy, ScriptedPRM(values), iterations=5, branch=2, without_replacement=True)
    assert agent.solve([TOY], Budget())[0].answer == "14"
    assert [(call.n, call.exclude) for call in policy.calls] == [
        (1, [()]),
        (1, [(ANSWER_12,)]),
        (1, [(ANSWER_12, "The answer is 10")]),
        (1, [(ANSWER_12, "The answer is 10", ANSWER_14)]),
    ]  # the widening's two asks brought ANSWER_14 (end gate) and "The answer is 11"
    reference = ScriptedPolicy(steps)
    mcts(reference, ScriptedPRM(values), iterations=5, branch=2).solve([TOY], Budget())
    assert [(call.n, call.exclude) for call in reference.calls] == [(2, None), (2, None)]


def test_a_deeper_ask_names_the_nodes_steps_not_the_steps_on_its_path():
    # The path's steps are filtered, not named: the policy wrote them at other states.
    steps = {(): ["3 + 4 = 7"], ("3 + 4 = 7",): ["3 + 4 = 7", "7 * 2 = 14"]}
    policy = ScriptedPolicy(steps)
    agent = mcts(policy, ScriptedPRM(), iterations=2, branch=1, roll_forward_steps=0, without_replacement=True)
    tree = agent.solve([TOY], Budget())[0].tree
    assert [call.exclude for call in policy.calls] == [[()], [()], [()]]  # the repeat was asked again
    assert tree.step(tree.children[tree.children[0][0]][0]) == "7 * 2 = 14"


def test_widening_by_value_asks_for_new_steps_when_the_children_are_worth_less_than_a_fresh_one():
    # Root children A .3 and B .1; A is expanded (B1, B2 .05) and backs up .05. Iteration 3, root
    # N = 2: a fresh root step, worth the children's mean PRM score .2 and one expansion old,
    # scores .2 + .5 sqrt(2 ln 2) = .789 > A .05 + .5 sqrt(ln 2) = .466 > B .1: the root widens.
    steps = {(): [A, B, C, "2 * 3 = 6"], (A,): [B1, B2]}
    values = {(A,): 0.3, (B,): 0.1, (A, B1): 0.05, (A, B2): 0.05, (C,): 0.9}
    policy = ScriptedPolicy(steps)
    tree = mcts(policy, ScriptedPRM(values), iterations=3, branch=2, widen_by_value=True).solve([TOY], Budget())[0].tree
    assert [call.states for call in policy.calls] == [[()], [(A,)], [()]]
    assert [tree.step(c) for c in tree.children[0]] == [A, B, C, "2 * 3 = 6"]
    plain = ScriptedPolicy(steps)
    mcts(plain, ScriptedPRM(values), iterations=3, branch=2).solve([TOY], Budget())
    assert [call.states for call in plain.calls] == [[()], [(A,)], [(A, B1)]]  # the reference goes deeper into A
    with pytest.raises(ValueError, match="needs widen"):
        MCTSStarConfig(widen_by_value=True, widen=False)


def test_a_fruitless_progressive_widening_does_not_close_a_node_with_open_children():
    steps = {(): [A, B, A, B, A, B]}  # widening the root only ever repeats A and B
    policy = ScriptedPolicy(steps)
    result = mcts(policy, ScriptedPRM({(A,): 0.3, (B,): 0.6}), iterations=6, branch=2, widen_exponent=1.0).solve([TOY], Budget())[0]
    tree = result.tree
    assert not tree.terminal[0] and len(tree.children[0]) == 2
    assert any(tree.expanded[child] for child in tree.children[0])  # the search went on below the root
    assert [()] in [call.states for call in policy.calls][1:]  # the root was widened, fruitlessly


# --- budget ----------------------------------------------------------------------------


@pytest.mark.parametrize(("roll", "expected", "last_n"), [(0, 36, 3), (1, 36, 1)])
def test_mcts_stops_when_the_next_call_could_exceed_the_cap(roll, expected, last_n):
    policy = ScriptedPolicy(sample_tokens=4)
    result = mcts(policy, ScriptedPRM(), iterations=50, roll_forward_steps=roll).solve([filler(0)], Budget(40))[0]
    # worst cases: expansion 3 x 5 = 15, roll step 1 x 5 = 5; actual 12 and 4.
    # roll 0: 0+15, 12+15, 24+15 <= 40, then 36 + 5 > 40 even for one proposal.
    # roll 1: 0+15, 12+5, 16+15, 28+5, then 32+15 > 40 but 32+5 fits: one proposal, not three; then 36+5 > 40.
    assert result.usage.policy_completion_tokens == expected
    assert result.stop_reason == "budget"
    assert policy.calls[-1].n == last_n


def test_call_and_total_token_caps_are_respected():
    result = mcts(ScriptedPolicy(), ScriptedPRM(), iterations=50).solve([filler(1)], Budget(policy_calls=2))[0]
    assert result.usage.policy_calls == 2 and result.stop_reason == "budget"
    for cap in (100, 400, 1500):
        result = mcts(ScriptedPolicy(), ScriptedPRM(), iterations=50).solve([filler(1)], Budget(total_tokens=cap))[0]
        assert result.usage.total_tokens <= cap and result.stop_reason == "budget"


def test_self_consistency_samples_rounds_until_the_budget_says_stop():
    policy = ScriptedPolicy(solutions={"toy": ["The answer is 14"] * 100}, sample_tokens=4)
    config = SelfConsistencyConfig(max_new_tokens=5, samples_per_round=2, max_samples=100)
    result = SelfConsistency(policy, config).solve([TOY], Budget(completion_tokens=25))[0]
    # rounds cost 10 at worst, 8 in fact: 0+10, 8+10 fit; 16+10 > 25, but one sample fits: 16+5, 20+5; 24+5 > 25
    assert len(result.traces) == 6 and result.usage.policy_completion_tokens == 24
    assert result.answer == "14" and result.stop_reason == "budget"


def test_no_affordable_call_means_no_answer():
    policy = ScriptedPolicy(solutions={"toy": ["The answer is 14"]})
    for budget in (Budget(completion_tokens=0), Budget(wall_seconds=0.0)):
        result = ChainOfThought(policy, CoTConfig(max_new_tokens=5)).solve([TOY], budget)[0]
        assert result.answer is None and result.trace == ReasoningState(TOY) and result.traces == []
        assert result.stop_reason == "budget" and result.usage.policy_calls == 0
    assert policy.calls == []


def test_usage_rows_flops_and_budget_fit():
    usage = Usage()
    usage.add_generation(Generation([["x"], ["y"], ["z"]], [10, 20, 30], [1, 2, 3]), rows=[0, 2])
    assert (usage.policy_prompt_tokens, usage.policy_completion_tokens, usage.policy_calls) == (40, 4, 1)
    assert Usage(10, 5, 7).flops(policy_params=100, value_params=10) == 2 * (100 * 15 + 10 * 7)
    assert Budget(completion_tokens=4).fits(usage) and not Budget(total_tokens=43).fits(usage)
    with pytest.raises(ValueError, match="completion_tokens"):
        Budget(completion_tokens=-1)


def test_reused_tokens_are_reported_apart_and_cost_nothing():
    usage = Usage()
    usage.add_generation(Generation([["x"], ["y"]], [10, 20], [1, 2], reused_prompt_tokens=[90, 5]), rows=[0])
    usage.add_scores(Scores([0.5, 0.6], [3, 4], reused_tokens=[30, 40]), rows=[1])
    assert (usage.policy_prompt_tokens, usage.policy_prompt_tokens_reused) == (10, 90)
    assert (usage.prm_tokens, usage.prm_tokens_reused) == (4, 40)
    assert usage.total_tokens == 10 + 1 + 4  # computed tokens only
    assert usage.flops(policy_params=100, value_params=10) == 2 * (100 * 11 + 10 * 4)


# --- lockstep batching -------------------------------------------------------------------


def test_problems_advance_in_lockstep_and_pay_their_own_rows():
    problems = [filler(i) for i in range(3)]
    policy, prm = ScriptedPolicy(), ScriptedPRM()
    results = mcts(policy, prm, iterations=2).solve(problems, Budget())
    assert [len(call.states) for call in policy.calls] == [3, 3]  # one policy call per round for all problems
    assert [len(call.states) for call in prm.calls] == [9, 9]  # one PRM call per round, 3 children each
    for result in results:
        tree, usage = result.tree, result.usage
        expanded = [n for n in range(len(tree)) if tree.expanded[n]]
        assert usage.policy_prompt_tokens == sum(3 * len(tree.state[n].text) for n in expanded)
        assert usage.prm_tokens == sum(len(tree.state[n].text) for n in range(1, len(tree)))
        assert (usage.policy_calls, usage.prm_calls) == (2, 2)
    assert sum(r.usage.policy_completion_tokens for r in results) == sum(c.tokens for c in policy.calls)
    assert sum(r.usage.prm_tokens for r in results) == sum(c.tokens for c in prm.calls)


# --- voting and Best-of-N -----------------------------------------------------------------


def test_answer_keys_and_selection_rules():
    assert answer_key("12.0") == answer_key("12") == "12" and answer_key("1,000") == "1000"
    assert majority(["7", None, "12", "12.0", "7"]) == "7"  # a tie goes to the answer seen first
    states = [ReasoningState(TOY, (f"The answer is {a}",)) for a in ("5", "14", "20", "20")] + [ReasoningState(TOY, ("x",))]
    scores = [0.3, 0.95, 0.7, 0.6, 0.99]
    assert select(states, scores, "best") == 1  # the unanswered 0.99 is not an answer
    assert select(states, scores, "vote") == 2  # 20: 1.3 beats 14: 0.95
    assert select(states[4:], scores[4:], "best") == 0  # nothing answered: highest score


SOLUTIONS = {
    "toy": [
        "2 + 3 = 5\nThe answer is 5",
        "3 * 4 = 12\n2 + 12 = 14\nThe answer is 14",
        "4 * 5 = 20\nThe answer is 20",
        "The answer is 7",
        "5 * 4 = 20\nThe answer is 20",
    ]
}
PREFIX_VALUES = {
    ("2 + 3 = 5",): 0.9, ("2 + 3 = 5", "The answer is 5"): 0.3,
    ("3 * 4 = 12",): 0.4, ("3 * 4 = 12", "2 + 12 = 14"): 0.4, ("3 * 4 = 12", "2 + 12 = 14", "The answer is 14"): 0.95,
    ("4 * 5 = 20",): 0.6, ("4 * 5 = 20", "The answer is 20"): 0.7,
    ("The answer is 7",): 0.5,
    ("5 * 4 = 20",): 0.5, ("5 * 4 = 20", "The answer is 20"): 0.6,
}  # fmt: skip


@pytest.mark.parametrize(
    ("aggregation", "mode", "scores", "answer"),
    [
        ("min", "best", [0.3, 0.4, 0.6, 0.5, 0.5], "20"),
        ("last", "best", [0.3, 0.95, 0.7, 0.5, 0.6], "14"),
        ("product", "best", [0.27, 0.4 * 0.4 * 0.95, 0.42, 0.5, 0.3], "7"),
        ("last", "vote", [0.3, 0.95, 0.7, 0.5, 0.6], "20"),  # 20: 0.7 + 0.6 = 1.3 > 14: 0.95
    ],
)
def test_best_of_n_aggregates_prefix_values(aggregation, mode, scores, answer):
    policy, prm = ScriptedPolicy(solutions=SOLUTIONS), ScriptedPRM(PREFIX_VALUES)
    config = BestOfNConfig(max_samples=5, samples_per_round=5, aggregation=aggregation, answer_mode=mode)
    result = BestOfN(policy, prm, config).solve([TOY], Budget())[0]
    assert result.scores == pytest.approx(scores)
    assert result.answer == answer
    assert len(prm.calls) == 1 and len(prm.calls[0].states) == 10  # every prefix, one batched call


def test_self_consistency_majority():
    result = SelfConsistency(ScriptedPolicy(solutions=SOLUTIONS), SelfConsistencyConfig(max_samples=5)).solve([TOY], Budget())[0]
    assert result.answer == "20" and result.trace.steps == ("4 * 5 = 20", "The answer is 20")
    assert result.stop_reason == "done" and len(result.traces) == 5


# --- beam search ---------------------------------------------------------------------------


def test_beam_search_keeps_the_best_states():
    steps = {
        (): ["a = 1", "b = 2", "c = 3"],
        ("b = 2",): ["b1 = 1", "b2 = 2", "The answer is 2"],
        ("c = 3",): ["c1 = 1", "c2 = 2", "c3 = 3"],
    }
    values = {
        ("a = 1",): 0.5, ("b = 2",): 0.9, ("c = 3",): 0.7,
        ("b = 2", "b1 = 1"): 0.3, ("b = 2", "b2 = 2"): 0.8, ("b = 2", "The answer is 2"): 0.9,
        ("c = 3", "c1 = 1"): 0.85, ("c = 3", "c2 = 2"): 0.1, ("c = 3", "c3 = 3"): 0.2,
    }  # fmt: skip
    policy = ScriptedPolicy(steps)
    config = BeamSearchConfig(beam_width=2, expansions=3, max_new_tokens=5)
    result = BeamSearch(policy, ScriptedPRM(values), config).solve([TOY], Budget(), EpisodeLimits(max_steps=2))[0]
    # round 1 keeps b (.9), c (.7); round 2 keeps the answer (.9) and c1 (.85); then both are finished
    assert [t.steps for t in result.traces] == [("b = 2", "The answer is 2"), ("c = 3", "c1 = 1")]
    assert result.scores == [0.9, 0.85] and result.answer == "2"
    assert [len(call.states) for call in policy.calls] == [1, 2]


# --- tree export, episodes, registry --------------------------------------------------------


def test_tree_json_export():
    result = mcts(ScriptedPolicy(TOY_STEPS), ScriptedPRM(TOY_VALUES), iterations=10).solve([TOY], Budget())[0]
    data = json.loads(result.tree.to_json())
    assert data["problem_id"] == "toy" and len(data["nodes"]) == 10
    root, node_b = data["nodes"][0], data["nodes"][2]
    assert root == {
        "id": 0, "parent": -1, "children": [1, 2, 3], "depth": 0, "step": None, "prm": None,
        "value": pytest.approx(0.95), "visits": 3, "terminal": False, "answer": None, "correct": None,
    }  # fmt: skip
    assert (node_b["step"], node_b["prm"], node_b["visits"], node_b["depth"]) == (B, 0.7, 3, 1)
    answer = next(node for node in data["nodes"] if node["answer"] == "14")
    assert answer["terminal"] and answer["depth"] == 3 and answer["correct"] is None
    assert result.tree.path(answer["id"]) == [0, 2, 4, answer["id"]]


def test_play_episode_replays_the_chosen_trace_in_the_env():
    env = gym.make("ReasoningMath-v0", source=[TOY])
    env.reset(options={"index": 0})
    agent = mcts(ScriptedPolicy(TOY_STEPS), ScriptedPRM(TOY_VALUES), iterations=10)
    reward, info = play_episode(agent, env, Budget())
    assert reward == 1.0 and info["correct"] and info["steps"] == (B, B1, ANSWER_14)
    assert info["search_result"].answer == "14"


def test_make_agent_builds_configs_and_names_bad_keys():
    policy, prm = ScriptedPolicy(), ScriptedPRM()
    agent = make_agent("mcts_star", policy, prm, yaml.safe_load("branch: 2\nend_gate: 0.8\n"))
    assert isinstance(agent, MCTSStar) and (agent.config.branch, agent.config.end_gate) == (2, 0.8)
    kinds = {name: type(make_agent(name, policy, prm)).__name__ for name in ("cot", "self_consistency", "best_of_n", "beam")}
    assert kinds == {"cot": "ChainOfThought", "self_consistency": "SelfConsistency", "best_of_n": "BestOfN", "beam": "BeamSearch"}
    with pytest.raises(ConfigError, match="branchh"):
        make_agent("mcts_star", policy, prm, {"branchh": 2})
    with pytest.raises(ConfigError, match="aggregation"):
        make_agent("best_of_n", policy, prm, {"aggregation": "mean"})
    with pytest.raises(ConfigError, match="unknown search agent"):
        make_agent("dfs", policy, prm)
    with pytest.raises(ConfigError, match="needs a value model"):
        make_agent("beam", policy)
