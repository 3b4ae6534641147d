"""Sampling steps without replacement (`agents.models.exclusion`) on a real tiny Llama."""

from __future__ import annotations

import math

import torch

from agents.models.base import SamplingConfig
from agents.models.exclusion import ExcludeTaken, taken_masses
from agents.models.hf_policy import HFPolicy, HFPolicyConfig
from agents.models.tiny import TinyModelConfig, build_char_tokenizer, build_policy_model
from reasoning_gym import Problem, ReasoningState, get_task

SMALL = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=256)
ALPHABET = (" ", "a", "b", "\n")
PROMPT = "Problem: ab?\nSolution:\nStep 1:"


def restricted_policy(context_free: bool) -> HFPolicy:
    """A tiny Llama that only writes the four `ALPHABET` tokens: with random head weights
    (its next token depends on the text), or with zero weights (uniform, whatever the text)."""
    tokenizer = build_char_tokenizer()
    torch.manual_seed(0)
    model = build_policy_model(SMALL, tokenizer)
    model.config.tie_word_embeddings = False
    head = torch.nn.Linear(SMALL.hidden_size, len(tokenizer), bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight * 20.0)  # sharper than the random init
        if context_free:
            head.weight.zero_()
        head.bias.fill_(-1e4)
        head.bias[tokenizer.convert_tokens_to_ids(list(ALPHABET))] = 0.0
    model.lm_head = head
    return HFPolicy(model, tokenizer, HFPolicyConfig(prompt_format="plain"))


def token_log_probs(policy: HFPolicy, text: str, temperature: float) -> list[float]:
    """log p(token | text before it) for each token of `text` after `PROMPT`, computed plainly."""
    head = policy.tokenizer(PROMPT)["input_ids"]
    ids = policy.tokenizer(PROMPT + text)["input_ids"]
    with torch.no_grad():
        logits = policy.model(input_ids=torch.tensor([ids])).logits[0]
    log_probs = torch.log_softmax(logits / temperature, dim=-1)
    return [log_probs[i - 1, ids[i]].item() for i in range(len(head), len(ids))]


def test_the_processor_gives_a_new_step_its_probability_renormalised_and_a_taken_one_none():
    policy, temperature = restricted_policy(context_free=False), 0.7
    taken = [" a\n", " ab\n", "b\n"]
    encode = policy.tokenizer.convert_tokens_to_ids
    log_probabilities = [token_log_probs(policy, text, temperature) for text in taken]
    masses = taken_masses([encode(list(text)) for text in taken], log_probabilities)
    head = policy.tokenizer(PROMPT)["input_ids"]
    processor = ExcludeTaken([masses], len(head), temperature)
    taken_mass = sum(math.exp(sum(logs)) for logs in log_probabilities)

    def processed_log_prob(text: str) -> float:
        total = 0.0
        for i, token in enumerate(encode(list(text))):
            ids = torch.tensor([head + encode(list(text[:i]))])
            with torch.no_grad():
                scores = processor(ids, policy.model(input_ids=ids).logits[:, -1, :])
            total += torch.log_softmax(scores, dim=-1)[0, token].item()
        return total

    for text in (" b\n", " aa\n", "\n", "ab\n", " \n"):
        expected = sum(token_log_probs(policy, text, temperature)) - math.log(1.0 - taken_mass)
        assert math.isclose(processed_log_prob(text), expected, abs_tol=1e-4), text
    for text in taken:
        assert processed_log_prob(text) == -math.inf


def test_sampling_with_taken_steps_never_draws_them_and_renormalises_the_rest():
    policy = restricted_policy(context_free=True)  # each token 1/4: "\n" 1/4, " \n" 1/16
    state = ReasoningState(Problem("p", "ab?", "ab"))
    prompt = policy.prompt(state, next_step=True)
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=3, seed=0)
    policy.clear_cache()
    plain = policy._generate([prompt], 400, sampling, ("\n",))
    excluding = policy._generate([prompt], 400, sampling, ("\n",), taken=[["\n", " \n"]])
    texts, excluded = plain.texts, excluding.texts
    assert {"\n", " \n"} <= set(texts[0]) and not {"\n", " \n"} & set(excluded[0])
    unfinished = [sum(not text.endswith("\n") for text in row) / 400 for row in (texts[0], excluded[0])]
    # No stop within 3 tokens: 27/64 of the mass, 27/64 / (1 - 5/16) once the taken 5/16 is out.
    assert abs(unfinished[0] - 27 / 64) < 0.08 and abs(unfinished[1] - 27 / 44) < 0.08
    length = len(policy.tokenizer(prompt)["input_ids"])
    assert plain.prompt_tokens == [length] and plain.reused_prompt_tokens == [399 * length]  # read once
    read = len(policy.tokenizer(prompt + "\n")["input_ids"]) + len(policy.tokenizer(prompt + " \n")["input_ids"])
    # Weighing the taken steps out reads them once; the prompt comes from the prefix cache.
    assert excluding.prompt_tokens[0] + excluding.reused_prompt_tokens[0] == read + 400 * length
    assert excluding.prompt_tokens[0] < read


def test_greedy_decoding_with_taken_steps_takes_the_likeliest_token_under_the_mass_left():
    policy = restricted_policy(context_free=True)
    with torch.no_grad():  # p("\n") .358, p("a") .293, p(" ") .217, p("b") .132, whatever the text
        alphabet = policy.tokenizer.convert_tokens_to_ids(list(ALPHABET))
        policy.model.lm_head.bias[alphabet] = torch.tensor([0.5, 0.8, 0.0, 1.0])
    greedy = SamplingConfig(temperature=0.0, max_new_tokens=6)
    taken: list[str] = []
    for _ in range(4):
        taken.append(policy._generate([PROMPT], 1, greedy, ("\n",), taken=[list(taken)]).texts[0][0])
    # "\n" first; then "a" (.293); then " " (.217) beats "a" (.293 * (1 - .358) = .188); then
    # "a" (.188) beats " " (.217 * .642) and "b" (.132), and under "a" the next best after "\n" is "a".
    assert taken == ["\n", "a\n", " \n", "aa\n"]


def test_written_step_is_what_the_policy_wrote_after_the_step_label():
    countdown, answer = get_task("countdown"), get_task("answer")
    assert countdown.written_step("13 - 9 = 4 (left: 4 4 10)") == " 13 - 9 ="
    assert countdown.written_step("11 * 5 (illegal: 11 and 5 are not both left)") == " 11 * 5 ="
    assert countdown.written_step("13 - 9 = 5 (illegal: 13 - 9 is not 5)") == " 13 - 9 ="
    # no move: the policy ended the line, so that is what a later ask must weigh out
    assert countdown.written_step(". (illegal: not a move (a op b = c) and states no answer)") == " .\n"
    assert countdown.written_step("The answer is (6 + 4) * (7 - 5)") == " The answer is (6 + 4) * (7 - 5)\n"
    assert answer.written_step("x = 5") == " x = 5\n"
