"""RLHFlow's PRMs (``RLHFlow/Llama3.1-8B-PRM-Deepseek-Data``, ``-Mistral-Data``): a chat read before each ``+``.

Conventions, from RLHFlow's ``math-rm/prm_evaluate.py`` (RLHF-Reward-Modeling) as
search-and-learn reproduces it (``sal/models/reward_models.py``, class ``RLHFFlow``,
``_score_single``):

- input: one chat, one user turn per step, the first being ``question + " " + step 1``,
  each followed by an assistant turn ``"+"``, rendered by the tokenizer's chat template;
- candidate tokens: ``tokenizer.encode("+")[-1]`` and ``tokenizer.encode("-")[-1]``;
- step score: softmax over the ``+`` and ``-`` logits at the position just before
  each assistant ``+`` (that position predicts it; ``logits[:, -3]`` for the last
  turn under the Llama 3.1 template), probability of ``+``.

The reference scores step k with a chat cut after turn k; a causal model gives
those same numbers for every step from one pass over the whole chat (search-
and-learn's batched variant reads them the same way). The ``+`` positions are
found from the rendered text (the character where each assistant turn begins,
mapped to its token through the tokenizer's offsets) and checked to hold the
``+`` token, so a ``+`` written inside a step is never read.

Covered: that computation for any causal LM with a chat template (needs a fast
tokenizer for the offsets). Not covered: inputs longer than the context.
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
    token_logits,
)
from reasoning_gym import ReasoningState


@dataclass(frozen=True)
class RLHFlowConfig(StepPRMConfig):
    """Options of `RLHFlowPRM` (besides `StepPRMConfig`'s aggregation, batch size and cache).

    Attributes:
        good_token, bad_token: the assistant labels whose probabilities are compared.
    """

    good_token: str = "+"
    bad_token: str = "-"


class RLHFlowPRM(StepPRM):
    """`ValueModel` over an RLHFlow-style chat PRM (see the module docstring)."""

    def __init__(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: RLHFlowConfig | None = None
    ) -> None:
        self.config = config or RLHFlowConfig()
        super().__init__(self.config.batch_size, self.config.cache_size, self.config.aggregation)
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("RLHFlowPRM needs a tokenizer with a chat template")
        if not tokenizer.is_fast:
            raise ValueError("RLHFlowPRM needs a fast tokenizer (character offsets locate the assistant turns)")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.num_parameters = parameter_count(model)
        c = self.config
        self.candidate_ids = [
            tokenizer.encode(label, add_special_tokens=False)[-1] for label in (c.good_token, c.bad_token)
        ]

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, device: str | None = None, dtype: str | None = None, **config
    ) -> RLHFlowPRM:
        model, tokenizer = load_causal_lm(name_or_path, device=device, dtype=dtype)
        return cls(model, tokenizer, RLHFlowConfig(**config))

    def conversation(self, state: ReasoningState) -> list[dict[str, str]]:
        """The reference's chat: user turns (question + step 1, then one step each), assistant ``+`` after each."""
        messages = []
        for k, step in enumerate(state.steps):
            text = f"{state.problem.question} {step}" if k == 0 else step
            messages += [{"role": "user", "content": text}, {"role": "assistant", "content": self.config.good_token}]
        return messages

    def encode(self, state: ReasoningState) -> Encoded | None:
        if not state.steps:
            return None
        messages = self.conversation(state)
        render = self.tokenizer.apply_chat_template
        text = render(messages, tokenize=False)
        encoding = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = encoding["input_ids"], encoding["offset_mapping"]
        token_at = {start: index for index, (start, end) in enumerate(offsets) if end > start}
        positions = []
        for k in range(len(state.steps)):
            # Assistant turn k begins where the chat up to user turn k, with the generation prompt, ends.
            head = render(messages[: 2 * k + 1], tokenize=False, add_generation_prompt=True)
            index = token_at.get(len(head))
            if not text.startswith(head) or index is None or ids[index] != self.candidate_ids[0]:
                raise ValueError(
                    f"RLHFlowPRM: the chat template does not put assistant turn {k + 1} "
                    f"({self.config.good_token!r}) as one token right after its header"
                )
            positions.append(index - 1)  # the position that predicts the label
        return Encoded(tuple(ids), tuple(positions))

    @torch.inference_mode()
    def _forward(self, batch: Sequence[Encoded]) -> list[list[float]]:
        hidden = hidden_at_reads(self.model.base_model, batch, pad_id_of(self.tokenizer))
        probabilities = token_logits(self.model, hidden, self.candidate_ids).softmax(dim=-1)[:, 0]
        return split_rows(probabilities, batch)
