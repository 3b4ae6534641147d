"""Token-by-token decoding from a `prefix_cache.Read`: what `HFPolicy` samples with.

`generate` reads every prompt whole; decoding from a `Read` starts from prompts
whose cached prefixes were not read again, and from one read of a prompt
shared by all its samples (`expand`). Each step runs the logits processors on
the float32 logits, then takes the argmax (greedy) or draws from the softmax
(sampling: pass the temperature and top-p warpers as processors), as
`generate` does; a row that reaches a stop token leaves the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import torch
from transformers import DynamicCache, LogitsProcessorList

from agents.models.prefix_cache import Read, cache_argument


def expand(start: Read, copies: int) -> Read:
    """`start` with every row repeated `copies` times in a row, in a new cache (`decode`
    appends to the cache it is given, so a read decoded more than once needs copies)."""
    cache = DynamicCache()
    for index, layer in enumerate(start.cache.layers):
        cache.update(layer.keys.repeat_interleave(copies, 0), layer.values.repeat_interleave(copies, 0), index)
    return Read(
        outputs=start.outputs.repeat_interleave(copies, 0),
        cache=cache,
        attention_mask=start.attention_mask.repeat_interleave(copies, 0),
        next_positions=start.next_positions.repeat_interleave(copies, 0),
        computed=start.computed,
        reused=start.reused,
    )


@dataclass(frozen=True)
class Decoded:
    """What `decode` wrote: per row, its tokens (up to and including its first stop) and, when
    asked, each token's log-probability under the model at the given temperature."""

    tokens: list[list[int]]
    log_probs: list[list[float]] | None = None


@torch.inference_mode()
def decode(
    model: torch.nn.Module,
    start: Read,
    processors_for: Callable[[list[int]], LogitsProcessorList],
    *,
    greedy: bool,
    stop_ids: Collection[int],
    max_new_tokens: int,
    log_probs_at: float | None = None,
) -> Decoded:
    """Continue each row of `start` (its last output: next-token logits) for up to
    `max_new_tokens` tokens.

    A row that stops leaves the batch (its cache rows are dropped), so a call costs
    what each row needs, not batch x its longest row. ``processors_for(rows)``: the
    logits processors for the rows still in the batch (indices into `start`'s rows).
    With `log_probs_at` = T, also each token's log-probability under the model's
    own distribution at temperature T (before the processors), in float64.
    """
    logits = start.outputs[:, -1]
    cache, mask, positions = start.cache, start.attention_mask, start.next_positions
    device = logits.device
    stops = torch.tensor(sorted(stop_ids), device=device)
    live = list(range(logits.shape[0]))
    rows: list[list[int]] = [[] for _ in live]
    row_logs: list[list[float]] = [[] for _ in live]
    generated = torch.empty((len(live), 0), dtype=torch.long, device=device)  # the live rows' tokens so far
    logs = torch.empty((len(live), 0), dtype=torch.float64, device=device)
    processors = processors_for(live)
    argument = cache_argument(model)
    for step in range(max_new_tokens):
        scores = processors(generated, logits.float())
        if greedy:
            tokens = scores.argmax(dim=-1)
        else:
            tokens = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        generated = torch.cat([generated, tokens[:, None]], dim=1)
        if log_probs_at is not None:
            base = torch.log_softmax(logits.double() / log_probs_at, dim=-1).gather(1, tokens[:, None])
            logs = torch.cat([logs, base], dim=1)
        stopped = torch.isin(tokens, stops)
        if step == max_new_tokens - 1 or bool(stopped.all()):
            break
        if bool(stopped.any()):
            for k in stopped.nonzero().squeeze(1).tolist():
                rows[live[k]], row_logs[live[k]] = generated[k].tolist(), logs[k].tolist()
            keep = (~stopped).nonzero().squeeze(1)
            live = [live[k] for k in keep.tolist()]
            generated, logs, tokens = generated[keep], logs[keep], tokens[keep]
            mask, positions = mask[keep], positions[keep]
            cache.batch_select_indices(keep)
            processors = processors_for(live)
        mask = torch.cat([mask, torch.ones((len(live), 1), dtype=mask.dtype, device=device)], dim=1)
        outputs = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=positions[:, None],
                        use_cache=True, logits_to_keep=1, **{argument: cache})  # fmt: skip
        positions = positions + 1
        logits = outputs.logits[:, -1]
    for k, (row, row_log) in enumerate(zip(generated.tolist(), logs.tolist())):
        rows[live[k]], row_logs[live[k]] = row, row_log
    stop_set = set(stop_ids)
    ends = [next((k + 1 for k, token in enumerate(row) if token in stop_set), len(row)) for row in rows]
    tokens_out = [row[:end] for row, end in zip(rows, ends)]
    if log_probs_at is None:
        return Decoded(tokens_out)
    return Decoded(tokens_out, [row_log[:end] for row_log, end in zip(row_logs, ends)])
