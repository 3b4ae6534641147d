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

import math
from collections.abc import Sequence

import torch
from transformers import LogitsProcessor

Masses = dict[tuple[int, ...], dict[int, float]]
"""{generated prefix: {next token: log(1 - c(prefix, token)), the log share of its mass left}}."""


def taken_masses(sequences: Sequence[Sequence[int]], log_probabilities: Sequence[Sequence[float]]) -> Masses:
    """log(1 - c(g, t)) for every prefix g and next token t of the taken `sequences`.

    ``log_probabilities[k][j]`` is log p(s_j | s_<j) of token j of sequence k under
    the sampling distribution (the prompt before it). Sums of logs and ``expm1``
    keep the share left exact when the taken steps hold nearly all of a token's
    mass (a low temperature): 1 - c computed from probabilities rounds to 0 there,
    and the token would look used up while mass is left.
    """
    suffixes: dict[tuple[int, ...], dict[int, list[float]]] = {}
    for tokens, logs in zip(sequences, log_probabilities):
        suffix = 0.0  # sum_{j > i} log p(s_j | s_<j), built from the end
        for i in range(len(tokens) - 1, -1, -1):
            suffixes.setdefault(tuple(tokens[:i]), {}).setdefault(tokens[i], []).append(suffix)
            suffix += logs[i]
    return {
        prefix: {token: _log_one_minus(_log_sum_exp(logs)) for token, logs in shares.items()}
        for prefix, shares in suffixes.items()
    }


def _log_sum_exp(logs: list[float]) -> float:
    top = max(logs)
    return top + math.log(sum(math.exp(x - top) for x in logs))


def _log_one_minus(log_c: float) -> float:
    """log(1 - exp(log_c)); -inf when c >= 1 (every step through the token is taken)."""
    return math.log(-math.expm1(log_c)) if log_c < 0 else -math.inf


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
            adjusted = scores[row].clone()
            adjusted[tokens] += torch.tensor(list(shares.values()), device=scores.device, dtype=scores.dtype)
            if torch.isfinite(adjusted).any():  # every step taken: leave the row as it was (the caller filters)
                scores[row] = adjusted
        return scores
