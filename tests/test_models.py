"""Model backends on small real transformers models built locally (no download)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from agents.models.base import GREEDY, Policy, SamplingConfig, ValueModel
from agents.models.hf_policy import HFPolicy, HFPolicyConfig
from agents.models.hf_value import HFValueConfig, HFValueModel
from agents.models.tiny import (
    TinyModelConfig,
    build_bpe_tokenizer,
    build_char_tokenizer,
    build_policy_model,
    build_value_model,
)
from reasoning_gym import Problem, ReasoningState

SMALL = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=512)


@pytest.fixture(scope="module")
def tokenizer():
    return build_char_tokenizer()


@pytest.fixture(scope="module")
def policy(tokenizer):
    torch.manual_seed(0)
    return HFPolicy(build_policy_model(SMALL, tokenizer), tokenizer, HFPolicyConfig(prompt_format="plain"))


@pytest.fixture(scope="module")
def value_model(tokenizer):
    torch.manual_seed(0)
    return HFValueModel(build_value_model(SMALL, tokenizer), tokenizer, HFValueConfig(batch_size=4))


def states() -> list[ReasoningState]:
    a = Problem("a", "Tom has 3 apples and buys 4 more. How many apples?", "7")
    b = Problem("b", "What is 6 * 7?", "42")
    return [ReasoningState(a), ReasoningState(a, ("3 + 4 = 7",)), ReasoningState(b)]


def test_char_tokenizer_round_trips_and_pads_left(tokenizer):
    text = "Problem: 3 * 15 = 45?\nSolution:\nStep 1: The answer is 45\n"
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and len(ids) == len(text) + 1
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    batch = tokenizer(["ab", "abcd"], padding=True)
    assert batch["input_ids"][0][:2] == [tokenizer.pad_token_id] * 2


def test_bpe_tokenizer_is_lossless_splits_digits_and_has_a_newline_token():
    corpus = [s.text + "Step 1: 3 + 4 = 7\n" for s in states()] * 20
    bpe = build_bpe_tokenizer(corpus, vocab_size=300)
    assert build_bpe_tokenizer(corpus, vocab_size=300).get_vocab() == bpe.get_vocab()  # deterministic
    text = "Problem: Zoë has 1234 apples 🙂\nSolution:\nStep 1: 12 * 3 = 36\n"
    ids = bpe(text)["input_ids"]
    assert ids[0] == bpe.bos_token_id
    assert bpe.decode(ids, skip_special_tokens=True) == text
    assert all(len(bpe.decode([i])) == 1 for i in bpe("1234", add_special_tokens=False)["input_ids"])
    assert len(bpe.encode("\n", add_special_tokens=False)) == 1
    assert len(ids) < len(text) * 0.8  # words merge into tokens


def test_protocols_are_satisfied(policy, value_model):
    assert isinstance(policy, Policy) and isinstance(value_model, ValueModel)
    assert 5_000 < policy.num_parameters < 100_000


def test_propose_steps_shape_token_accounting_and_single_line(policy, tokenizer):
    batch = states()
    policy.clear_cache()
    generation = policy.propose_steps(batch, 3, SamplingConfig(seed=0, max_new_tokens=12))
    assert [len(row) for row in generation.texts] == [3, 3, 3]
    assert all("\n" not in text for row in generation.texts for text in row)
    prompt_lengths = [len(tokenizer(policy.prompt(s, next_step=True))["input_ids"]) for s in batch]
    assert generation.prompt_tokens == prompt_lengths  # a prompt is computed once for its 3 samples
    assert generation.reused_prompt_tokens == [2 * n for n in prompt_lengths]
    assert all(0 < c <= 3 * 12 for c in generation.completion_tokens)
    assert generation.calls == 1


def test_prompt_ends_with_the_next_step_label(policy):
    assert policy.prompt(states()[1], next_step=True).endswith("Step 1: 3 + 4 = 7\nStep 2:")
    assert policy.prompt(states()[1], next_step=False).endswith("Step 1: 3 + 4 = 7\n")


def test_greedy_batched_equals_one_by_one(policy):
    batch = states()
    together = policy.propose_steps(batch, 1, GREEDY)
    alone = [policy.propose_steps([state], 1, GREEDY).texts[0] for state in batch]
    assert together.texts == alone
    solutions = policy.sample_solutions(batch, 2, SamplingConfig(temperature=0, max_new_tokens=30))
    assert all(row[0] == row[1] for row in solutions.texts)  # greedy repeats, computed once


def test_sampling_is_reproducible_under_a_seed_and_varies_without(policy):
    sampling = SamplingConfig(temperature=1.0, seed=7, max_new_tokens=10)
    first = policy.propose_steps(states(), 4, sampling).texts
    assert policy.propose_steps(states(), 4, sampling).texts == first
    other = policy.propose_steps(states(), 4, SamplingConfig(temperature=1.0, seed=8, max_new_tokens=10)).texts
    assert other != first


def test_step_stops_at_newline_even_when_a_newline_is_likely(tokenizer):
    """A model that always prefers newline must produce one-token, empty steps."""
    torch.manual_seed(0)
    model = build_policy_model(SMALL, tokenizer)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # tied with embeddings; rebuild an untied bias instead
    model.config.tie_word_embeddings = False
    model.lm_head = torch.nn.Linear(SMALL.hidden_size, len(tokenizer), bias=True)
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.lm_head.bias.fill_(-10.0)
        model.lm_head.bias[tokenizer.convert_tokens_to_ids("\n")] = 10.0
    policy = HFPolicy(model, tokenizer, HFPolicyConfig(prompt_format="plain"))
    generation = policy.propose_steps(states(), 2, SamplingConfig(seed=0, max_new_tokens=20))
    assert generation.completion_tokens == [2, 2, 2]  # the newline itself, then stop
    assert all(text == "" for row in generation.texts for text in row)


def test_value_scores_in_unit_interval_cached_and_order_preserving(value_model):
    batch = states()
    first = value_model.score(batch)
    assert len(first.values) == 3 and all(0.0 <= v <= 1.0 for v in first.values)
    assert all(t > 0 for t in first.tokens) and first.calls == 1
    again = value_model.score(list(reversed(batch)))
    assert again.values == list(reversed(first.values)) and again.tokens == [0, 0, 0] and again.calls == 0
    uncached = value_model.score_texts([s.text for s in batch])
    assert uncached == pytest.approx(first.values, abs=1e-5)  # batch padding does not change scores


def test_value_cache_is_bounded(tokenizer):
    model = HFValueModel(build_value_model(SMALL, tokenizer), tokenizer, HFValueConfig(cache_size=2))
    scores = model.score(states())
    assert len(scores.values) == 3 and len(model._cache) == 2


def test_saved_models_load_from_disk_in_a_fresh_process(tmp_path, tokenizer, policy, value_model):
    policy.model.save_pretrained(tmp_path / "policy")
    tokenizer.save_pretrained(tmp_path / "policy")
    value_model.model.save_pretrained(tmp_path / "value")
    tokenizer.save_pretrained(tmp_path / "value")
    expected_step = policy.propose_steps(states()[:1], 1, GREEDY).texts[0][0]
    expected_value = value_model.score_texts([states()[0].text])[0]
    code = f"""
from agents.models.hf_policy import HFPolicy
from agents.models.hf_value import HFValueModel
from agents.models.base import GREEDY
from reasoning_gym import Problem, ReasoningState
state = ReasoningState(Problem("a", "Tom has 3 apples and buys 4 more. How many apples?", "7"))
policy = HFPolicy.from_pretrained(r"{tmp_path / 'policy'}", prompt_format="plain")
value = HFValueModel.from_pretrained(r"{tmp_path / 'value'}")
print(repr(policy.propose_steps([state], 1, GREEDY).texts[0][0]))
print(value.score([state]).values[0])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == repr(expected_step)
    assert float(out[1]) == pytest.approx(expected_value, abs=1e-5)
