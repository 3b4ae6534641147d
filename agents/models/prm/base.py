"""What every off-the-shelf value model here shares: encoding, batching, caching, cost.

An adapter turns a `ReasoningState` into the token ids its model was trained on
and the positions where the model's output is read (`Encoded`). This module runs
those encodings through the model in batches, caches the resulting value by
(question, steps), and counts the tokens each state cost. Adapters implement two
methods: `encode` (text -> ids and read positions) and `_forward` (one batched
pass -> one score per read position).

Batches are right-padded: every real token keeps the position it has when the
state is scored alone, so batching does not move rotary positions, and pad
tokens after a sequence cannot reach it through causal attention. Scores are
read at explicit positions, never at "the last column".
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModel, PreTrainedModel

from agents.models.base import Scores
from agents.models.loading import _held_load_reports, pick_device, pick_dtype
from reasoning_gym import ReasoningState


# How per-step scores make one state value (names as `BestOfNConfig.aggregation`).
AGGREGATIONS: dict[str, Callable[[Sequence[float]], float]] = {
    "last": lambda scores: scores[-1],
    "min": min,
    "product": math.prod,
}


def check_aggregation(name: str, owner: str) -> None:
    """ValueError unless `name` is a key of `AGGREGATIONS` (`owner` names the config)."""
    if name not in AGGREGATIONS:
        raise ValueError(f"{owner}.aggregation must be one of {sorted(AGGREGATIONS)}, got {name!r}")


def check_sizes(batch_size: int, cache_size: int, owner: str) -> None:
    """ValueError unless `batch_size` >= 1 and `cache_size` >= 0."""
    if batch_size < 1:
        raise ValueError(f"{owner}.batch_size must be >= 1, got {batch_size}")
    if cache_size < 0:
        raise ValueError(f"{owner}.cache_size must be >= 0, got {cache_size}")


@dataclass(frozen=True)
class StepPRMConfig:
    """What every step PRM's options share (each adapter's config extends it).

    Attributes:
        aggregation: per-step scores -> state value: "last" (search-and-learn's
            default ``agg_strategy``), "min" or "product".
        batch_size: most states per forward pass.
        cache_size: how many state values to remember.
    """

    aggregation: str = "last"
    batch_size: int = 8
    cache_size: int = 200_000

    def __post_init__(self) -> None:
        check_aggregation(self.aggregation, type(self).__name__)
        check_sizes(self.batch_size, self.cache_size, type(self).__name__)


@dataclass(frozen=True)
class Encoded:
    """The model input of one state and where its output is read.

    Attributes:
        ids: token ids, unpadded (their number is the state's token cost).
        positions: indices into `ids` whose outputs become scores, in order
            (one per step for step PRMs, one for whole-state value models).
    """

    ids: tuple[int, ...]
    positions: tuple[int, ...]


def without(text: str, tag: str) -> str:
    """`text` with every occurrence of `tag` removed (repeatedly: removing one may join another)."""
    while tag in text:
        text = text.replace(tag, "")
    return text


def tag_positions(ids: Sequence[int], tag_id: int, expected: int, what: str) -> tuple[int, ...]:
    """Positions of `tag_id` in `ids`; ValueError unless there are exactly `expected` of them."""
    positions = tuple(i for i, token in enumerate(ids) if token == tag_id)
    if len(positions) != expected:
        raise ValueError(
            f"{what}: found {len(positions)} step tags (token id {tag_id}) for {expected} steps; "
            "the tokenizer does not keep the tag as one token after each step"
        )
    return positions


class CachedValueModel(ABC):
    """A `ValueModel` over adapter encodings: batched, cached by (question, steps), tokens counted.

    A state whose `encode` is None (a step PRM before the first step: nothing
    to judge) scores 0.0 with no model call and no tokens, as the ReST-MCTS*
    root value v_0 = 0. A state repeated in one call is paid once.
    """

    num_parameters: int

    def __init__(self, batch_size: int, cache_size: int) -> None:
        self._batch_size = batch_size
        self._cache_size = cache_size
        self._cache: OrderedDict[Hashable, float] = OrderedDict()

    @abstractmethod
    def encode(self, state: ReasoningState) -> Encoded | None:
        """The model input of `state`, or None when there is nothing to score."""

    @abstractmethod
    def _forward(self, batch: Sequence[Encoded]) -> list[list[float]]:
        """One batched pass: the score at each read position of each encoding."""

    @abstractmethod
    def _reduce(self, scores: Sequence[float]) -> float:
        """One state value from the scores at its read positions."""

    def clear_cache(self) -> None:
        """Forget cached values (call after the weights change)."""
        self._cache.clear()

    def score(self, states: Sequence[ReasoningState]) -> Scores:
        """One value in [0, 1] per state; tokens per state (0 on a cache hit); batched passes made."""
        keys = [(state.problem.question, state.steps) for state in states]
        missing = {key: state for key, state in zip(keys, states) if key not in self._cache}
        encoded = {key: self.encode(state) for key, state in missing.items()}
        for key, item in encoded.items():
            if item is None:
                self._cache[key] = 0.0
        todo = {key: item for key, item in encoded.items() if item is not None}
        scores, calls = self._run(list(todo.values()))
        lengths: dict[Hashable, int] = {}
        for (key, item), row in zip(todo.items(), scores):
            self._cache[key] = self._reduce(row)
            lengths[key] = len(item.ids)
        values, tokens = [], []
        for key in keys:
            self._cache.move_to_end(key)
            values.append(self._cache[key])
            tokens.append(lengths.pop(key, 0))
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return Scores(values, tokens, calls)

    def _run(self, items: Sequence[Encoded]) -> tuple[list[list[float]], int]:
        """Scores of `items` in input order, computed in length-sorted batches; (scores, passes)."""
        order = sorted(range(len(items)), key=lambda k: len(items[k].ids))
        scores: list[list[float]] = [[] for _ in items]
        calls = 0
        for start in range(0, len(order), self._batch_size):
            chunk = order[start : start + self._batch_size]
            for k, row in zip(chunk, self._forward([items[k] for k in chunk])):
                scores[k] = row
            calls += 1
        return scores, calls


class StepPRM(CachedValueModel):
    """A PRM that scores every step; the state value aggregates them (`AGGREGATIONS`)."""

    def __init__(self, batch_size: int, cache_size: int, aggregation: str) -> None:
        super().__init__(batch_size, cache_size)
        self.aggregation = aggregation

    def step_scores(self, states: Sequence[ReasoningState]) -> list[list[float]]:
        """Uncached per-step scores of each state, in step order ([] for a state without steps)."""
        encoded = [self.encode(state) for state in states]
        todo = [item for item in encoded if item is not None]
        scores = iter(self._run(todo)[0])
        return [next(scores) if item is not None else [] for item in encoded]

    def _reduce(self, scores: Sequence[float]) -> float:
        return AGGREGATIONS[self.aggregation](scores)


class StateValueModel(CachedValueModel):
    """A value model that reads one value per state, at the state's last token."""

    @staticmethod
    def at_last_token(ids: Sequence[int]) -> Encoded:
        """The encoding `ids`, read at its last token."""
        return Encoded(tuple(ids), (len(ids) - 1,))

    def _reduce(self, scores: Sequence[float]) -> float:
        return scores[0]


# --- batched tensors ------------------------------------------------------------------------------


def right_pad(batch: Sequence[Encoded], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of `batch`, right-padded to its longest sequence."""
    width = max(len(item.ids) for item in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, item in enumerate(batch):
        ids[row, : len(item.ids)] = torch.tensor(item.ids, dtype=torch.long)
        mask[row, : len(item.ids)] = 1
    return ids.to(device), mask.to(device)


def read_positions(hidden: torch.Tensor, batch: Sequence[Encoded]) -> torch.Tensor:
    """The rows of `hidden` (B x T x H) at every read position of `batch`, flattened (N x H)."""
    rows = [row for row, item in enumerate(batch) for _ in item.positions]
    cols = [position for item in batch for position in item.positions]
    return hidden[torch.tensor(rows, device=hidden.device), torch.tensor(cols, device=hidden.device)]


def split_rows(values: torch.Tensor, batch: Sequence[Encoded]) -> list[list[float]]:
    """Flat per-position values (N) back into one list per encoding."""
    flat = values.tolist()
    out, start = [], 0
    for item in batch:
        out.append(flat[start : start + len(item.positions)])
        start += len(item.positions)
    return out


def hidden_at_reads(backbone: PreTrainedModel, batch: Sequence[Encoded], pad_id: int) -> torch.Tensor:
    """A transformers base model's last hidden states at every read position of `batch`
    (N x H), from one pass over the batch right-padded with `pad_id`."""
    input_ids, mask = right_pad(batch, pad_id, backbone.device)
    return read_positions(backbone(input_ids=input_ids, attention_mask=mask).last_hidden_state, batch)


def token_logits(causal_lm: PreTrainedModel, hidden: torch.Tensor, token_ids: Sequence[int]) -> torch.Tensor:
    """Logits of `token_ids` (N x len(token_ids), float32) from selected last hidden states (N x H).

    The causal LMs here (Llama, Mistral, Qwen2) compute ``logits = lm_head(last
    hidden state)``; applying the head to the read positions only gives the same
    numbers without a T x vocabulary logit tensor per sequence.
    """
    logits = causal_lm.get_output_embeddings()(hidden)
    return logits[:, list(token_ids)].float()


def pad_id_of(tokenizer) -> int:
    """A pad id for right padding (masked and after the sequence, so any id will do)."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


# --- loading --------------------------------------------------------------------------------------


def resolve_folder(name_or_path: str) -> Path:
    """A local model folder: `name_or_path` itself, or the Hub snapshot of that id (downloaded once)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(name_or_path))


# (index, single file) names of a checkpoint, in the order transformers prefers them.
CHECKPOINT_FILES = (
    ("model.safetensors.index.json", "model.safetensors"),
    ("pytorch_model.bin.index.json", "pytorch_model.bin"),
)


def checkpoint_tensors(folder: Path, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Tensors `names` from the checkpoint in `folder`, on CPU.

    Reads safetensors (Qwen2.5-Math-PRM ships four shards) or ``pytorch_model.bin``
    (Skywork-o1-Open-PRM ships one, loaded with ``weights_only=True``), sharded
    (an index file) or not.

    Raises:
        FileNotFoundError: no checkpoint in `folder`.
        KeyError: a name is not in the checkpoint (the message lists what is missing).
    """
    import json

    for index_name, single in CHECKPOINT_FILES:
        index = folder / index_name
        if index.is_file():
            weight_map: dict[str, str] = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = sorted({weight_map[name] for name in names if name in weight_map})
            break
        if (folder / single).is_file():
            files = [single]
            break
    else:
        expected = ", ".join(name for pair in CHECKPOINT_FILES for name in pair)
        raise FileNotFoundError(f"{folder}: no checkpoint (looked for {expected})")
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        tensors.update(_read_tensors(folder / file, names))
    absent = [name for name in names if name not in tensors]
    if absent:
        raise KeyError(f"{folder}: the checkpoint has no {absent} (is this the right model?)")
    return tensors


def _read_tensors(path: Path, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Those of `names` that the checkpoint file `path` holds."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(path, framework="pt") as handle:
            present = set(handle.keys())
            return {name: handle.get_tensor(name) for name in names if name in present}
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # mmap: no full read for a few tensors
    return {name: state[name].clone() for name in names if name in state}


def load_backbone(
    folder: Path, device: str | None, dtype: str | None, head_prefixes: Sequence[str]
) -> PreTrainedModel:
    """The base transformer of the checkpoint in `folder` (`AutoModel`, no remote code).

    The checkpoint's own head (keys starting with `head_prefixes`, and any
    ``lm_head``) is left out on purpose; the caller reads it with
    `checkpoint_tensors`. transformers' load report is shown only when something
    else is missing or unused.

    Raises:
        ValueError: backbone weights are missing from the checkpoint.
    """
    target = pick_device(device)
    with _held_load_reports() as reports:
        model, info = AutoModel.from_pretrained(
            folder, dtype=pick_dtype(target, dtype), trust_remote_code=False, output_loading_info=True
        )
    if info.get("missing_keys"):
        raise ValueError(f"{folder}: backbone weights missing from the checkpoint: {sorted(info['missing_keys'])[:5]}")
    expected = (*head_prefixes, "lm_head.")
    others = [key for key in info.get("unexpected_keys", ()) if not key.startswith(expected)]
    if others or info.get("mismatched_keys") or info.get("error_msgs"):
        for record in reports:
            logging.getLogger(record.name).handle(record)
    return model.to(target).eval()


def head_on(tensors: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Head tensors as float32 on `device` (heads run in float32, as Skywork's value head does)."""
    return {name: tensor.to(device=device, dtype=torch.float32) for name, tensor in tensors.items()}


def parameter_count(model: PreTrainedModel, head: dict[str, torch.Tensor] | None = None) -> int:
    """Parameters of `model` plus those of a separately held head."""
    return sum(p.numel() for p in model.parameters()) + sum(t.numel() for t in (head or {}).values())
