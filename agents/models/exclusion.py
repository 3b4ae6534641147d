"""Sampling steps without replacement: a logits processor that takes out the steps already taken.

A search that asks a node for new steps wants steps it does not have yet. A
peaked policy sampled again mostly repeats its likeliest steps, and each repeat
costs its tokens and brings nothing (on Countdown a quarter of the 16x MCTS*
searches ended with budget left because every node had closed that way).

`ExcludeTaken` makes `generate` sample from the policy's distribution over
whole steps *conditioned on not being one of the taken steps* (incremental
sampling without replacement, Shi et al. 2020, "Incremental Sampling Without
Replacement for Sequence Models"). For the taken token sequences of a row
(each ending in a stop token, so none is a prefix of another) and their
per-token probabilities under the sampling distribution, at the generated
prefix g the next token t is drawn from

    p'(t | g)  proportional to  p(t | g) * (1 - c(g, t)),
    c(g, t) = sum over taken s that continue g with t of  prod_{j > |g|} p(s_j | s_<j),

the share of the mass under g + t that the taken steps hold. Multiplied along a
step this gives P(step) / (1 - P(taken)) for a new step and 0 for a taken one.
The processor applies the temperature itself (`generate` is then called at
temperature 1), so the reweighting acts on the distribution that is sampled.
Exact with ``top_p = 1``; with nucleus sampling, top-p truncates the reweighted
distribution.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import LogitsProcessor

Masses = dict[tuple[int, ...], dict[int, float]]
"""{generated prefix: {next token: share c(prefix, token) of its mass the taken steps hold}}."""


def taken_masses(sequences: Sequence[Sequence[int]], probabilities: Sequence[Sequence[float]]) -> Masses:
    """c(g, t) for every prefix g and next token t of the taken `sequences`.

    ``probabilities[k][j]`` is p(s_j | s_<j) of token j of sequence k under the
    sampling distribution (the prompt before it).
    """
    masses: Masses = {}
    for tokens, probs in zip(sequences, probabilities):
        suffix = 1.0  # prod_{j > i} p(s_j | s_<j), built from the end
        for i in range(len(tokens) - 1, -1, -1):
            entry = masses.setdefault(tuple(tokens[:i]), {})
            entry[tokens[i]] = entry.get(tokens[i], 0.0) + suffix
            suffix *= probs[i]
    return masses


class ExcludeTaken(LogitsProcessor):
    """Reweights each row's next-token log-probabilities so that no taken step is sampled.

    Args:
        masses: per row of the batch, the `taken_masses` of its taken steps (empty: no change).
        prompt_length: the padded prompt length of the batch (generated tokens start there).
        temperature: the sampling temperature, applied here (1 for greedy decoding).
    """

    def __init__(self, masses: Sequence[Masses], prompt_length: int, temperature: float) -> None:
        self.masses = list(masses)
        self.prompt_length = prompt_length
        self.temperature = temperature

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        generated = input_ids[:, self.prompt_length :].tolist()
        for row, masses in enumerate(self.masses):
            shares = masses.get(tuple(generated[row])) if masses else None
            if not shares:
                continue  # this row has left every taken step (or has none)
            tokens = torch.tensor(list(shares), device=scores.device)
            left = 1.0 - torch.tensor(list(shares.values()), device=scores.device, dtype=scores.dtype)
            adjusted = scores[row].clone()
            adjusted[tokens] += torch.log(left.clamp(min=0.0))
            if torch.isfinite(adjusted).any():  # every step taken: leave the row as it was (the caller filters)
                scores[row] = adjusted
        return scores
