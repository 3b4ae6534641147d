"""The local transformers PRM: a backbone with a scalar head, sigmoid to [0, 1], cached."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from agents.models.base import Scores
from agents.models.loading import load_value_backbone
from agents.models.prefix_cache import PrefixCache, read, shared_prefix_lengths
from reasoning_gym import ReasoningState


@dataclass(frozen=True)
class HFValueConfig:
    """Options of `HFValueModel`.

    Attributes:
        batch_size: most states per forward pass.
        cache_size: how many scored texts to remember (least recently used go first).
        max_length: longest input in tokens; longer states keep their last tokens.
        prefix_cache_tokens: most tokens of prefixes kept to be reused (their keys
            and values, `agents.models.prefix_cache`); 0 reads every input whole.
    """

    batch_size: int = 64
    cache_size: int = 200_000
    max_length: int = 1024
    prefix_cache_tokens: int = 65_536

    def __post_init__(self) -> None:
        if self.prefix_cache_tokens < 0:
            raise ValueError(f"HFValueConfig.prefix_cache_tokens must be >= 0, got {self.prefix_cache_tokens}")


class HFValueModel:
    """A `ValueModel` over any `AutoModelForSequenceClassification` with one output.

    Input text is the state's `value_text`: ``render_state(question, steps)``
    (``"Problem: {q}\\nSolution:\\n"`` then the steps), or the board on a task that
    renders one (Countdown, `reasoning_gym.tasks.countdown.board_text`). The value
    is ``sigmoid(logit)``, trained by soft binary cross-entropy (or MSE) to the
    ReST-MCTS* quality targets. Scores are cached by that text (states with the
    same board share one); cache hits cost no tokens. On a decoder with a
    ``score`` head (Llama, Mistral, Qwen2, GPT-2, ...) the prefixes inputs share
    (a tree's rules and target, a parent's steps) are read once and their keys
    and values reused (`agents.models.prefix_cache`); other models read every
    input whole.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: HFValueConfig | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config or HFValueConfig()
        tokenizer.padding_side = "left"
        tokenizer.truncation_side = "left"
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        self.num_parameters = sum(p.numel() for p in model.parameters())
        self._cache: OrderedDict[str, float] = OrderedDict()
        self._head = getattr(model, "score", None)
        reuse = self.config.prefix_cache_tokens > 0 and isinstance(self._head, torch.nn.Module)
        self.prefix_cache = PrefixCache(self.config.prefix_cache_tokens) if reuse else None

    @classmethod
    def from_pretrained(cls, name_or_path: str, device: str | None = None, dtype: str | None = None, **config) -> HFValueModel:
        model, tokenizer = load_value_backbone(name_or_path, device=device, dtype=dtype, new_head_expected=False)
        return cls(model, tokenizer, HFValueConfig(**config))

    def clear_cache(self) -> None:
        """Forget cached scores and prefixes (call after the weights change)."""
        self._cache.clear()
        if self.prefix_cache is not None:
            self.prefix_cache.clear()

    def score(self, states: Sequence[ReasoningState]) -> Scores:
        texts = [state.value_text for state in states]
        missing = list(dict.fromkeys(text for text in texts if text not in self._cache))
        costs, calls = self._score_texts(missing)
        values, tokens, reused = [], [], []
        for text in texts:
            self._cache.move_to_end(text)
            values.append(self._cache[text])
            computed, hit = costs.pop(text, (0, 0))  # a text repeated in one call is paid once
            tokens.append(computed)
            reused.append(hit)
        while len(self._cache) > self.config.cache_size:
            self._cache.popitem(last=False)
        return Scores(values, tokens, calls, reused if any(reused) else [])

    def score_texts(self, texts: Sequence[str]) -> list[float]:
        """Uncached values for raw texts (for evaluation and training diagnostics, also while
        the weights change: no prefix is reused)."""
        values: list[float] = []
        for start in range(0, len(texts), self.config.batch_size):
            values.extend(self._forward(list(texts[start : start + self.config.batch_size]), reuse=False)[0])
        return values

    @torch.inference_mode()
    def _forward(self, texts: list[str], reuse: bool = True) -> tuple[list[float], list[int], list[int]]:
        """Values, computed and reused token counts of `texts`, one forward pass (`reuse`: through
        the prefix cache, where the model has one)."""
        if self.prefix_cache is None or not reuse:
            batch = self.tokenizer(
                texts, return_tensors="pt", padding=True, truncation=True, max_length=self.config.max_length
            ).to(self.model.device)
            logits = self.model(**batch).logits[:, 0].float()
            return torch.sigmoid(logits).tolist(), batch["attention_mask"].sum(dim=1).tolist(), [0] * len(texts)
        rows = self.tokenizer(texts, truncation=True, max_length=self.config.max_length)["input_ids"]
        # The head reads the last token's hidden state, as the model's own pooling does.
        result = read(self.model.base_model, rows, self.prefix_cache, store_at=shared_prefix_lengths(rows),
                      pad_id=self.model.config.pad_token_id or 0)  # fmt: skip
        logits = self._head(result.outputs[:, -1])[:, 0].float()
        return torch.sigmoid(logits).tolist(), result.computed, result.reused

    def _score_texts(self, texts: list[str]) -> tuple[dict[str, tuple[int, int]], int]:
        """Score uncached texts in length-sorted batches; returns ({text: (computed, reused tokens)}, calls)."""
        costs: dict[str, tuple[int, int]] = {}
        calls = 0
        ordered = sorted(texts, key=len)
        for start in range(0, len(ordered), self.config.batch_size):
            chunk = ordered[start : start + self.config.batch_size]
            values, computed, reused = self._forward(chunk)
            calls += 1
            for text, value, tokens, hit in zip(chunk, values, computed, reused):
                self._cache[text] = value
                costs[text] = (tokens, hit)
        return costs, calls
