"""Shared-prefix reuse (`agents.models.prefix_cache`) on real tiny Llamas: cached reads equal plain ones."""

from __future__ import annotations

import pytest
import torch

from agents.models.base import SamplingConfig
from agents.models.hf_policy import HFPolicy, HFPolicyConfig
from agents.models.hf_value import HFValueConfig, HFValueModel
from agents.models.prefix_cache import PrefixCache, cache_argument, read, shared_prefix_lengths
from agents.models.tiny import TinyModelConfig, build_char_tokenizer, build_policy_model, build_value_model
from agents.models.stepwise import cut_step
from reasoning_gym import UNLIMITED, Problem, ReasoningState, apply_step
from reasoning_gym.sources.puzzles import generate_puzzle
from reasoning_gym.steps import normalize_step
from reasoning_gym.tasks import task_of

SMALL = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=512)


@pytest.fixture(scope="module")
def tokenizer():
    return build_char_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    return build_policy_model(SMALL, tokenizer).eval()


def plain_last_logits(model, ids: list[int]) -> torch.Tensor:
    """The next-token logits of `ids` read alone, whole, unpadded."""
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, -1]


def encode(tokenizer, texts: list[str]) -> list[list[int]]:
    return [tokenizer(text)["input_ids"] for text in texts]


def test_reads_through_the_cache_equal_plain_reads_and_count_what_they_reuse(model, tokenizer):
    cache = PrefixCache(max_tokens=10_000)
    first = encode(tokenizer, ["Problem: 4 5 6\nStep 1:", "Problem: 7 8\nStep 1: 7 + 8 =", "Pr"])
    with torch.no_grad():
        result = read(model, first, cache, store_at=shared_prefix_lengths(first))
    assert result.computed == [len(row) for row in first] and result.reused == [0, 0, 0]
    for r, row in enumerate(first):
        assert torch.allclose(result.outputs[r, -1], plain_last_logits(model, row), atol=1e-5)
    # Rows that extend a cached row, repeat one, share only the stored common prefix, or miss.
    second = encode(tokenizer, ["Problem: 4 5 6\nStep 1: 4 + 5 =", "Problem: 7 8\nStep 1: 7 + 8 =", "Problem: 9", "Q"])
    with torch.no_grad():
        result = read(model, second, cache)
    shared = len("Problem: ") + 1  # with BOS: the longest prefix two first rows shared
    assert result.reused == [len(first[0]), len(first[1]) - 1, shared, 0]  # the last token is always computed
    assert [c + r for c, r in zip(result.computed, result.reused)] == [len(row) for row in second]
    for r, row in enumerate(second):
        assert torch.allclose(result.outputs[r, -1], plain_last_logits(model, row), atol=1e-5)
        assert not torch.isnan(result.outputs[r]).any()


def test_decoding_continues_from_the_cached_batch(model, tokenizer):
    """A token appended after `read` sees the same context as a plain read of the longer row."""
    cache = PrefixCache(max_tokens=10_000)
    rows = encode(tokenizer, ["Problem: 1 2\nStep 1:", "Problem: 3 4 5 6\nStep 1: 3 * 4 ="])
    with torch.no_grad():
        read(model, [rows[1][:12]], cache)
        result = read(model, rows, cache)
        token = torch.tensor([[5], [6]])
        mask = torch.cat([result.attention_mask, torch.ones((2, 1), dtype=torch.long)], dim=1)
        out = model(input_ids=token, attention_mask=mask, position_ids=result.next_positions[:, None],
                    use_cache=True, **{cache_argument(model): result.cache})  # fmt: skip
    for r, row in enumerate(rows):
        assert torch.allclose(out.logits[r, -1], plain_last_logits(model, row + [int(token[r])]), atol=1e-5)


def test_the_cache_stays_within_its_token_bound_and_forgets_the_least_recently_used(model, tokenizer):
    cache = PrefixCache(max_tokens=40)
    rows = encode(tokenizer, ["a" * 15, "b" * 15, "c" * 15])
    with torch.no_grad():
        for row in rows:
            read(model, [row], cache)
    assert cache.tokens <= 40 and len(cache) == 2  # 16 tokens each with BOS: "a" went first
    with torch.no_grad():
        assert read(model, [rows[0]], cache).reused == [0]
        assert read(model, [rows[2]], cache).reused == [15]


