"""Agents on the planning task: oracle value models, the planning bootstrap data, and a
reduced end-to-end run (bootstrap, search comparison with oracle references, one
ReST-MCTS* self-training iteration) on Countdown."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from agents.compare import CompareConfig, ProblemsConfig, load_models, run_comparison
from agents.config import ConfigError, from_dict
from agents.evaluation import evaluate_value_against_oracle
from agents.models.oracle import NoisyOracleValue, OracleValue, oracle_from_spec, oracle_value
from agents.models.tiny import TinyModelConfig
from agents.search.traces import solution_state
from agents.search.voting import select
from agents.training import planning_data
from agents.training.bootstrap import BootstrapConfig, PlanningDataSettings, bootstrap
from agents.training.policy_sft import SFTSettings
from agents.training.self_train import SelfTrainConfig, SelfTrainer
from agents.training.value_targets import correct_path_values, trace_quality_values, wrong_step_value
from agents.training.value_training import ValueSettings
from reasoning_gym import EpisodeLimits, ReasoningState, apply_step, grade, make_source, solvable
from reasoning_gym.sources.puzzles import puzzle_problem
from reasoning_gym.tasks.countdown import Puzzle, puzzle_of
from reasoning_gym.tasks.expression import ArithmeticRules
from tests.scripted import ScriptedPolicy

LIMITS = EpisodeLimits(max_steps=6)


def walk(problem, steps):
    state = ReasoningState(problem)
    for step in steps:
        state = apply_step(state, step, LIMITS)
    return state


@pytest.fixture(scope="module")
def puzzles():
    return make_source("countdown", split="test", size=12, seed=3)


def test_trace_quality_values_follow_the_paper_on_and_off_the_path():
    assert trace_quality_values(3, [2, 1, 0]) == pytest.approx(correct_path_values(3))
    # the first unreachable step is a wrong sibling of the correct continuation
    assert trace_quality_values(3, [2, 1, None]) == pytest.approx([1 / 3, 2 / 3, wrong_step_value(2 / 3, 1)])
    assert trace_quality_values(3, [None, None]) == pytest.approx([0.0, 0.0])
    values = trace_quality_values(4, [3, None, None, None])
    assert values[0] == pytest.approx(0.25) and values[1] < values[0] and values[2] <= values[1]


def test_oracle_value_is_the_exact_quality_value(puzzles):
    oracle = OracleValue()
    for problem in puzzles:
        states = [walk(problem, problem.steps[:k]) for k in range(1, len(problem.steps) + 1)]
        assert oracle.score(states).values == pytest.approx(correct_path_values(len(problem.steps)))
        assert oracle.score(states).tokens == [0] * len(states)
        illegal = walk(problem, ["1 + 1 = 3"])
        assert not solvable(illegal) and oracle_value(illegal) == 0.0
    with pytest.raises(NotImplementedError):
        oracle_value(ReasoningState(make_source("synthetic", size=1)[0], ("1 + 1 = 2",)))


def test_noisy_oracle_is_seeded_clipped_and_exact_without_noise(puzzles):
    rng = random.Random(0)
    moves = [f"{a} + {b} = {a + b}" for a in range(1, 10) for b in range(1, 10)]
    states = []
    for problem in puzzles:  # states on and off the path, illegal moves included
        states += [walk(problem, problem.steps[:1]), walk(problem, problem.steps[:2])]
        states += [walk(problem, [move]) for move in rng.sample(moves, 8)]
    exact = OracleValue().score(states).values
    assert NoisyOracleValue(0.0).score(states).values == exact
    noisy = NoisyOracleValue(0.3, seed=1)
    first = noisy.score(states).values
    assert first == noisy.score(states).values  # the same noise for the same state
    assert first != NoisyOracleValue(0.3, seed=2).score(states).values
    assert first != exact and all(0.0 <= v <= 1.0 for v in first)
    assert isinstance(oracle_from_spec("oracle"), OracleValue)
    assert oracle_from_spec("noisy-oracle:0.2:5").noise == 0.2 and oracle_from_spec("V0-folder") is None
    with pytest.raises(ValueError, match="noisy-oracle:SIGMA"):
        oracle_from_spec("noisy-oracle:loud")


class MirroredOracle(OracleValue):
    """The exact value turned upside down: the worst ranking there is."""

    def value(self, state):
        return 1.0 - oracle_value(state)


def test_value_against_oracle_ranks_the_oracle_perfectly_and_its_mirror_last(puzzles):
    """Per puzzle, the policy writes the reference and a trace whose first move is the sum of
    the two largest numbers (live or dead) followed by the reference's last step (mostly illegal there)."""
    solutions = {}
    for problem in puzzles:
        a, b = sorted(puzzle_of(problem).numbers)[-2:]
        solutions[problem.id] = ["\n".join(problem.steps), f"{a} + {b} = {a + b}\n{problem.steps[-1]}"]
    results = [
        evaluate_value_against_oracle(model, ScriptedPolicy(solutions=solutions), list(puzzles), samples=2,
                                      show_progress=False)  # fmt: skip
        for model in (OracleValue(), MirroredOracle())
    ]
    exact, mirrored = results
    assert exact.states == mirrored.states == 4 * len(puzzles)  # two reference prefixes, two of the other trace
    assert 0.0 < exact.solvable_share < 1.0 and exact.solvable_share == mirrored.solvable_share
    assert (exact.auroc, exact.sibling_auroc, exact.by_depth) == (1.0, 1.0, {1: 1.0, 2: 1.0})
    assert (mirrored.auroc, mirrored.sibling_auroc, mirrored.by_depth) == (0.0, 0.0, {1: 0.0, 2: 0.0})
    for result in results:
        assert sum(row["count"] for row in result.calibration) == result.states
    # the exact values are 0 exactly on dead states, so the bins say solvable 0 or 1
    assert [(row["mean_value"] > 0, row["solvable"]) for row in exact.calibration] == [(False, 0.0), (True, 1.0), (True, 1.0)]


