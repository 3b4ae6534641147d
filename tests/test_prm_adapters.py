"""Published-PRM adapters on tiny local models of the same kind (no download).

Each fixture builds a random-weight model of the checkpoint's class family with a
tokenizer carrying the same special tokens and chat template, saved to disk in
the checkpoint's layout; the adapter loads it as a user would. Each test writes
out the model card's (or reference code's) computation plainly and compares.
"""

from __future__ import annotations

import json
import math
import string
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch
import yaml
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2Model,
)

from agents.compare import CompareConfig, load_value
from agents.config import ConfigError, from_dict, load_yaml
from agents.models.base import ValueModel
from agents.models.presets import read_preset
from agents.models.prm import MathShepherdPRM, QwenPRM, ReSTValueModel, RLHFlowPRM, SkyworkPRM
from agents.models.prm.presets import VALUE_KINDS, read_value_preset
from agents.models.prompted_value import PromptedValue
from reasoning_gym import Problem, ReasoningState
from tests.conftest import REPO_ROOT, load_benchmark

TINY = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    max_position_embeddings=512,
)  # fmt: skip
CORPUS = [
    "Problem: Tom has 3 apples and buys 4 more. How many apples does he have?",
    "Step 1: 3 + 4 = 7 ки\nStep 2: The answer is 7 ки",
    "Janet's ducks lay 16 eggs per day. She eats 3 - 1 = 2. + - + -",
    "Please reason step by step, and put your final answer within \\boxed{}.",
]
# Llama 3 Instruct's chat template (RLHFlow's PRMs are Llama 3.1 chats) and Qwen2.5's ChatML.
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'"
    " + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TOM = Problem("tom", "Tom has 3 apples and buys 4 more. How many apples does he have?", "7")
STATES = [  # different lengths, so a batch is padded
    ReasoningState(TOM, ("3 + 4 = 7",)),
    ReasoningState(TOM, ("3 + 4 = 7", "The answer is 7")),
    ReasoningState(TOM, ("3 - 1 = 2", "2 + 4 = 6", "The answer is 6")),
    ReasoningState(Problem("two", "What is 2 + 2?", "4"), ("2 + 2 = 4", "The answer is 4")),
]


# --- tiny tokenizers ------------------------------------------------------------------------------


def sentencepiece_like_tokenizer() -> PreTrainedTokenizerFast:
    """Llama-2/Mistral style: ``▁`` word prefixes, newline its own token, BOS prepended."""
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split("\n", "isolated"), pre_tokenizers.Metaspace(prepend_scheme="first")]
    )
    backend.decoder = decoders.Metaspace(prepend_scheme="first")
    alphabet = sorted(set(string.printable) | set("ки▁"))
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], initial_alphabet=alphabet,
                                  show_progress=False)  # fmt: skip
    backend.train_from_iterator(CORPUS * 20, trainer)
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def byte_level_tokenizer(specials: list[str], template: str | None = None, **roles: str) -> PreTrainedTokenizerFast:
    """Llama 3 / Qwen2 style: byte-level BPE with special tokens, adding none by itself."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=alphabet, show_progress=False
    )
    backend.train_from_iterator(CORPUS * 20, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **roles)
    tokenizer.chat_template = template
    return tokenizer


class Tiny(NamedTuple):
    folder: str
    model: Any  # the in-memory model whose weights were saved in `folder`
    tokenizer: PreTrainedTokenizerFast  # loaded back from `folder`, as a model card does


# --- tiny models in each checkpoint's layout ---------------------------------------------------------


@pytest.fixture(scope="module")
def shepherd(tmp_path_factory) -> Tiny:
    """A Mistral causal LM, as peiyi9979/math-shepherd-mistral-7b-prm."""
    tokenizer = sentencepiece_like_tokenizer()
    torch.manual_seed(0)
    model = MistralForCausalLM(MistralConfig(vocab_size=len(tokenizer), **TINY)).eval()
    folder = tmp_path_factory.mktemp("math-shepherd")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Tiny(str(folder), model, AutoTokenizer.from_pretrained(folder))


@pytest.fixture(scope="module")
def rlhflow(tmp_path_factory) -> Tiny:
    """A Llama causal LM with Llama 3's chat tokens and template, as RLHFlow/Llama3.1-8B-PRM-*."""
    specials = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tokenizer = byte_level_tokenizer(specials, LLAMA3_TEMPLATE, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
    torch.manual_seed(1)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), **TINY)).eval()
    folder = tmp_path_factory.mktemp("rlhflow")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Tiny(str(folder), model, AutoTokenizer.from_pretrained(folder))