def countdown_states() -> list[ReasoningState]:
    """A Countdown root (4 5 7 -> 13) and the two states along its reference solution."""
    problem = generate_puzzle(0, seed=0, config="easy")
    return [ReasoningState(problem, tuple(problem.steps[:k])) for k in range(3)]


def test_greedy_steps_with_the_cache_equal_generate_without_it(model, tokenizer):
    policy = HFPolicy(model, tokenizer, HFPolicyConfig(prompt_format="plain"))
    word = Problem("w", "Tom has 3 apples and buys 4 more. How many?", "7")
    states = [ReasoningState(word), ReasoningState(word, ("3 + 4 = 7",)), *countdown_states()]
    sampling = SamplingConfig(temperature=0, max_new_tokens=12)
    first = policy.propose_steps(states, 1, sampling)
    again = policy.propose_steps(states, 1, sampling)  # every prompt now comes from the cache
    assert first.texts == again.texts and sum(again.prompt_tokens) < sum(first.prompt_tokens) / 5
    for state, texts in zip(states, first.texts):
        stops = task_of(state.problem).step_stops
        ids = tokenizer(policy.prompt(state, next_step=True), return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=[tokenizer.eos_token_id, *policy._stop_token_ids(stops)])  # fmt: skip
        written = tokenizer.decode(out[0, ids["input_ids"].shape[1] :].tolist(), skip_special_tokens=True)
        assert texts[0] == normalize_step(cut_step(written, stops))


def test_sampling_is_reproducible_whether_prefixes_are_cached_or_not(model, tokenizer):
    cached = HFPolicy(model, tokenizer, HFPolicyConfig(prompt_format="plain"))
    uncached = HFPolicy(model, tokenizer, HFPolicyConfig(prompt_format="plain", prefix_cache_tokens=0))
    states = countdown_states()
    sampling = SamplingConfig(temperature=1.0, seed=3, max_new_tokens=10)
    cold = cached.propose_steps(states, 4, sampling)
    warm = cached.propose_steps(states, 4, sampling)
    plain = uncached.propose_steps(states, 4, sampling)
    assert cold.texts == warm.texts == plain.texts
    assert sum(warm.prompt_tokens) < sum(plain.prompt_tokens) and sum(plain.reused_prompt_tokens) > 0  # shared by 4


def test_steps_drawn_without_replacement_are_the_same_with_the_cache(model, tokenizer):
    cached = HFPolicy(model, tokenizer, HFPolicyConfig(prompt_format="plain"))
    uncached = HFPolicy(model, tokenizer, HFPolicyConfig(prompt_format="plain", prefix_cache_tokens=0))
    states = countdown_states()
    sampling = SamplingConfig(temperature=0.7, seed=5, max_new_tokens=10)
    exclude = [["5 * 4 = 20 (left: 7 20)"], [], ["20 - 7 = 13 (left: 13) The answer is (5 * 4) - 7", "7 + 20 ="]]
    cached.propose_steps(states, 1, sampling)  # warm: the prompts are cached
    assert cached.propose_steps(states, 2, sampling, exclude).texts == uncached.propose_steps(
        states, 2, sampling, exclude
    ).texts


def test_prm_scores_with_shared_prefixes_equal_plain_scores(tokenizer):
    torch.manual_seed(1)
    backbone = build_value_model(SMALL, tokenizer)
    cached = HFValueModel(backbone, tokenizer, HFValueConfig(batch_size=8))
    plain = HFValueModel(backbone, tokenizer, HFValueConfig(batch_size=8, prefix_cache_tokens=0))
    states = countdown_states()
    siblings = [apply_step(states[0], step, UNLIMITED) for step in ("4 + 5 =", "7 * 5 =", "7 - 4 =")]
    first = cached.score(states)
    second = cached.score(siblings)  # the board's rules and target come from the cache
    assert first.values == pytest.approx(plain.score(states).values, abs=1e-5)
    assert second.values == pytest.approx(plain.score(siblings).values, abs=1e-5)
    assert all(hit > 0 for hit in second.reused_tokens)
    assert [c + r for c, r in zip(second.tokens, second.reused_tokens)] == [
        len(tokenizer(state.value_text)["input_ids"]) for state in siblings
    ]
    assert cached.score_texts([s.value_text for s in siblings]) == pytest.approx(second.values, abs=1e-5)