def test_self_consistency_votes_on_the_canonical_expression():
    """Spacing and redundant parentheses do not split a vote; another order of the operands
    is another answer (every correct answer has the target's value)."""
    problem = puzzle_problem(Puzzle((5, 7, 13), 58, ArithmeticRules()), "vote", random.Random(0))
    written = ["(13*5)-7", "((13 * 5) - 7)", "13 * 5 - 7", "(5 * 13) - 7", "(5 * 13) - 7"]
    states = [walk(problem, [f"The answer is {text}"]) for text in written]
    assert [state.answer for state in states] == ["(13 * 5) - 7"] * 3 + ["(5 * 13) - 7"] * 2
    assert all(grade(state) for state in states)
    assert select(states, [1.0] * 5, "vote") == 0  # 3 votes against 2
    assert select(states[2:], [1.0] * 3, "vote") == 1


def test_planning_policy_data_holds_several_correct_solutions_per_puzzle(puzzles):
    data = planning_data.policy_dataset(puzzles.problems, "</s>", solutions=3, seed=0)
    assert len(data) == 3 * len(puzzles)
    by_question = {}
    for text in data["text"]:
        assert text.endswith("</s>")
        question = text.split("\n", 1)[0].removeprefix("Problem: ")
        by_question.setdefault(question, []).append(text)
    assert len(by_question) == len(puzzles)
    for problem in puzzles:
        for text in by_question[problem.question]:
            body = text.removesuffix("</s>").split("Solution:\n", 1)[1]
            assert grade(solution_state(problem, body))


