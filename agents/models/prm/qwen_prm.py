"""Qwen2.5-Math-PRM (``Qwen/Qwen2.5-Math-PRM-7B`` and ``-72B``): two logits per token, read at ``<extra_0>``.

Conventions, from the model card (huggingface.co/Qwen/Qwen2.5-Math-PRM-7B, "Quick
Start") and search-and-learn's ``Qwen_2_5_Math`` PRM (``sal/models/reward_models.py``):

- input: the chat template over a system message "Please reason step by step,
  and put your final answer within \\boxed{}.", the question as the user turn,
  and the assistant turn ``"<extra_0>".join(steps) + "<extra_0>"``
  (``add_generation_prompt=False``);
- step score: at every ``<extra_0>`` position, softmax over the two logits,
  probability of index 1 (the card's ``make_step_rewards``).

The card loads ``AutoModel(..., trust_remote_code=True)``, whose class
``Qwen2ForProcessRewardModel`` (its ``modeling_qwen2_rm.py``; the same layout in
vLLM's and SGLang's ports) is a ``Qwen2Model`` plus ``score = Sequential(Linear(h, h),
ReLU(), Linear(h, 2))``. Here the backbone loads as a standard ``Qwen2Model``
(``trust_remote_code=False``: no downloaded code runs, and the checkpoint's
remote code need not support this transformers version) and the head is read
from the checkpoint's ``score.0.*`` and ``score.2.*`` tensors and applied in float32.

Covered: that computation on the 7B and 72B checkpoints' layout. Not covered:
inputs longer than the context (no truncation); the head's dtype is float32
rather than the checkpoint's bfloat16 (differences at bfloat16 precision).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from agents.models.loading import load_tokenizer
from agents.models.prm.base import (
    Encoded,
    StepPRM,
    StepPRMConfig,
    checkpoint_tensors,
    head_on,
    hidden_at_reads,
    load_backbone,
    pad_id_of,
    parameter_count,
    resolve_folder,
    split_rows,
    tag_positions,
    without,
)
from reasoning_gym import ReasoningState

QWEN_PRM_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
HEAD_KEYS = ("score.0.weight", "score.0.bias", "score.2.weight", "score.2.bias")


@dataclass(frozen=True)
class QwenPRMConfig(StepPRMConfig):
    """Options of `QwenPRM` (besides `StepPRMConfig`'s aggregation, batch size and cache).

    Attributes:
        system_prompt: the system message of the card.
        step_separator: the token after each step.
    """

    system_prompt: str = QWEN_PRM_SYSTEM_PROMPT
    step_separator: str = "<extra_0>"


class QwenPRM(StepPRM):
    """`ValueModel` over Qwen2.5-Math-PRM: a base model and its 2-way MLP head (module docstring).

    Args:
        backbone: the base transformer (``Qwen2Model``), returning last hidden states.
        head: ``score.0.weight`` (h x h), ``score.0.bias``, ``score.2.weight`` (2 x h), ``score.2.bias``.
    """

    def __init__(
        self,
        backbone: PreTrainedModel,
        head: dict[str, torch.Tensor],
        tokenizer: PreTrainedTokenizerBase,
        config: QwenPRMConfig | None = None,
    ) -> None:
        self.config = config or QwenPRMConfig()
        super().__init__(self.config.batch_size, self.config.cache_size, self.config.aggregation)
        self.backbone = backbone.eval()
        self.head = head_on(head, backbone.device)
        self.tokenizer = tokenizer
        self.num_parameters = parameter_count(backbone, head)
        self.separator_id = tokenizer.encode(self.config.step_separator, add_special_tokens=False)[0]

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, device: str | None = None, dtype: str | None = None, **config
    ) -> QwenPRM:
        folder = resolve_folder(name_or_path)
        backbone = load_backbone(folder, device, dtype, head_prefixes=("score.",))
        head = checkpoint_tensors(folder, HEAD_KEYS)
        return cls(backbone, head, load_tokenizer(str(folder)), QwenPRMConfig(**config))

    def text(self, state: ReasoningState) -> str:
        """The card's chat: system prompt, question, and the steps each followed by the separator."""
        separator = self.config.step_separator
        messages = [
            {"role": "system", "content": self.config.system_prompt},
            {"role": "user", "content": without(state.problem.question, separator)},
            {"role": "assistant", "content": "".join(without(step, separator) + separator for step in state.steps)},
        ]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)

    def encode(self, state: ReasoningState) -> Encoded | None:
        if not state.steps:
            return None
        # The chat text already holds every special token it needs.
        ids = tuple(self.tokenizer.encode(self.text(state), add_special_tokens=False))
        return Encoded(ids, tag_positions(ids, self.separator_id, len(state.steps), "QwenPRM"))

    @torch.inference_mode()
    def _forward(self, batch: Sequence[Encoded]) -> list[list[float]]:
        hidden = hidden_at_reads(self.backbone, batch, pad_id_of(self.tokenizer)).float()
        h = self.head
        inner = torch.relu(hidden @ h["score.0.weight"].T + h["score.0.bias"])
        logits = inner @ h["score.2.weight"].T + h["score.2.bias"]
        return split_rows(logits.softmax(dim=-1)[:, 1], batch)