class QwenProcessRewardModel(nn.Module):
    """The layout of Qwen's remote ``Qwen2ForProcessRewardModel``: a Qwen2Model and a 2-way MLP head."""

    def __init__(self, config: Qwen2Config) -> None:
        super().__init__()
        self.model = Qwen2Model(config)
        h = config.hidden_size
        self.score = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 2))

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.score(self.model(input_ids=input_ids).last_hidden_state),)


@pytest.fixture(scope="module")
def qwen_prm(tmp_path_factory) -> Tiny:
    """Qwen2.5-Math-PRM's checkpoint layout: ``model.*`` + ``score.{0,2}.*``, remote-code config, ChatML."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<extra_0>"]
    tokenizer = byte_level_tokenizer(specials, CHATML_TEMPLATE, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    config = Qwen2Config(vocab_size=len(tokenizer), tie_word_embeddings=False, **TINY)
    config.architectures = ["Qwen2ForProcessRewardModel"]
    config.auto_map = {"AutoConfig": "configuration_qwen2_rm.Qwen2RMConfig",
                       "AutoModel": "modeling_qwen2_rm.Qwen2ForProcessRewardModel"}  # fmt: skip
    torch.manual_seed(2)
    model = QwenProcessRewardModel(config).eval()
    folder = tmp_path_factory.mktemp("qwen-prm")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    shards = {  # sharded, as the 7B checkpoint (four shards and an index)
        f"model-0000{k}-of-00002.safetensors": {key: v for key, v in state.items() if key.startswith(prefix)}
        for k, prefix in ((1, "model."), (2, "score."))
    }
    for name, tensors in shards.items():
        save_file(tensors, folder / name, metadata={"format": "pt"})
    weight_map = {key: name for name, tensors in shards.items() for key in tensors}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Tiny(str(folder), model, AutoTokenizer.from_pretrained(folder))


class SkyworkValueModel(nn.Module):
    """Skywork's ``SkyworkPRMModel``: a causal LM and ``v_head.summary = Linear(hidden, 1)``."""

    def __init__(self, config: Qwen2Config) -> None:
        super().__init__()
        self.pretrained_model = Qwen2ForCausalLM(config)
        self.v_head = nn.Module()
        self.v_head.summary = nn.Linear(config.hidden_size, 1)

    def forward(self, input_ids: torch.Tensor, return_probs: bool = True) -> torch.Tensor:
        output = self.pretrained_model(input_ids=input_ids, output_hidden_states=True)
        value = self.v_head.summary(output.hidden_states[-1]).squeeze(-1)
        return torch.sigmoid(value) if return_probs else value

    def checkpoint(self) -> dict[str, torch.Tensor]:
        """Their ``state_dict``: the LM's keys plus ``v_head.*``."""
        state = {k: v.clone().contiguous() for k, v in self.pretrained_model.state_dict().items()}
        state.update({f"v_head.{k}": v.clone() for k, v in self.v_head.state_dict().items()})
        return state