def test_labelled_states_match_the_oracle(puzzles):
    problem = puzzles[0]
    trace = walk(problem, [problem.steps[0], "1 + 1 = 3"])
    labelled = planning_data.labelled_states(trace)
    assert [len(s.steps) for s, _ in labelled] == [1, 2]
    assert [v for _, v in labelled] == pytest.approx([oracle_value(s) for s, _ in labelled])


def test_value_data_reads_boards_with_one_row_per_state(puzzles):
    """Transpositions share a board but stay two rows: deduplicating by board would leave
    one correct final state per target."""
    problem = puzzles[0]
    reference = walk(problem, problem.steps)
    rows = dict(planning_data.labelled_states(reference))
    for other in planning_data.random_walks(problem, 20, random.Random(0)):
        rows.update(planning_data.labelled_states(other))
    data = planning_data.value_dataset(rows, seed=0)
    assert len(data) == len(rows) and sorted(data["target"]) == sorted(rows.values())
    assert set(data["text"]) == {state.value_text for state in rows} and all(" make " in t for t in data["text"])
    assert len(set(data["text"])) < len(data)  # boards repeat across states; every state keeps its row
    assert list(data["text"]) == list(planning_data.value_dataset(rows, seed=0)["text"])  # deterministic


def test_value_data_per_board_keeps_one_row_per_board_with_the_mean_label(puzzles):
    problem = puzzles[0]
    rows: dict = {}
    for other in planning_data.random_walks(problem, 20, random.Random(0)):
        rows.update(planning_data.labelled_states(other))
    rows.update(planning_data.labelled_states(walk(problem, problem.steps)))
    by_board: dict[str, list[float]] = {}
    for state, value in rows.items():
        by_board.setdefault(state.value_text, []).append(value)
    assert any(len(values) > 1 for values in by_board.values())  # the case that matters: a board of several states
    data = planning_data.value_dataset(rows, seed=0, per_board=True)
    assert sorted(data["text"]) == sorted(by_board)
    for text, target in zip(data["text"], data["target"]):
        assert target == pytest.approx(sum(by_board[text]) / len(by_board[text]))


def test_balanced_value_data_weighs_live_and_dead_rows_alike_at_each_depth(puzzles):
    problem = puzzles[0]
    rows = {state: value for state, value in (planning_data.labelled_states(s)[-1] for s in planning_data.legal_states(problem))}
    rows[ReasoningState(problem)] = 0.0  # the root: no live row at its depth, left as it is
    plain = planning_data.value_dataset(rows, seed=0)
    balanced = planning_data.value_dataset(rows, seed=0, balance=True)
    depth_of = {state.value_text: len(state.steps) for state in rows}  # legal states: one depth per board
    counts: dict[tuple[int, bool], list[int]] = {}
    for name, data in (("plain", plain), ("balanced", balanced)):
        for text, target in zip(data["text"], data["target"]):
            key = (depth_of[text], target > 0)
            counts.setdefault(key, [0, 0])[name == "balanced"] += 1
    assert set(balanced["text"]) == set(plain["text"]) and len(balanced) > len(plain)
    for (depth, live), (before, after) in counts.items():
        if not live:
            assert after == before  # dead rows are never repeated
            continue
        dead = counts.get((depth, False), [0, 0])[0]
        repeats = max(1, round(dead / before))
        assert after == before * repeats
    live_repeated = [d for (d, live), (b, a) in counts.items() if live and a > b]
    assert live_repeated  # the fixture has a depth where few boards can still make the target
    for depth in live_repeated:
        live, dead = counts[(depth, True)][1], counts[(depth, False)][1]
        assert abs(live - dead) <= counts[(depth, True)][0]  # within one live row's repeats of balance
    assert counts[(0, False)] == [1, 1]


