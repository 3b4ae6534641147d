"""Skywork-o1-Open-PRM (``Skywork/Skywork-o1-Open-PRM-Qwen-2.5-1.5B`` and ``-7B``): a value head, sigmoid per step.

Conventions, from Skywork's inference code (github.com/SkyworkAI/skywork-o1-prm-inference,
vendored by search-and-learn as ``sal/models/skywork_o1_prm/``: ``prepare_input``,
``derive_step_rewards``, ``SkyworkPRMModel``) and the model card's "Huggingface
Inference" section (search-and-learn's ``SkyworkO1`` PRM uses ``step_token="\\n"``):

- input ids: ``encode(bos_token + problem + "\\n")``, then for each step
  ``encode(step) + [id of "\\n"]``; each segment is tokenized on its own, as
  ``prepare_input`` does (Qwen tokenizers add no special tokens of their own;
  here ``add_special_tokens=False`` says so);
- model: a causal LM backbone plus ``v_head.summary = Linear(hidden, 1)`` on the
  last hidden state (TRL's ``ValueHead`` layout; checkpoint keys
  ``v_head.summary.weight`` and ``v_head.summary.bias``);
- step score: ``sigmoid(v_head(h))`` at each step's final token (the appended
  ``"\\n"``; ``return_probs=True``).

Their model class lives in their repository (a TRL-style wrapper that needs
``accelerate`` and their loading code). Covered here: the documented computation
on a standard transformers backbone (``AutoModel``, e.g. ``Qwen2Model``) with the
value head read from the checkpoint's ``v_head.summary.*`` tensors (the released
checkpoints are one ``pytorch_model.bin`` each; safetensors load too; the key
names are those their wrapper's ``state_dict`` writes, not checked against the
released files), in float32 as their wrapper keeps it. Not covered: their wrapper's PEFT and reward-adapter
paths, and their own ``modeling_qwen2_rm.py`` (remote code, not run). Newlines
inside a step become spaces, so the ``"\\n"`` token appears only as a separator.
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
)
from reasoning_gym import ReasoningState

HEAD_KEYS = ("v_head.summary.weight", "v_head.summary.bias")


@dataclass(frozen=True)
class SkyworkConfig(StepPRMConfig):
    """Options of `SkyworkPRM` (besides `StepPRMConfig`'s aggregation, batch size and cache).

    Attributes:
        step_token: the token appended after each step.
    """

    step_token: str = "\n"


class SkyworkPRM(StepPRM):
    """`ValueModel` over Skywork-o1-Open-PRM: a base model and its scalar value head (module docstring).

    Args:
        backbone: the base transformer, returning last hidden states.
        head: ``v_head.summary.weight`` (1 x h) and ``v_head.summary.bias`` (1).
        tokenizer: must define ``bos_token`` (the reference prepends it as text).
    """

    def __init__(
        self,
        backbone: PreTrainedModel,
        head: dict[str, torch.Tensor],
        tokenizer: PreTrainedTokenizerBase,
        config: SkyworkConfig | None = None,
    ) -> None:
        self.config = config or SkyworkConfig()
        super().__init__(self.config.batch_size, self.config.cache_size, self.config.aggregation)
        if tokenizer.bos_token is None:
            raise ValueError("SkyworkPRM: the tokenizer has no bos_token; the reference input starts with it")
        self.backbone = backbone.eval()
        self.head = head_on(head, backbone.device)
        self.tokenizer = tokenizer
        self.num_parameters = parameter_count(backbone, head)
        self.step_token_id = tokenizer.encode(self.config.step_token, add_special_tokens=False)[-1]

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, device: str | None = None, dtype: str | None = None, **config
    ) -> SkyworkPRM:
        folder = resolve_folder(name_or_path)
        backbone = load_backbone(folder, device, dtype, head_prefixes=("v_head.",))
        head = checkpoint_tensors(folder, HEAD_KEYS)
        return cls(backbone, head, load_tokenizer(str(folder)), SkyworkConfig(**config))

    def encode(self, state: ReasoningState) -> Encoded | None:
        if not state.steps:
            return None
        encode, separator = self.tokenizer.encode, self.config.step_token
        ids = encode(self.tokenizer.bos_token + state.problem.question + separator, add_special_tokens=False)
        positions = []
        for step in state.steps:
            ids = ids + encode(step.replace(separator, " "), add_special_tokens=False) + [self.step_token_id]
            positions.append(len(ids) - 1)
        return Encoded(tuple(ids), tuple(positions))

    @torch.inference_mode()
    def _forward(self, batch: Sequence[Encoded]) -> list[list[float]]:
        hidden = hidden_at_reads(self.backbone, batch, pad_id_of(self.tokenizer)).float()
        logits = hidden @ self.head["v_head.summary.weight"].T + self.head["v_head.summary.bias"]
        return split_rows(torch.sigmoid(logits[:, 0]), batch)