@pytest.fixture(scope="module")
def skywork(tmp_path_factory) -> Tiny:
    """Skywork-o1-Open-PRM-Qwen-2.5's layout: a Qwen2 causal LM plus ``v_head.summary.*`` in ``pytorch_model.bin``."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    roles = {"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    tokenizer = byte_level_tokenizer(specials, CHATML_TEMPLATE, **roles)
    config = Qwen2Config(vocab_size=len(tokenizer), tie_word_embeddings=False, **TINY)
    torch.manual_seed(3)
    model = SkyworkValueModel(config).eval()
    folder = tmp_path_factory.mktemp("skywork")
    torch.save(model.checkpoint(), folder / "pytorch_model.bin")  # the released checkpoints are one .bin each
    config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Tiny(str(folder), model, AutoTokenizer.from_pretrained(folder))


# --- the model cards' computations, written out ------------------------------------------------------


@torch.no_grad()
def card_math_shepherd(tiny: Tiny, question: str, steps: tuple[str, ...]) -> tuple[list[float], int]:
    """huggingface.co/peiyi9979/math-shepherd-mistral-7b-prm: (step scores, input tokens)."""
    tokenizer, model = tiny.tokenizer, tiny.model
    candidate_tokens = tokenizer.encode("+ -")[1:]
    step_tag_id = tokenizer.encode("ки")[-1]
    output = "\n".join(f"Step {k}: {step} ки" for k, step in enumerate(steps, start=1))
    input_id = torch.tensor([tokenizer.encode(f"{question} {output}")])
    logits = model(input_id).logits[:, :, candidate_tokens]
    scores = logits.softmax(dim=-1)[:, :, 0]
    return scores[input_id == step_tag_id].tolist(), input_id.shape[1]


@torch.no_grad()
def card_qwen_prm(tiny: Tiny, question: str, steps: tuple[str, ...]) -> tuple[list[float], int]:
    """huggingface.co/Qwen/Qwen2.5-Math-PRM-7B, Quick Start (``make_step_rewards``)."""
    tokenizer, model = tiny.tokenizer, tiny.model
    messages = [
        {"role": "system", "content": "Please reason step by step, and put your final answer within \\boxed{}."},
        {"role": "user", "content": question},
        {"role": "assistant", "content": "<extra_0>".join(steps) + "<extra_0>"},
    ]
    conversation_str = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    input_ids = tokenizer.encode(conversation_str, return_tensors="pt")
    outputs = model(input_ids=input_ids)
    step_sep_id = tokenizer.encode("<extra_0>")[0]
    token_masks = input_ids == step_sep_id
    probabilities = outputs[0].softmax(dim=-1) * token_masks.unsqueeze(-1)
    sample = probabilities[0]
    return sample[sample != 0].view(-1, 2)[:, 1].tolist(), input_ids.shape[1]


@torch.no_grad()
def card_rlhflow(tiny: Tiny, question: str, steps: tuple[str, ...]) -> tuple[list[float], int]:
    """RLHFlow's prm_evaluate.py (search-and-learn ``RLHFFlow._score_single``): a chat per step prefix."""
    tokenizer, model = tiny.tokenizer, tiny.model
    plus_tag_id = tokenizer.encode("+")[-1]
    minus_tag_id = tokenizer.encode("-")[-1]
    candidate_tokens = [plus_tag_id, minus_tag_id]
    conversation, single_step_score = [], []
    for k in range(len(steps)):
        text = question + " " + steps[0] if k == 0 else steps[k]
        conversation.append({"content": text, "role": "user"})
        conversation.append({"content": "+", "role": "assistant"})
        input_ids = tokenizer.apply_chat_template(conversation, return_tensors="pt")["input_ids"]
        logits = model(input_ids).logits[:, -3, candidate_tokens]  # the +/- is predicted by the '-3' position
        single_step_score.append(logits.softmax(dim=-1)[:, 0].item())
    return single_step_score, input_ids.shape[1]


@torch.no_grad()
def card_skywork(tiny: Tiny, question: str, steps: tuple[str, ...]) -> tuple[list[float], int]:
    """Skywork's ``prepare_input`` and ``derive_step_rewards`` with ``step_token="\\n"``, ``return_probs=True``."""
    tokenizer, model = tiny.tokenizer, tiny.model
    response = "\n".join(steps)
    prompt_ids = tokenizer.encode(tokenizer.bos_token + question + "\n")
    response_ids, reward_flags = [], [0] * len(prompt_ids)
    step_token_id = tokenizer.encode("\n")[-1]
    for step in response.split("\n"):
        step_ids = (tokenizer.encode(step) if step != "" else []) + [step_token_id]
        flag = [0] * len(step_ids)
        flag[-1] = 1
        response_ids.extend(step_ids)
        reward_flags.extend(flag)
    input_ids = torch.tensor([prompt_ids + response_ids])
    rewards = model(input_ids=input_ids, return_probs=True)
    return rewards[0][torch.tensor(reward_flags) == 1].tolist(), input_ids.shape[1]


