"""The ReST-MCTS* authors' value model: a causal LM plus ``Linear(vocab_size, 1)`` on its vocabulary logits.

From THUDM/ReST-MCTS, ``models/value_models.py`` (``Mistral_VM``,
``get_value_model_mistral``, ``get_local_value``) and ``MCTS/task.py``
(``get_step_value``):

- input: ``"Problem: " + question + "\\nSolution:\\n" + y``, where ``y`` is the
  partial solution, one ``"Step k: ..."`` line per step; this is exactly
  `ReasoningState.text`. Tokenized with the tokenizer's special tokens, as
  ``encode_plus`` does;
- value: ``LN(logits[:, -1])`` with ``LN = Linear(vocab_size, 1)`` applied to the
  LM's vocabulary logits at the last position (not to hidden states), then
  clipped to [0, 1] (``min(high, max(value, low))``);
- weights: ``VM.load_state_dict(torch.load(state_dict_file))`` over the wrapper, so
  the file holds ``LN.weight`` (1 x vocab_size), ``LN.bias`` and usually the whole
  fine-tuned backbone under ``base_model.``.

The reference pads to ``max_length`` and reads column -1, which is a pad token
whenever padding is on the right; here the last non-pad token is read. Covered:
the Mistral/Llama variant (``AutoModelForCausalLM``), with state dicts holding
the head alone or the head and the backbone. Not covered: the ChatGLM3 variant
(``ChatGLM_VM``, remote code) and the authors' truncation to 2048 tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from agents.models.loading import load_causal_lm
from agents.models.prm.base import (
    StateValueModel,
    Encoded,
    check_sizes,
    head_on,
    hidden_at_reads,
    pad_id_of,
    parameter_count,
    split_rows,
)
from reasoning_gym import ReasoningState

BACKBONE_PREFIX = "base_model."


@dataclass(frozen=True)
class ReSTValueConfig:
    """Options of `ReSTValueModel`.

    Attributes:
        batch_size: most states per forward pass.
        cache_size: how many state values to remember.
    """

    batch_size: int = 8
    cache_size: int = 200_000

    def __post_init__(self) -> None:
        check_sizes(self.batch_size, self.cache_size, "ReSTValueConfig")


def load_value_state_dict(path: str | Path, model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """The ``LN`` head from a ReST-MCTS* value-model state dict; its ``base_model.*`` weights go into `model`.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: the file is not such a state dict, or a shape does not fit `model`
            (the message names the file, the key and both shapes).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ReST-MCTS* value state dict not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not {"LN.weight", "LN.bias"} <= state.keys():
        keys = sorted(state)[:6] if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path}: expected a state dict with LN.weight and LN.bias (the value head), got {keys}")
    unknown = sorted(key for key in state if not key.startswith((BACKBONE_PREFIX, "LN.")))
    if unknown:
        raise ValueError(f"{path}: unexpected keys {unknown[:6]}; expected LN.* and base_model.*")
    vocab = model.get_output_embeddings().weight.shape[0]
    for key, shape in (("LN.weight", (1, vocab)), ("LN.bias", (1,))):
        if tuple(state[key].shape) != shape:
            raise ValueError(
                f"{path}: {key} has shape {tuple(state[key].shape)}, but the value head on this backbone "
                f"(Linear(vocab_size={vocab}, 1)) needs {shape}; was it trained on another backbone?"
            )
    backbone = {key[len(BACKBONE_PREFIX) :]: value for key, value in state.items() if key.startswith(BACKBONE_PREFIX)}
    if backbone:
        try:
            model.load_state_dict(backbone, strict=True)
        except RuntimeError as error:
            raise ValueError(f"{path}: the base_model.* weights do not fit the backbone: {error}") from None
    return {"LN.weight": state["LN.weight"], "LN.bias": state["LN.bias"]}


class ReSTValueModel(StateValueModel):
    """`ValueModel` over the ReST-MCTS* value model (see the module docstring).

    Args:
        model: the causal LM backbone.
        head: ``LN.weight`` (1 x vocab) and ``LN.bias`` (1).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        head: dict[str, torch.Tensor],
        tokenizer: PreTrainedTokenizerBase,
        config: ReSTValueConfig | None = None,
    ) -> None:
        self.config = config or ReSTValueConfig()
        super().__init__(self.config.batch_size, self.config.cache_size)
        self.model = model.eval()
        self.head = head_on(head, model.device)
        self.tokenizer = tokenizer
        self.num_parameters = parameter_count(model, head)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, state_dict: str, device: str | None = None, dtype: str | None = None, **config
    ) -> ReSTValueModel:
        """The backbone from `name_or_path` and the head (and fine-tuned backbone) from `state_dict`."""
        model, tokenizer = load_causal_lm(name_or_path, device=device, dtype=dtype)
        head = load_value_state_dict(state_dict, model)
        return cls(model, head, tokenizer, ReSTValueConfig(**config))

    def encode(self, state: ReasoningState) -> Encoded:
        ids = tuple(self.tokenizer.encode(state.text))
        return self.at_last_token(ids)

    @torch.inference_mode()
    def _forward(self, batch: Sequence[Encoded]) -> list[list[float]]:
        hidden = hidden_at_reads(self.model.base_model, batch, pad_id_of(self.tokenizer))
        logits = self.model.get_output_embeddings()(hidden).float()
        values = logits @ self.head["LN.weight"].T + self.head["LN.bias"]
        return split_rows(values[:, 0].clamp(0.0, 1.0), batch)