def test_legal_states_are_every_state_legal_moves_reach(puzzles):
    from reasoning_gym.tasks.countdown import CountdownTask, puzzle_of
    from reasoning_gym.tasks import solver

    problem = puzzles[0]
    states = planning_data.legal_states(problem)
    task, puzzle = CountdownTask(), puzzle_of(problem)
    assert len({s.steps for s in states}) == len(states)
    assert all(task.illegal(problem, s.steps) is None for s in states)
    first = solver.legal_moves(solver.normalize(puzzle.numbers), puzzle.rules)
    assert sum(len(s.steps) == 1 for s in states) == len(first)
    finals = [s for s in states if len(s.steps) == len(puzzle.numbers) - 1]
    assert all(s.answer is not None for s in finals) and any(grade(s) for s in finals)
    assert set(problem.steps[:1]) <= {s.steps[0] for s in states}


def test_target_variants_label_open_states_exactly_and_keep_only_what_keep_accepts(puzzles):
    from reasoning_gym.sources.puzzles import in_split
    from reasoning_gym.tasks.countdown import puzzle_of

    problem = puzzles[0]
    puzzle = puzzle_of(problem)
    everything = planning_data.target_variants(problem, 60, range(10, 61), lambda _: True, random.Random(0))
    targets = [puzzle_of(v).target for v in everything]
    assert len(targets) == len(set(targets)) == 50 and puzzle.target not in targets  # every other target, once
    assert {puzzle_of(v).numbers for v in everything} == {puzzle.numbers}
    assert any(not solvable(ReasoningState(v)) for v in everything) and any(solvable(ReasoningState(v)) for v in everything)

    train_only = planning_data.target_variants(problem, 60, range(10, 61), lambda v: in_split(v, "train"), random.Random(0))
    assert 0 < len(train_only) < len(everything) and all(in_split(puzzle_of(v), "train") for v in train_only)
    banned = {puzzle_of(v).key for v in train_only[:3]}
    kept = planning_data.target_variants(problem, 60, range(10, 61), lambda v: in_split(v, "train", frozenset(banned)),
                                         random.Random(0))  # fmt: skip
    assert len(kept) == len(train_only) - 3 and not banned & {puzzle_of(v).key for v in kept}

    rows = planning_data.target_variant_rows([problem], 8, range(10, 61), lambda _: True, seed=1, show_progress=False)
    moves = len(puzzle.numbers) - 1
    assert rows and all(len(state.steps) < moves for state in rows)  # open states only
    assert {state.problem.id for state in rows} <= {f"{problem.id}/target-{t}" for t in range(10, 61)}
    assert len({state.problem.id for state in rows}) == 8
    # the labels are the oracle's quality values: 0 wherever the variant's target cannot be made
    assert list(rows.values()) == pytest.approx([oracle_value(state) for state in rows])
    assert any(v == 0 for v in rows.values()) and any(v > 0 for v in rows.values())


def test_finished_fraction_thins_finished_rows_alone_and_keeps_their_live_share(puzzles):
    rows: dict = {}
    for problem in puzzles[:6]:
        rows.update(planning_data.labelled_states(s)[-1] for s in planning_data.legal_states(problem))
    finished_of = {state.value_text: state.answer is not None for state in rows}
    full = planning_data.value_dataset(rows, seed=0, per_board=True, balance=True)
    thin = planning_data.value_dataset(rows, seed=0, per_board=True, balance=True, finished_fraction=0.25)

    def split(data):
        finished = [target for text, target in zip(data["text"], data["target"]) if finished_of[text]]
        return sorted(t for text, t in zip(data["text"], data["target"]) if not finished_of[text]), finished

    (open_full, finished_full), (open_thin, finished_thin) = split(full), split(thin)
    assert open_thin == open_full  # open boards untouched
    assert 0.15 * len(finished_full) < len(finished_thin) < 0.35 * len(finished_full)
    live_share = lambda targets: sum(t > 0 for t in targets) / len(targets)  # noqa: E731
    assert live_share(finished_thin) == pytest.approx(live_share(finished_full), abs=0.1)
    again = planning_data.value_dataset(rows, seed=0, per_board=True, balance=True, finished_fraction=0.25)
    assert list(again["text"]) == list(thin["text"])  # seeded
    with pytest.raises(ValueError, match="finished_fraction"):
        planning_data.value_dataset(rows, seed=0, finished_fraction=0.0)
    with pytest.raises(ValueError, match="value_finished_fraction"):
        PlanningDataSettings(value_finished_fraction=1.5)