ADAPTERS = {  # kind -> (fixture, adapter class, the card's computation)
    "math_shepherd": ("shepherd", MathShepherdPRM, card_math_shepherd),
    "qwen_prm": ("qwen_prm", QwenPRM, card_qwen_prm),
    "rlhflow": ("rlhflow", RLHFlowPRM, card_rlhflow),
    "skywork": ("skywork", SkyworkPRM, card_skywork),
}


@pytest.fixture(params=sorted(ADAPTERS))
def kind(request) -> str:
    return request.param


def tiny_of(request, kind: str) -> Tiny:
    return request.getfixturevalue(ADAPTERS[kind][0])


def load(tiny: Tiny, kind: str, **config):
    return ADAPTERS[kind][1].from_pretrained(tiny.folder, device="cpu", **config)


# --- the adapters ------------------------------------------------------------------------------------------


def test_step_scores_equal_the_model_card_computation(request, kind):
    tiny = tiny_of(request, kind)
    adapter = load(tiny, kind)
    assert isinstance(adapter, ValueModel)
    unused = tiny.model.pretrained_model.lm_head.weight.numel() if kind == "skywork" else 0  # scores need no LM head
    assert adapter.num_parameters == sum(p.numel() for p in tiny.model.parameters()) - unused
    card = ADAPTERS[kind][2]
    expected = [card(tiny, state.problem.question, state.steps) for state in STATES]
    got = adapter.step_scores(STATES)
    for state, (scores, _), row in zip(STATES, expected, got):
        assert len(row) == len(state.steps) == len(scores)
        assert row == pytest.approx(scores, abs=1e-5)
        assert all(0.0 <= value <= 1.0 for value in row)
    assert adapter.score(STATES).values == pytest.approx([scores[-1] for scores, _ in expected], abs=1e-5)


def test_batching_padding_and_the_cache_leave_values_alone_and_tokens_are_counted(request, kind):
    tiny = tiny_of(request, kind)
    card = ADAPTERS[kind][2]
    batched, single = load(tiny, kind, batch_size=8), load(tiny, kind, batch_size=1)
    together = batched.score(STATES)
    apart = [single.score([state]) for state in STATES]
    assert together.calls == 1 and [s.calls for s in apart] == [1] * len(STATES)
    assert together.values == pytest.approx([s.values[0] for s in apart], abs=1e-5)
    lengths = [card(tiny, s.problem.question, s.steps)[1] for s in STATES]
    assert together.tokens == lengths == [s.tokens[0] for s in apart]
    assert together.tokens == [len(batched.encode(state).ids) for state in STATES]

    again = batched.score(list(reversed(STATES)))
    assert again.calls == 0 and again.tokens == [0] * len(STATES)
    assert again.values == list(reversed(together.values))
    fresh = load(tiny, kind)
    twice = fresh.score([STATES[1], STATES[1]])
    assert twice.tokens == [lengths[1], 0] and twice.calls == 1
    fresh.clear_cache()
    assert fresh.score([STATES[1]]).tokens == [lengths[1]]


def test_aggregation_last_min_product(request, kind):
    tiny = tiny_of(request, kind)
    state = STATES[2]
    scores, _ = ADAPTERS[kind][2](tiny, state.problem.question, state.steps)
    values = {name: load(tiny, kind, aggregation=name).score([state]).values[0] for name in ("last", "min", "product")}
    assert values["last"] == pytest.approx(scores[-1], abs=1e-5)
    assert values["min"] == pytest.approx(min(scores), abs=1e-5)
    assert values["product"] == pytest.approx(math.prod(scores), abs=1e-5)
    assert values["product"] < values["min"] <= values["last"] + 1e-9
    with pytest.raises(ValueError, match="aggregation must be one of"):
        load(tiny, kind, aggregation="mean")