def test_a_prompt_with_more_samples_than_a_call_holds_is_read_once_and_decoded_in_groups(model, tokenizer):
    state = countdown_states()[0]
    sampling = SamplingConfig(temperature=1.0, seed=4, max_new_tokens=10)
    wide = HFPolicy(model, tokenizer, HFPolicyConfig(prompt_format="plain")).propose_steps([state], 5, sampling)
    for batch_size in (1, 2):
        narrow = HFPolicy(model, tokenizer, HFPolicyConfig(prompt_format="plain", batch_size=batch_size))
        generation = narrow.propose_steps([state], 5, sampling)
        assert len(generation.texts[0]) == 5 and generation.calls == 5 // batch_size + 5 % batch_size
        length = len(tokenizer(narrow.prompt(state, next_step=True))["input_ids"])
        assert generation.prompt_tokens == [length] and generation.reused_prompt_tokens == [4 * length]
    assert len(set(wide.texts[0])) > 1  # sampled, not one text repeated


def test_a_finished_problem_takes_its_prefixes_with_it(model, tokenizer):
    policy = HFPolicy(model, tokenizer, HFPolicyConfig(prompt_format="plain"))
    states = countdown_states()
    other = ReasoningState(generate_puzzle(1, seed=0, config="easy"))
    policy.propose_steps([*states, other], 1, SamplingConfig(temperature=0, max_new_tokens=6))
    before = len(policy.prefix_cache)
    policy.forget(states[0].problem)
    assert 0 < len(policy.prefix_cache) < before  # the other problem's prompt stays
    again = policy.propose_steps([other], 1, SamplingConfig(temperature=0, max_new_tokens=6))
    assert again.reused_prompt_tokens[0] > 0
    assert again.prompt_tokens == [1]  # a cached prompt: only its last token is computed
    fresh = policy.propose_steps([states[0]], 1, SamplingConfig(temperature=0, max_new_tokens=6))
    assert fresh.prompt_tokens[0] > 1  # forgotten: read again


def test_steps_the_policy_wrote_are_weighed_out_without_reading_them_again(model, tokenizer):
    cached = HFPolicy(model, tokenizer, HFPolicyConfig(prompt_format="plain"))
    plain = HFPolicy(model, tokenizer, HFPolicyConfig(prompt_format="plain", prefix_cache_tokens=0))
    state = countdown_states()[0]
    sampling = SamplingConfig(temperature=0.8, seed=2, max_new_tokens=10)
    first = cached.propose_steps([state], 3, sampling, exclude=[[]])  # asked as a search asks: steps remembered
    taken = []
    for text in dict.fromkeys(first.texts[0]):
        try:
            taken.append(apply_step(state, text, UNLIMITED).steps[-1])
        except ValueError:
            continue
    assert taken
    # The remembered log-probabilities are those a plain teacher-forced read gives.
    prompt = tokenizer(cached.prompt(state, next_step=True))["input_ids"]
    for key, logs in cached._step_log_probs.items():
        ids = prompt + list(key[2])
        with torch.no_grad():
            expected = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double() / 0.8, dim=-1)
        plain_logs = [expected[k - 1, ids[k]].item() for k in range(len(prompt), len(ids))]
        assert logs == pytest.approx(plain_logs, abs=1e-5)
    again = SamplingConfig(temperature=0.8, seed=9, max_new_tokens=10)
    remembered = cached.propose_steps([state], 2, again, exclude=[taken])
    read_again = plain.propose_steps([state], 2, again, exclude=[taken])
    assert remembered.texts == read_again.texts
    assert remembered.prompt_tokens[0] < read_again.prompt_tokens[0]  # nothing was read to weigh them out