@pytest.mark.parametrize(
    "option",
    [{"value_target_variants": 2}, {"value_one_row_per_board": True}, {"value_balance": True}, {"value_finished_fraction": 0.2}],
)
def test_bootstrap_value_data_options_join_the_cache_key_only_when_on(option):
    config = BootstrapConfig(source="countdown", difficulty="easy", train_problems=10)
    on = replace(config, planning=replace(config.planning, **option))
    assert not set(option) & set(config.value_key()["planning"])  # models built before the option keep their key
    assert on.value_key() != config.value_key() and on.policy_key() == config.policy_key()


def test_planning_data_settings_reject_a_negative_variant_count():
    with pytest.raises(ValueError, match="value_target_variants"):
        PlanningDataSettings(value_target_variants=-1)


def test_proposals_reaching_a_siblings_position_are_duplicates(puzzles):
    from scripted import ScriptedPolicy

    from agents.models.base import SamplingConfig
    from agents.search import Budget
    from agents.search.ledger import Ledger
    from agents.search.proposals import propose_children
    from reasoning_gym.tasks.countdown import puzzle_of

    problem = puzzles[0]
    a, b = sorted(puzzle_of(problem).numbers)[:2]
    root = ReasoningState(problem)
    policy = ScriptedPolicy({(): [f"{a} + {b}", f"{b} + {a}", f"{a} * {b}", f"{b} * {a} = {a * b}"]})
    children = propose_children(Ledger(Budget(), 1), policy, [(0, root, ())], 4, SamplingConfig(), LIMITS, 0)[0]
    assert [c.steps[0].split(" =")[0] for c in children] == [f"{a} + {b}", f"{a} * {b}"]
    # an existing child's position counts too
    again = ScriptedPolicy({(): [f"{b} + {a}", f"{a} - {b}" if a >= b else f"{b} - {a}"]})
    more = propose_children(Ledger(Budget(), 1), again, [(0, root, (children[0].steps[0],))], 2, SamplingConfig(), LIMITS, 0)[0]
    assert len(more) == 1 and "-" in more[0].steps[0]


def test_a_proposal_rejected_at_a_node_is_named_in_its_later_asks(puzzles):
    from scripted import ScriptedPolicy

    from agents.models.base import SamplingConfig
    from agents.search import Budget
    from agents.search.ledger import Ledger
    from agents.search.proposals import propose_children
    from reasoning_gym.tasks.countdown import puzzle_of

    problem = puzzles[0]
    a, b = sorted(puzzle_of(problem).numbers)[:2]
    root = ReasoningState(problem)
    # the transposition reaches the first child's position: rejected, then remembered
    policy = ScriptedPolicy({(): [f"{a} + {b}", f"{b} + {a}", f"{a} * {b}"]})
    rejected: set[str] = set()
    first = propose_children(Ledger(Budget(), 1), policy, [(0, root, ())], 2, SamplingConfig(), LIMITS, 0,
                             without_replacement=True, rejected=[rejected])[0]  # fmt: skip
    assert len(first) == 1 and rejected == {f"{b} + {a}"}
    siblings = (first[0].steps[0],)
    later = propose_children(Ledger(Budget(), 1), policy, [(0, root, siblings)], 1, SamplingConfig(), LIMITS, 0,
                             without_replacement=True, rejected=[rejected])[0]  # fmt: skip
    assert policy.calls[-1].exclude == [(*siblings, f"{b} + {a}")]
    assert [c.steps[0].split(" =")[0] for c in later] == [f"{a} * {b}"]