def test_a_state_without_steps_scores_zero_without_a_call(request, kind):
    adapter = load(tiny_of(request, kind), kind)
    scores = adapter.score([ReasoningState(TOM)])
    assert scores.values == [0.0] and scores.tokens == [0] and scores.calls == 0
    assert adapter.step_scores([ReasoningState(TOM), STATES[0]])[0] == []


def test_math_shepherd_tags_land_after_every_step_and_nowhere_else(shepherd):
    adapter = load(shepherd, "math_shepherd")
    state = ReasoningState(Problem("k", "Is ки a tag? 3 + 4", "7"), ("3 ки + 4\n= 7", "ки The answer is 7"))
    encoded = adapter.encode(state)
    tags = [i for i, token in enumerate(encoded.ids) if token == adapter.tag_id]
    assert list(encoded.positions) == tags and len(tags) == 2 and tags[-1] == len(encoded.ids) - 1
    text = adapter.text(state)
    assert text == "Is  a tag? 3 + 4 Step 1: 3  + 4\n= 7 ки\nStep 2:  The answer is 7 ки"
    assert all(0.0 <= v <= 1.0 for v in adapter.step_scores([state])[0])


def test_qwen_separators_land_after_every_step_and_nowhere_else(qwen_prm):
    adapter = load(qwen_prm, "qwen_prm")
    state = ReasoningState(TOM, ("3 + 4 <extra_0>= 7\n\nso 7", "The answer is 7"))
    encoded = adapter.encode(state)
    separators = [i for i, token in enumerate(encoded.ids) if token == adapter.separator_id]
    assert list(encoded.positions) == separators and len(separators) == 2
    decoded = qwen_prm.tokenizer.decode(encoded.ids[separators[0] + 1 : separators[1]])
    assert decoded == "The answer is 7"
    assert "3 + 4 = 7\n\nso 7<extra_0>The answer is 7<extra_0>" in adapter.text(state)


def test_skywork_flags_the_token_after_every_step_and_only_there(skywork):
    adapter = load(skywork, "skywork")
    state = ReasoningState(Problem("n", "Two lines:\nwhat is 3 + 4?", "7"), ("3 + 4\n= 7", "\nThe answer is 7"))
    encoded = adapter.encode(state)
    prompt = skywork.tokenizer.encode(skywork.tokenizer.bos_token + state.problem.question + "\n")
    assert list(encoded.ids[: len(prompt)]) == prompt
    newlines = [i for i, token in enumerate(encoded.ids) if token == adapter.step_token_id and i >= len(prompt)]
    assert list(encoded.positions) == newlines and len(newlines) == 2 and newlines[-1] == len(encoded.ids) - 1
    # the step's own newline became a space; the reference (no inner newline) then scores the same
    scores, _ = card_skywork(skywork, state.problem.question, ("3 + 4 = 7", " The answer is 7"))
    assert adapter.step_scores([state])[0] == pytest.approx(scores, abs=1e-5)


def test_rlhflow_reads_the_position_before_each_assistant_plus_only(rlhflow):
    adapter = load(rlhflow, "rlhflow")
    state = ReasoningState(TOM, ("3 + 4 = 7 +", "+ The answer is 7\n+"))
    encoded = adapter.encode(state)
    plus, eot = adapter.candidate_ids[0], rlhflow.tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert len(encoded.positions) == 2
    for position in encoded.positions:
        assert encoded.ids[position + 1] == plus and encoded.ids[position + 2] == eot
    scores, length = card_rlhflow(rlhflow, state.problem.question, state.steps)
    assert adapter.step_scores([state])[0] == pytest.approx(scores, abs=1e-5) and len(encoded.ids) == length


def test_qwen_backbone_loads_without_remote_code(qwen_prm):
    adapter = load(qwen_prm, "qwen_prm")
    assert type(adapter.backbone).__name__ == "Qwen2Model"
    assert set(adapter.head) == {"score.0.weight", "score.0.bias", "score.2.weight", "score.2.bias"}


