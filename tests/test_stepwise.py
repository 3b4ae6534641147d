"""Task step stops: Countdown policies write the move, the engine writes the result;
whole solutions of such a task are sampled one step at a time."""

from __future__ import annotations

import random

import pytest
import torch
from scripted import ScriptedPolicy

from agents.models.base import GREEDY, SamplingConfig
from agents.models.hf_policy import HFPolicy, HFPolicyConfig
from agents.models.stepwise import cut_step, sample_stepwise
from agents.models.tiny import TinyModelConfig, build_char_tokenizer, build_policy_model
from agents.search.traces import solution_state
from reasoning_gym import UNLIMITED, Problem, ReasoningState, apply_step, get_task, grade, is_terminal, make_source
from reasoning_gym.sources.puzzles import puzzle_problem
from reasoning_gym.tasks.countdown import Puzzle, puzzle_of

SMALL = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=512)


@pytest.fixture(scope="module")
def problem() -> Problem:
    puzzle = Puzzle(numbers=(3, 6, 7, 8), target=28, rules=puzzle_of(make_source("countdown", size=1)[0]).rules)
    return puzzle_problem(puzzle, "p", random.Random(0))


def test_task_step_stops():
    assert get_task("answer").step_stops == ("\n",)
    assert get_task("countdown").step_stops == ("=", "\n")
    assert cut_step("8 * 7 = 56 (left: 3 6 56)", ("=", "\n")) == "8 * 7 "
    assert cut_step("no stop here", ("=", "\n")) == "no stop here"


def test_the_engine_completes_a_bare_move(problem):
    state = apply_step(ReasoningState(problem), "8 * 7", UNLIMITED)
    assert state.steps == ("8 * 7 = 56 (left: 3 6 56)",)
    state = apply_step(apply_step(state, "6 / 3", UNLIMITED), "56 / 2", UNLIMITED)
    assert state.steps[-1] == "56 / 2 = 28 (left: 28) The answer is (8 * 7) / (6 / 3)"
    assert is_terminal(state) and grade(state)
    # a result the policy does write must be right; an impossible bare move is illegal
    assert "(illegal: 8 * 7 is not 54)" in apply_step(ReasoningState(problem), "8 * 7 = 54", UNLIMITED).steps[0]
    assert "(illegal" in apply_step(ReasoningState(problem), "7 / 2", UNLIMITED).steps[0]
    assert "(illegal" in apply_step(ReasoningState(problem), "9 + 1", UNLIMITED).steps[0]


def after(problem: Problem, *moves: str) -> tuple[str, ...]:
    state = ReasoningState(problem)
    for move in moves:
        state = apply_step(state, move, UNLIMITED)
    return state.steps


def test_sample_stepwise_writes_the_moves_and_replays_into_the_same_state(problem):
    script = {
        (): ["8 * 7", "9 + 9"],  # sample 0 plays on; sample 1 is illegal at once
        after(problem, "8 * 7"): ["6 / 3"],
        after(problem, "8 * 7", "6 / 3"): ["56 / 2"],
    }
    policy = ScriptedPolicy(steps=script, sample_tokens=4)
    generation = sample_stepwise(policy, [ReasoningState(problem)], 2, SamplingConfig(temperature=1.0, seed=5))
    first, second = generation.texts[0]
    assert first == "Step 1: 8 * 7\nStep 2: 6 / 3\nStep 3: 56 / 2\n"
    assert second == "Step 1: 9 + 9\n"
    assert grade(solution_state(problem, first)) and not grade(solution_state(problem, second))
    assert solution_state(problem, first).steps == after(problem, "8 * 7", "6 / 3", "56 / 2")
    assert generation.completion_tokens == [4 * 4] and generation.calls == 3
    assert [call.states for call in policy.calls] == [[(), ()], [after(problem, "8 * 7")], [after(problem, "8 * 7", "6 / 3")]]


def test_sample_stepwise_never_overruns_the_token_cap(problem):
    script = {(): ["8 * 7"], after(problem, "8 * 7"): ["6 / 3"]}
    policy = ScriptedPolicy(steps=script, sample_tokens=4)
    generation = sample_stepwise(policy, [ReasoningState(problem)], 1, SamplingConfig(max_new_tokens=8, seed=0))
    assert generation.texts == [["Step 1: 8 * 7\nStep 2: 6 / 3\n"]] and generation.completion_tokens == [8]
    assert len(policy.calls) == 2


def test_greedy_stepwise_samples_once_and_repeats_the_text(problem):
    policy = ScriptedPolicy(steps={(): ["9 + 9"]}, sample_tokens=3)
    generation = sample_stepwise(policy, [ReasoningState(problem)], 3, GREEDY)
    assert generation.texts == [["Step 1: 9 + 9\n"] * 3] and generation.completion_tokens == [3]


def biased_policy(token: str) -> HFPolicy:
    """A real tiny Llama that always writes `token` (its head is a bias towards it)."""
    tokenizer = build_char_tokenizer()
    torch.manual_seed(0)
    model = build_policy_model(SMALL, tokenizer)
    model.config.tie_word_embeddings = False
    model.lm_head = torch.nn.Linear(SMALL.hidden_size, len(tokenizer), bias=True)
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.lm_head.bias.fill_(-10.0)
        model.lm_head.bias[tokenizer.convert_tokens_to_ids(token)] = 10.0
    return HFPolicy(model, tokenizer, HFPolicyConfig(prompt_format="plain"))


def test_hf_policy_stops_each_state_at_its_own_task_stops(problem):
    policy = biased_policy("=")
    word = ReasoningState(Problem("w", "What is 6 * 7?", "42"))
    sampling = SamplingConfig(seed=0, max_new_tokens=5)
    steps = policy.propose_steps([ReasoningState(problem), word], 2, sampling)
    assert steps.texts == [["", ""], ["=====", "====="]]  # Countdown cut before "=", word problems not
    assert steps.completion_tokens == [2, 10]
    solutions = policy.sample_solutions([word, ReasoningState(problem)], 2, sampling)
    assert solutions.texts == [["=====", "====="], ["", ""]]  # the Countdown sample stops at its empty step
    assert solutions.completion_tokens == [10, 2]
