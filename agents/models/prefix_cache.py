"""Shared-prefix reuse: the keys and values of token prefixes a decoder has already read.

A search reads the same prefixes again and again: a node's prompt for every
proposal asked of it, then again, extended by one step, for each child; a PRM
reads a tree's boards, which all start with the rules and the target.
`PrefixCache` keeps the KV of prefixes read before (least recently used go
first once `max_tokens` is reached), and `read` reads a batch of token rows
computing only what no cached prefix covers. Row r is laid out as

    [padding][cached prefix: c_r tokens][padding][new suffix: s_r tokens]

The cached parts are copied into one batched `DynamicCache`, and the suffixes go
through the model in one forward pass with explicit positions (c_r + j) and an
attention mask that hides both paddings, so a row's outputs equal those of an
unpadded, uncached read up to float rounding (rotary keys are stored at their
absolute positions, which the layout keeps).

Entries are stored as deltas: an entry holds the KV of its own tokens past the
prefix it was read on and points to that prefix's entry, so a tree's shared
prompt is held once however many nodes extend it. A search drops a problem's
prefixes when the problem's search ends (`drop`, through `HFPolicy.forget`);
what is left over goes least recently used first.

Works with decoders whose `forward` takes ``position_ids``, an attention mask
over cache + input and a `DynamicCache` (Llama, Mistral, Qwen2, GPT-2, ...).
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache


@dataclass(eq=False)
class _Entry:
    """The KV of ``ids[start:]``; ``ids[:start]`` is held by `parent` (None when start is 0)."""

    ids: tuple[int, ...]
    parent: _Entry | None
    start: int
    kv: torch.Tensor  # [layers, 2 (keys, values), heads, len(ids) - start, head_dim]


class PrefixCache:
    """Stored prefixes of token rows, looked up by the longest one a row starts with."""

    def __init__(self, max_tokens: int) -> None:
        if max_tokens < 1:
            raise ValueError(f"PrefixCache.max_tokens must be >= 1, got {max_tokens}")
        self.max_tokens = max_tokens
        self.tokens = 0  # tokens held by the entries in the index
        self._index: OrderedDict[tuple[int, int], _Entry] = OrderedDict()  # (length, prefix hash) -> entry

    def __len__(self) -> int:
        return len(self._index)

    def clear(self) -> None:
        self._index.clear()
        self.tokens = 0

    def longest(self, ids: Sequence[int], hashes: Sequence[int]) -> _Entry | None:
        """The stored entry with the longest ids that `ids` starts with (`hashes`: `prefix_hashes(ids)`)."""
        for length in range(len(ids), 0, -1):
            key = (length, hashes[length - 1])
            entry = self._index.get(key)
            if entry is not None and entry.ids == tuple(ids[:length]):
                self._index.move_to_end(key)
                return entry
        return None

    def get(self, ids: Sequence[int], hashes: Sequence[int]) -> _Entry | None:
        """The entry stored for exactly `ids`, if any."""
        entry = self._index.get((len(ids), hashes[len(ids) - 1])) if ids else None
        return entry if entry is not None and entry.ids == tuple(ids) else None

    def drop(self, prefix: Sequence[int]) -> int:
        """Forget every entry whose ids start with `prefix` (a closed problem's prompts); how many."""
        head = tuple(prefix)
        gone = [key for key, entry in self._index.items() if entry.ids[: len(head)] == head]
        for key in gone:
            entry = self._index.pop(key)
            self.tokens -= len(entry.ids) - entry.start
        return len(gone)

    def put(self, entry: _Entry, hash_: int) -> None:
        """Store `entry` (its ids' `prefix_hashes` last value: `hash_`); evict the least recently used."""
        key = (len(entry.ids), hash_)
        if key in self._index:
            return
        self._index[key] = entry
        self.tokens += len(entry.ids) - entry.start
        while self.tokens > self.max_tokens and self._index:
            _, old = self._index.popitem(last=False)
            self.tokens -= len(old.ids) - old.start


def prefix_hashes(ids: Sequence[int]) -> list[int]:
    """``hashes[k]``: a hash of ``ids[: k + 1]`` (one pass, so every prefix can be looked up)."""
    hashes, value = [], 0
    for token in ids:
        value = hash((value, token))
        hashes.append(value)
    return hashes


def shared_prefix_lengths(rows: Sequence[Sequence[int]]) -> list[set[int]]:
    """Per row, the lengths of the longest prefixes it shares with another row (its neighbours
    in sorted order), worth storing: later rows will likely start with them too."""
    order = sorted(range(len(rows)), key=lambda r: rows[r])
    shared: list[set[int]] = [set() for _ in rows]
    for a, b in zip(order, order[1:]):
        length = 0
        for x, y in zip(rows[a], rows[b]):
            if x != y:
                break
            length += 1
        if length:
            shared[a].add(length)
            shared[b].add(length)
    return shared


@dataclass
class Read:
    """What `read` computed for a batch of B rows.

    Attributes:
        outputs: the model's outputs at the last `keep` columns, [B, keep, ...]; a
            row's last token is the last column (shorter suffixes are left-padded).
        cache: the batch's KV (cached prefixes + suffixes), to continue decoding.
        attention_mask: [B, cache width], 1 on real tokens.
        next_positions: [B], the position of each row's next token.
        computed: tokens run through the model, per row.
        reused: tokens served from the prefix cache, per row.
    """

    outputs: torch.Tensor
    cache: DynamicCache
    attention_mask: torch.Tensor
    next_positions: torch.Tensor
    computed: list[int]
    reused: list[int]


def read(
    model: torch.nn.Module,
    rows: Sequence[Sequence[int]],
    prefix_cache: PrefixCache | None,
    *,
    reuse_up_to: Sequence[int] | None = None,
    keep: int = 1,
    store_at: Sequence[set[int]] | None = None,
    pad_id: int = 0,
) -> Read:
    """Run `rows` through `model` (a decoder: logits or hidden states come out), reusing cached prefixes.

    Args:
        model: called as ``model(input_ids, attention_mask, position_ids, <cache>, use_cache=True)``;
            its first output (``logits`` or ``last_hidden_state``) is returned.
        rows: token ids, one list per row (none empty).
        prefix_cache: where prefixes are looked up and stored; None reads every row whole.
        reuse_up_to: per row, the most leading tokens taken from the cache (default:
            all but the last, whose output is always needed); the outputs of the last
            `keep` tokens must be computed, so keep it <= len(row) - keep.
        keep: how many trailing columns of outputs to return.
        store_at: per row, prefix lengths to store (besides the whole row), e.g.
            those shared with other rows (`shared_prefix_lengths`).
        pad_id: the token id put in padding (masked out).
    """
    batch = len(rows)
    hashes = [prefix_hashes(row) if prefix_cache is not None else [] for row in rows]  # only to look up and store
    limits = [len(row) - 1 for row in rows] if reuse_up_to is None else list(reuse_up_to)
    found: list[tuple[_Entry | None, int]] = []
    for row, row_hashes, limit in zip(rows, hashes, limits):
        entry = prefix_cache.longest(row, row_hashes) if prefix_cache is not None and limit > 0 else None
        found.append((entry, 0 if entry is None else min(len(entry.ids), limit)))
    cached = [length for _, length in found]
    width = max(cached)
    suffix = max(len(row) - c for row, c in zip(rows, cached))
    device = next(model.parameters()).device
    input_ids = torch.full((batch, suffix), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((batch, width + suffix), dtype=torch.long, device=device)
    positions = torch.zeros((batch, suffix), dtype=torch.long, device=device)
    for r, (row, c) in enumerate(zip(rows, cached)):
        s = len(row) - c
        input_ids[r, suffix - s :] = torch.tensor(row[c:], device=device)
        mask[r, width - c : width] = 1
        mask[r, width + suffix - s :] = 1
        positions[r, suffix - s :] = torch.arange(c, len(row), device=device)
    past = _batch_cache(model, found, width, device)  # the forward pass appends the suffixes' KV
    outputs = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                    **{cache_argument(model): past})  # fmt: skip
    if prefix_cache is not None:
        _store(prefix_cache, past, rows, hashes, found, width + suffix, store_at)
    return Read(
        outputs=outputs[0][:, -keep:],
        cache=past,
        attention_mask=mask,
        next_positions=torch.tensor([len(row) for row in rows], device=device),
        computed=[len(row) - c for row, c in zip(rows, cached)],
        reused=cached,
    )


def _batch_cache(model: torch.nn.Module, found: list[tuple[_Entry | None, int]], width: int, device) -> DynamicCache:
    """A `DynamicCache` holding each row's cached prefix right-aligned in `width` columns."""
    past = DynamicCache(config=model.config)
    if width == 0:
        return past
    template = next(entry for entry, _ in found if entry is not None).kv
    layers, _, heads, _, dim = template.shape
    batch = torch.zeros((layers, 2, len(found), heads, width, dim), dtype=template.dtype, device=device)
    for r, (entry, length) in enumerate(found):
        offset = width - length
        for part, low, high in _segments(entry, length):  # one copy per segment, all layers at once
            batch[:, :, r, :, offset + low : offset + high] = part.kv[:, :, :, low - part.start : high - part.start]
    for layer in range(layers):
        past.update(batch[layer, 0], batch[layer, 1], layer)
    return past


def _segments(entry: _Entry | None, length: int) -> list[tuple[_Entry, int, int]]:
    """(entry, low, high): which entry of the chain holds positions [low, high) of the first `length`."""
    segments, high = [], length
    while entry is not None and high > 0:
        if high > entry.start:
            segments.append((entry, entry.start, high))
            high = entry.start
        entry = entry.parent
    return segments


def _store(
    prefix_cache: PrefixCache,
    kv: DynamicCache,
    rows: Sequence[Sequence[int]],
    hashes: list[list[int]],
    found: list[tuple[_Entry | None, int]],
    total: int,
    store_at: Sequence[set[int]] | None,
) -> None:
    """Store each row whole and at its `store_at` lengths, as a chain of deltas from its cached prefix."""
    stacked: torch.Tensor | None = None  # the batch's KV as one [L, 2, B, H, W, D] tensor, once a new entry needs it
    for r, (row, (parent, cached)) in enumerate(zip(rows, found)):
        offset = total - len(row)  # the column of the row's position 0
        lengths = sorted({length for length in (store_at[r] if store_at else ()) if cached < length < len(row)})
        start = cached
        for length in [*lengths, len(row)]:
            existing = prefix_cache.get(row[:length], hashes[r])
            if existing is None:
                if stacked is None:
                    stacked = torch.stack([torch.stack((layer.keys, layer.values)) for layer in kv.layers])
                existing = _Entry(
                    ids=tuple(row[:length]),
                    parent=parent if start > 0 else None,
                    start=start,
                    kv=stacked[:, :, r, :, offset + start : offset + length].clone(),
                )
                prefix_cache.put(existing, hashes[r][length - 1])
            parent, start = existing, length


_CACHE_ARGUMENT: dict[type, str] = {}


def cache_argument(model: torch.nn.Module) -> str:
    """The name `model.forward` takes the KV cache by (``cache`` since transformers 5.x, else
    ``past_key_values``)."""
    kind = type(model)
    if kind not in _CACHE_ARGUMENT:
        parameters = inspect.signature(model.forward).parameters
        _CACHE_ARGUMENT[kind] = "cache" if "cache" in parameters else "past_key_values"
    return _CACHE_ARGUMENT[kind]