def test_a_missing_head_is_a_clear_error(tmp_path, shepherd):
    model = Qwen2Model(Qwen2Config(vocab_size=len(shepherd.tokenizer), **TINY))
    model.save_pretrained(tmp_path)
    shepherd.tokenizer.save_pretrained(tmp_path)
    with pytest.raises(KeyError, match=r"v_head\.summary\.weight"):
        SkyworkPRM.from_pretrained(str(tmp_path), device="cpu")


# --- the ReST-MCTS* value model -------------------------------------------------------------------------


class MistralVM(nn.Module):
    """The authors' ``Mistral_VM`` (THUDM/ReST-MCTS ``models/value_models.py``)."""

    def __init__(self, base, vocab_size: int) -> None:
        super().__init__()
        self.base_model = base
        self.LN = nn.Linear(vocab_size, 1)

    def forward(self, input_ids, attention_mask):
        outputs = self.base_model(input_ids=input_ids, attention_mask=attention_mask).logits[:, -1, :]
        return self.LN(outputs).squeeze(dim=1)


def authors_value(vm: MistralVM, tokenizer, state: ReasoningState) -> tuple[float, int]:
    """``get_local_value`` on ``'Problem: ' + question + '\\nSolution:\\n' + y`` (one text, so no padding;
    ``encode_plus`` is ``tokenizer(...)`` in transformers 5)."""
    y = "".join(f"Step {k}: {step}\n" for k, step in enumerate(state.steps, start=1))
    prompt_answer = "Problem: " + state.problem.question + "\nSolution:\n" + y
    encoded_pair = tokenizer(prompt_answer, return_tensors="pt")
    with torch.no_grad():
        value = vm(encoded_pair["input_ids"], encoded_pair["attention_mask"]).item()
    return min(1, max(value, 0)), encoded_pair["input_ids"].shape[1]


@pytest.fixture(scope="module")
def rest_backbone(model_dirs) -> str:
    return model_dirs[0]  # a tiny LlamaForCausalLM with its tokenizer


def test_rest_value_equals_the_authors_value_model_with_its_whole_state_dict(tmp_path, rest_backbone):
    base = AutoModelForCausalLM.from_pretrained(rest_backbone)
    torch.manual_seed(5)
    trained = LlamaForCausalLM(base.config).eval()  # the fine-tuned backbone differs from the folder's
    vm = MistralVM(trained, base.config.vocab_size).eval()
    torch.save(vm.state_dict(), tmp_path / "VM_best.pt")
    tokenizer = AutoTokenizer.from_pretrained(rest_backbone)

    adapter = ReSTValueModel.from_pretrained(rest_backbone, str(tmp_path / "VM_best.pt"), device="cpu", batch_size=8)
    states = [ReasoningState(TOM), *STATES]
    expected = [authors_value(vm, tokenizer, state) for state in states]
    scores = adapter.score(states)
    assert scores.values == pytest.approx([value for value, _ in expected], abs=1e-5)
    assert scores.tokens == [length for _, length in expected] and scores.calls == 1
    one_by_one = ReSTValueModel(adapter.model, adapter.head, adapter.tokenizer)
    assert [one_by_one.score([s]).values[0] for s in states] == pytest.approx(scores.values, abs=1e-5)


def test_rest_value_with_a_head_only_state_dict_clips_to_the_unit_interval(tmp_path, rest_backbone):
    base = AutoModelForCausalLM.from_pretrained(rest_backbone).eval()
    vocab = base.config.vocab_size
    for bias, expected in ((50.0, 1.0), (-50.0, 0.0)):
        torch.save({"LN.weight": torch.zeros(1, vocab), "LN.bias": torch.tensor([bias])}, tmp_path / "head.pt")
        adapter = ReSTValueModel.from_pretrained(rest_backbone, str(tmp_path / "head.pt"), device="cpu")
        assert adapter.score(STATES[:2]).values == [expected, expected]
    torch.manual_seed(6)
    head = {"LN.weight": torch.randn(1, vocab) * 0.05, "LN.bias": torch.tensor([0.5])}
    torch.save(head, tmp_path / "head.pt")
    vm = MistralVM(base, vocab).eval()
    vm.LN.load_state_dict({"weight": head["LN.weight"], "bias": head["LN.bias"]})
    tokenizer = AutoTokenizer.from_pretrained(rest_backbone)
    adapter = ReSTValueModel.from_pretrained(rest_backbone, str(tmp_path / "head.pt"), device="cpu")
    assert adapter.score(STATES).values == pytest.approx([authors_value(vm, tokenizer, s)[0] for s in STATES], abs=1e-5)