def test_bootstrap_training_sets_leave_out_an_excluded_test_set(tmp_path):
    from agents.training.bootstrap import training_problems
    from reasoning_gym.tasks.countdown import puzzle_of

    config = BootstrapConfig(source="countdown", difficulty="easy", train_problems=200)
    kept = training_problems(config)
    held_out = [puzzle_of(p) for p in kept.problems[::10]]
    listing = tmp_path / "held_out.txt"
    listing.write_text("".join(f"{' '.join(map(str, p.numbers))} -> {p.target}\n" for p in held_out))
    excluded = training_problems(replace(config, exclude=str(listing)))
    keys = {puzzle_of(p).key for p in excluded}
    assert len(excluded) == 200 and not keys & {p.key for p in held_out}
    assert replace(config, exclude=str(listing)).policy_key() != config.policy_key()


def test_self_training_leaves_out_its_own_exclusions_and_may_train_on_what_the_bootstrap_held_out(tmp_path):
    problems = {"source": "countdown", "split": "train", "size": 60, "seed": 1, "difficulty": "easy"}

    def trainer_puzzles(bootstrap: dict, options: dict) -> list:
        config = from_dict(SelfTrainConfig, {"run_dir": str(tmp_path / "run"), "models": {"bootstrap": bootstrap},
                                             "train_problems": {**problems, "options": options}})  # fmt: skip
        return [puzzle_of(p) for p in SelfTrainer(config).train_problems()]

    bootstrap = {"source": "countdown", "difficulty": "easy"}
    plain = trainer_puzzles(bootstrap, {})
    held_out = plain[::4]
    listing = tmp_path / "held_out.txt"
    listing.write_text("".join(f"{' '.join(map(str, p.numbers))} -> {p.target}\n" for p in held_out))
    kept = trainer_puzzles(bootstrap, {"exclude": str(listing)})
    assert len(kept) == 60 and not {p.key for p in kept} & {p.key for p in held_out}
    assert {p.key for p in plain} - {p.key for p in held_out} <= {p.key for p in kept}
    # pi_0 kept from the self-training puzzles (bootstrap_300_solved.yaml): self-training still gets them
    assert trainer_puzzles({**bootstrap, "exclude": str(listing)}, {}) == plain


# --- reduced end to end ------------------------------------------------------------------------

TINY = BootstrapConfig(
    source="countdown",
    difficulty="easy",
    train_problems=48,
    planning=PlanningDataSettings(solutions=2, value_problems=6, value_samples=2, value_target_variants=1, max_new_tokens=40),
    model=TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=256),
    policy=SFTSettings(max_steps=6, batch_size=8, logging_steps=100, max_length=128),
    value=ValueSettings(max_steps=4, batch_size=8, logging_steps=100, max_length=128),
)
TINY_AGENTS = {
    "cot": {"max_new_tokens": 40},
    "self_consistency": {"max_new_tokens": 40, "temperature": 1.0},
    "best_of_n": {"max_new_tokens": 40, "temperature": 1.0, "aggregation": "last"},
    "mcts_star": {"max_new_tokens": 16, "branch": 2, "roll_forward_steps": 0, "max_retries": 0, "temperature": 1.0},
}


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    result = bootstrap(TINY, home=home, show_progress=False)
    return result, home


def test_planning_bootstrap_builds_from_its_own_samples(tiny_models):
    result, _ = tiny_models
    assert result.policy_manifest["examples"] == 2 * 48  # two solver solutions per puzzle
    # states of pi_0's samples, reference prefixes and the open states of 48 target variants (some held out)
    assert result.value_manifest["examples"] > 6 + 48
    assert TINY.task == "countdown" and BootstrapConfig().task == "answer"
    assert TINY.policy_key() != replace(TINY, planning=replace(TINY.planning, solutions=3)).policy_key()


