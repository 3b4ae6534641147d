"""Token-by-token decoding from a `prefix_cache.Read`: what `HFPolicy` samples with.

`generate` reads every prompt whole; decoding from a `Read` starts from prompts
whose cached prefixes were not read again, and from one read of a prompt
shared by all its samples (`expand`). Each step runs the logits processors on
the float32 logits, then takes the argmax (greedy) or draws from the softmax
(sampling: pass the temperature and top-p warpers as processors), as
`generate` does; a row stops at its first stop token and pads after it.
"""

from __future__ import annotations

from collections.abc import Collection

import torch
from transformers import DynamicCache, LogitsProcessorList

from agents.models.prefix_cache import Read, cache_argument


def expand(start: Read, copies: int) -> Read:
    """`start` with every row repeated `copies` times in a row (a new cache; `start` is unchanged)."""
    if copies == 1:
        return start
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


@torch.inference_mode()
def decode(
    model: torch.nn.Module,
    start: Read,
    processors: LogitsProcessorList,
    *,
    greedy: bool,
    stop_ids: Collection[int],
    max_new_tokens: int,
    pad_id: int,
) -> list[list[int]]:
    """Continue each row of `start` (its last output: next-token logits) for up to
    `max_new_tokens` tokens; the tokens of each row, up to and including its first stop."""
    logits = start.outputs[:, -1]
    cache, mask, positions = start.cache, start.attention_mask, start.next_positions
    batch, device = logits.shape[0], logits.device
    stops = torch.tensor(sorted(stop_ids), device=device)
    generated = torch.empty((batch, 0), dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    argument = cache_argument(model)
    for step in range(max_new_tokens):
        scores = processors(generated, logits.float())
        if greedy:
            tokens = scores.argmax(dim=-1)
        else:
            tokens = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        tokens = torch.where(done, torch.full_like(tokens, pad_id), tokens)
        generated = torch.cat([generated, tokens[:, None]], dim=1)
        done |= torch.isin(tokens, stops)
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones((batch, 1), dtype=mask.dtype, device=device)], dim=1)
        outputs = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=positions[:, None],
                        use_cache=True, logits_to_keep=1, **{argument: cache})  # fmt: skip
        positions = positions + 1
        logits = outputs.logits[:, -1]
    rows = []
    stop_set = set(stop_ids)
    for row in generated.tolist():
        end = next((k + 1 for k, token in enumerate(row) if token in stop_set), len(row))
        rows.append(row[:end])
    return rows