def test_rest_state_dict_of_another_backbone_is_a_clear_error(tmp_path, rest_backbone):
    vocab = AutoModelForCausalLM.from_pretrained(rest_backbone).config.vocab_size
    path = tmp_path / "VM_other_vocab.pt"
    torch.save({"LN.weight": torch.zeros(1, vocab + 7), "LN.bias": torch.zeros(1)}, path)
    shapes = rf"VM_other_vocab\.pt: LN\.weight has shape \(1, {vocab + 7}\).*\(1, {vocab}\)"
    with pytest.raises(ValueError, match=shapes):
        ReSTValueModel.from_pretrained(rest_backbone, str(path), device="cpu")
    torch.save({"weight": torch.zeros(1, vocab)}, path)
    with pytest.raises(ValueError, match=r"VM_other_vocab\.pt: expected a state dict with LN\.weight"):
        ReSTValueModel.from_pretrained(rest_backbone, str(path), device="cpu")
    torch.save({"LN.weight": torch.zeros(1, vocab), "LN.bias": torch.zeros(1), "base_model.nope": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match=r"VM_other_vocab\.pt: the base_model\.\* weights do not fit"):
        ReSTValueModel.from_pretrained(rest_backbone, str(path), device="cpu")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        ReSTValueModel.from_pretrained(rest_backbone, str(tmp_path / "missing.pt"), device="cpu")


# --- presets and --value --------------------------------------------------------------------------------


def write_preset(path: Path, value: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump({"value": value}), encoding="utf-8")
    return str(path)


def test_load_value_accepts_a_preset_file(tmp_path, shepherd, rlhflow, rest_backbone):
    options = {"kind": "math_shepherd", "model": shepherd.folder, "device": "cpu"}
    options.update(aggregation="min", batch_size=2)
    preset = write_preset(tmp_path / "shepherd.yaml", options)
    value = load_value(preset)
    assert isinstance(value, MathShepherdPRM) and value.config.aggregation == "min" and value.config.batch_size == 2
    scores, _ = card_math_shepherd(shepherd, STATES[2].problem.question, STATES[2].steps)
    assert value.score([STATES[2]]).values[0] == pytest.approx(min(scores), abs=1e-5)

    torch.save({"LN.weight": torch.zeros(1, AutoTokenizer.from_pretrained(rest_backbone).__len__()),
                "LN.bias": torch.tensor([0.25])}, tmp_path / "head.pt")  # fmt: skip
    preset = write_preset(tmp_path / "rest.yaml", {"kind": "rest_mcts", "model": rest_backbone,
                                                    "state_dict": str(tmp_path / "head.pt")})  # fmt: skip
    value = load_value(preset, device="cpu")
    assert isinstance(value, ReSTValueModel) and value.score(STATES[:1]).values == pytest.approx([0.25])

    preset = write_preset(tmp_path / "judge.yml", {"kind": "prompted", "model": rlhflow.folder, "prompt": "tot"})
    value = load_value(preset, device="cpu")
    assert isinstance(value, PromptedValue) and value.config.prompt == "tot"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"kind": "nope", "model": "m"}, r"bad\.yaml: value\.kind must be one of \['math_shepherd'"),
        ({"model": "m"}, r"bad\.yaml: value\.kind must be one of"),
        ({"kind": "qwen_prm"}, r"bad\.yaml: value\.model is required"),
        ({"kind": "rest_mcts", "model": "m"}, r"bad\.yaml: value\.state_dict is required for kind rest_mcts"),
        ({"kind": "skywork", "model": "m", "agregation": "min"},
         r"bad\.yaml: value: unknown key\(s\) \['agregation'\] for SkyworkConfig"),
        ({"kind": "rlhflow", "model": "m", "aggregation": "mean"}, r"bad\.yaml: value: RLHFlowConfig\.aggregation"),
        ({"kind": "prompted", "model": "m", "prompt": "vibes"}, r"bad\.yaml: value: PromptedValueConfig\.prompt"),
    ],
)
def test_bad_presets_name_the_file_and_the_key(tmp_path, value, message):
    with pytest.raises(ConfigError, match=message):
        load_value(write_preset(tmp_path / "bad.yaml", value))