def test_comparison_runs_the_oracle_references_on_the_planning_task(tiny_models, tmp_path):
    result, _ = tiny_models
    policy, value = result.load(device="cpu")
    config = CompareConfig(
        problems=ProblemsConfig(source="countdown", size=3, difficulty="easy"),
        seeds=(0,), budget_multipliers=(2,), agents=TINY_AGENTS, batch_size=3, limits=LIMITS, ci_resamples=50,
        references=("oracle_pick", "mcts_star_oracle"),
    )  # fmt: skip
    out = run_comparison(config, policy, value, progress=False)
    agents = {row["agent"] for row in out["aggregates"]}
    assert agents == {"cot", "self_consistency", "best_of_n", "mcts_star", "oracle_pick", "mcts_star_oracle"}
    by_agent = {row["agent"]: row for row in out["runs"]}
    # The oracle pick is right whenever any sample is: never below the learned pick on the same samples.
    assert by_agent["oracle_pick"]["accuracy"] >= by_agent["best_of_n"]["accuracy"]
    assert by_agent["oracle_pick"]["prm_tokens"] == 0 and by_agent["mcts_star_oracle"]["prm_tokens"] == 0
    with pytest.raises(ValueError, match="references"):
        CompareConfig(references=("psychic",))
    word = replace(config, problems=ProblemsConfig(source="synthetic", size=2, difficulty="basic"), agents={"cot": {}})
    with pytest.raises(ConfigError, match="oracle"):
        run_comparison(word, policy, value, progress=False)


def test_load_models_accepts_oracle_values(tiny_models):
    result, _ = tiny_models
    from agents.compare import ModelsConfig

    models = load_models(ModelsConfig(policy=str(result.policy_dir), value="noisy-oracle:0.1"), progress=False)
    assert isinstance(models.value, NoisyOracleValue) and models.value.noise == 0.1


def tiny_self_training(result) -> dict:
    """SelfTrainConfig fields for one tiny Countdown iteration on the tiny pi_0 and V_0."""
    mcts = {"iterations": 4, "branch": 2, "temperature": 1.0, "max_new_tokens": 16, "roll_forward_steps": 0, "max_retries": 0}
    return {
        "iterations": 1, "show_progress": False,
        "models": {"policy": str(result.policy_dir), "value": str(result.value_dir), "device": "cpu"},
        "train_problems": {"source": "countdown", "split": "train", "size": 3, "seed": 1, "difficulty": "easy"},
        "search": {"mcts": mcts, "budget": {"completion_tokens": 200}, "limits": {"max_steps": 4}, "batch_size": 3},
        "policy": {"sft": {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-4, "logging_steps": 100}},
        "value": {"settings": {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-4, "logging_steps": 100}},
        "eval": {"problems": {"source": "countdown", "split": "test", "size": 2, "seed": 0, "difficulty": "easy"},
                 "greedy_max_new_tokens": 40, "mcts": {**mcts, "iterations": 2},
                 "budget": {"completion_tokens": 100}, "limits": {"max_steps": 4}},
    }  # fmt: skip


def test_one_self_training_iteration_on_countdown(tiny_models, tmp_path):
    result, _ = tiny_models
    fields = {**tiny_self_training(result), "run_dir": str(tmp_path / "run"), "method": "rest_mcts", "seed": 0}
    records = SelfTrainer(from_dict(SelfTrainConfig, fields)).run()
    assert [r["iteration"] for r in records] == [0, 1]
    for record in records:
        assert 0.0 <= record["eval"]["greedy_accuracy"] <= 1.0
        outcomes = record["eval"]["greedy_outcomes"]  # what became of each greedy solution
        assert sum(outcomes.values()) == 2 and outcomes.get("right", 0) / 2 == record["eval"]["greedy_accuracy"]
        assert all(o == "right" or o.startswith(("illegal move at step", "dead end at step", "no answer")) for o in outcomes)
        assert "prm_sibling_auroc" in record["eval"]  # planning tasks: AUROC against exact solvability


