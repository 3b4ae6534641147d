"""Math-Shepherd's PRM (``peiyi9979/math-shepherd-mistral-7b-prm``): a causal LM read at step tags.

Conventions, from the model card (huggingface.co/peiyi9979/math-shepherd-mistral-7b-prm)
and the same code in search-and-learn (``sal/models/reward_models.py``, class
``MathShepherd``, ``CANDIDATE_TOKENS = [648, 387]``, ``STEP_TAG_ID = 12902``):

- input: ``f"{question} {output}"`` where ``output`` is ``"Step 1: ... ки\\nStep 2: ... ки"``,
  each step labelled ``Step k:`` and ended by the tag ``ки``;
- candidate tokens: ``tokenizer.encode("+ -")[1:]`` (the card drops the BOS; here
  ``add_special_tokens=False``), the tag id ``tokenizer.encode("ки")[-1]``;
- step score: at every position whose token is the tag, softmax over the logits
  of ``+`` and ``-``, probability of ``+``.

Covered: the card's computation on any causal LM checkpoint with that tokenizer.
The tag text is deleted from the question and the steps first, so the tags in
the input are exactly one after each step (the card's reading takes every tag).
Not covered: inputs longer than the model's context (no truncation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from agents.models.loading import load_causal_lm
from agents.models.prm.base import (
    Encoded,
    StepPRM,
    StepPRMConfig,
    hidden_at_reads,
    pad_id_of,
    parameter_count,
    split_rows,
    tag_positions,
    token_logits,
    without,
)
from reasoning_gym import ReasoningState, format_step


@dataclass(frozen=True)
class MathShepherdConfig(StepPRMConfig):
    """Options of `MathShepherdPRM` (besides `StepPRMConfig`'s aggregation, batch size and cache).

    Attributes:
        step_tag: the tag after each step.
        good_token, bad_token: the labels whose probabilities are compared.
    """

    step_tag: str = "ки"
    good_token: str = "+"
    bad_token: str = "-"


class MathShepherdPRM(StepPRM):
    """`ValueModel` over a Math-Shepherd-style causal-LM PRM (see the module docstring)."""

    def __init__(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: MathShepherdConfig | None = None
    ) -> None:
        self.config = config or MathShepherdConfig()
        super().__init__(self.config.batch_size, self.config.cache_size, self.config.aggregation)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.num_parameters = parameter_count(model)
        c = self.config
        self.candidate_ids = tokenizer.encode(f"{c.good_token} {c.bad_token}", add_special_tokens=False)
        if len(self.candidate_ids) != 2:
            raise ValueError(
                f"MathShepherdPRM: {c.good_token!r} {c.bad_token!r} should be two tokens, "
                f"got {tokenizer.convert_ids_to_tokens(self.candidate_ids)}"
            )
        self.tag_id = tokenizer.encode(c.step_tag, add_special_tokens=False)[-1]

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, device: str | None = None, dtype: str | None = None, **config
    ) -> MathShepherdPRM:
        model, tokenizer = load_causal_lm(name_or_path, device=device, dtype=dtype)
        return cls(model, tokenizer, MathShepherdConfig(**config))

    def text(self, state: ReasoningState) -> str:
        """The card's input: ``f"{question} Step 1: ... ки\\nStep 2: ... ки"``."""
        tag = self.config.step_tag
        output = "\n".join(
            f"{format_step(k, without(step, tag))} {tag}" for k, step in enumerate(state.steps, start=1)
        )
        return f"{without(state.problem.question, tag)} {output}"

    def encode(self, state: ReasoningState) -> Encoded | None:
        if not state.steps:
            return None
        ids = tuple(self.tokenizer.encode(self.text(state)))
        return Encoded(ids, tag_positions(ids, self.tag_id, len(state.steps), "MathShepherdPRM"))

    @torch.inference_mode()
    def _forward(self, batch: Sequence[Encoded]) -> list[list[float]]:
        hidden = hidden_at_reads(self.model.base_model, batch, pad_id_of(self.tokenizer))
        probabilities = token_logits(self.model, hidden, self.candidate_ids).softmax(dim=-1)[:, 0]
        return split_rows(probabilities, batch)