def test_a_preset_without_a_value_section_is_refused(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("policy:\n  model: x\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"policy\.yaml: unknown section\(s\) \['policy'\]"):
        read_value_preset(path)
    path.write_text("{}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"policy\.yaml: a 'value' section .* is required"):
        read_value_preset(path)


def test_shipped_value_presets_parse_and_name_their_checkpoints():
    presets = sorted((REPO_ROOT / "configs" / "prm").glob("*.yaml"))
    kinds = {read_value_preset(path).kind: read_value_preset(path) for path in presets}
    assert set(kinds) == set(VALUE_KINDS)
    assert kinds["qwen_prm"].model.startswith("Qwen/Qwen2.5-Math-PRM-")
    assert kinds["math_shepherd"].model == "peiyi9979/math-shepherd-mistral-7b-prm"
    assert kinds["rest_mcts"].extra["state_dict"]


def test_real_model_configs_parse_without_a_gpu():
    folder = REPO_ROOT / "configs" / "real"
    compares = sorted(folder.glob("compare_*.yaml"))
    assert len(compares) >= 2
    for path in compares:
        config = from_dict(CompareConfig, load_yaml(path), where=str(path))
        assert config.problems.source == "reference" and config.problems.path
        policy, value = REPO_ROOT / config.models.policy, REPO_ROOT / config.models.value
        assert read_preset(policy).backend == "openai"
        assert read_value_preset(value).kind in VALUE_KINDS


def test_real_models_benchmark_exits_with_a_message_without_cuda(monkeypatch, capsys):
    benchmark = load_benchmark("real_models", monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert benchmark.main(["--problems", "2"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_real_models_benchmark_names_a_policy_server_that_does_not_answer(tmp_path, monkeypatch):
    benchmark = load_benchmark("real_models", monkeypatch)
    preset = tmp_path / "server.yaml"
    preset.write_text("policy:\n  backend: openai\n  base_url: http://127.0.0.1:9/v1\n  model: m\n", encoding="utf-8")
    problem = benchmark.server_problem(str(preset))
    assert problem is not None and "http://127.0.0.1:9/v1/models does not answer" in problem
    assert benchmark.server_problem("some/hub-id") is None


def test_cli_solve_searches_with_a_value_preset(model_dirs, skywork, tmp_path, capsys):
    from agents.cli import main

    preset = write_preset(tmp_path / "skywork.yaml", {"kind": "skywork", "model": skywork.folder, "batch_size": 4})
    code = main(["solve", "What is 2 + 2?", "--answer", "4", "--agent", "beam", "--policy", model_dirs[0],
                 "--value", preset, "--device", "cpu", "--max-steps", "2", "--seed", "0"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "beams: " in out
    prm_tokens = int(out.split("usage: ", 1)[1].split(" PRM = ", 1)[0].rsplit(" + ", 1)[1])
    assert prm_tokens > 0

    bad = write_preset(tmp_path / "typo.yaml", {"kind": "skywork", "model": skywork.folder, "batchsize": 4})
    assert main(["solve", "What is 2 + 2?", "--agent", "beam", "--policy", model_dirs[0], "--value", bad]) == 2
    assert "typo.yaml: value: unknown key(s) ['batchsize']" in capsys.readouterr().err