def test_value_replay_trains_v1_on_tree_rows_plus_the_bootstraps_d_v0(tiny_models, tmp_path, monkeypatch):
    from agents.config import to_dict
    from agents.training.bootstrap import value_training_data
    from agents.training.buffers import EpisodeBuffer

    result, home = tiny_models
    monkeypatch.setenv("REST_MCTS_HOME", str(home))  # the trainer finds the tiny bootstrap's models there
    d_v0 = value_training_data(TINY, home=home, show_progress=False)
    assert len(d_v0) == result.value_manifest["examples"]  # the rows V_0 was trained on, rebuilt
    assert d_v0["text"] == value_training_data(TINY, home=home, show_progress=False)["text"]
    fields = {**tiny_self_training(result), "run_dir": str(tmp_path / "run"), "method": "rest_mcts", "seed": 0}
    fields["models"] = {"bootstrap": to_dict(TINY), "device": "cpu"}
    replay = len(d_v0) / 10 + 1  # more rows than D_V0 holds: it is repeated (`rehearsal_rows`)
    fields["value"] = {**fields["value"], "replay": replay}
    trainer = SelfTrainer(from_dict(SelfTrainConfig, fields))
    tree = [{"text": f"tree row {k}", "target": 0.0, "depth": 1, "problem_id": "p"} for k in range(10)]
    EpisodeBuffer(tmp_path / "run" / "buffer").append("value", tree, 1)  # what iteration 1's search would leave
    record = trainer.stage_value(1)
    assert record["trained"] and record["replayed_rows"] == len(d_v0) + 10 and record["rows"] == len(d_v0) + 20
    with pytest.raises(ValueError, match="replay"):
        from_dict(SelfTrainConfig, {**fields, "models": tiny_self_training(result)["models"]})
    with pytest.raises(ValueError, match="replay"):
        from_dict(SelfTrainConfig, {**fields, "value": {"replay": -1}})


def test_self_training_benchmark_reports_greedy_outcomes(tiny_models, tmp_path, monkeypatch):
    """benchmarks/self_training.py on the tiny models: the outcome table sums to 1 per row with
    "right" equal to greedy accuracy, and runs recorded before outcomes were kept get them measured."""
    import json

    import yaml

    from tests.conftest import load_benchmark

    result, _ = tiny_models
    module = load_benchmark("self_training", monkeypatch)
    config = tmp_path / "self_train.yaml"
    config.write_text(yaml.safe_dump(tiny_self_training(result)), encoding="utf-8")
    runs, out = tmp_path / "runs", tmp_path / "self_training.json"
    argv = ["--config", str(config), "--seeds", "0", "--methods", "rest_mcts", "rest_em", "--iterations", "1",
            "--runs", str(runs), "--out", str(out), "--no-progress"]  # fmt: skip
    assert module.main(argv) == 0
    summary = json.loads(out.read_text())["summary"]
    assert [(row["method"], row["iteration"]) for row in summary] == [("rest_mcts", 0), ("rest_mcts", 1), ("rest_em", 0), ("rest_em", 1)]
    for row in summary:
        assert sum(row[column] for column in module.OUTCOME_COLUMNS) == pytest.approx(1.0)
        assert row["right"] == pytest.approx(row["greedy_accuracy"])
    record_file = runs / "rest_mcts_seed0" / "iteration_1" / "record.json"
    record = json.loads(record_file.read_text())
    del record["eval"]["greedy_outcomes"]  # as an older run recorded it
    record_file.write_text(json.dumps(record))
    assert module.main(argv) == 0
    again = json.loads(out.read_text())["summary"]
    assert [{c: row[c] for c in module.OUTCOME_COLUMNS} for row in again] == [
        {c: row[c] for c in module.OUTCOME_COLUMNS} for row in summary
    ]
