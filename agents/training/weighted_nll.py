"""Score-weighted NLL with a KL penalty (Li et al. 2025, arXiv 2501.01478), the third baseline.

Li et al. label each step of an MCTS tree by its *relative correctness* (how much
better its subtree does than its siblings', `tree_targets.relative_correctness`)
and train the policy on the steps with

    L(theta) = mean over steps (s, p) of  w(s) * NLL_theta(s | p)
               + kl_coef * mean over steps of  KL(pi_theta(. | p, s_<t) || pi_{i-1}(. | p, s_<t))

where p is the partial solution before step s, NLL is the mean negative
log-likelihood of the step's tokens, w(s) its relative-correctness score in
[-1, 1] (negative weights push probability away from steps worse than their
siblings), and the KL is the exact per-token KL over the vocabulary to the
previous iteration's policy (a frozen copy), averaged over the step's tokens. The
KL keeps the policy near pi_{i-1}, which bounds what the negative weights can do.

`WeightedNLLTrainer` is a small subclass of transformers' `Trainer` that only
overrides `compute_loss`; everything else (optimizer, schedule, batching,
devices) is the Trainer's. With ``method: weighted_nll`` the `SelfTrainer` collects
data exactly as ReST-MCTS* does (the same MCTS* search, hence the same sampled
tokens) and trains the policy on the relative-correctness rows of `label_tree`;
the PRM is not trained.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainingArguments

from agents.training.trainer_args import common_training_args, run_trainer, schedule_args
from reasoning_gym.tasks import Task

IGNORE = -100


@dataclass(frozen=True)
class WeightedNLLSettings:
    """Hyperparameters of weighted-NLL training.

    Attributes:
        max_steps: optimizer steps.
        batch_size: steps (rows) per optimizer step.
        learning_rate: peak learning rate (cosine decay after warm-up).
        kl_coef: weight of the KL penalty to the previous policy.
        max_length: longest prefix + step in tokens (the prefix loses its first tokens).
        keep_zero_weight: also train on steps whose score is 0 (they contribute
            only the KL term); off by default, which saves their compute.
    """

    max_steps: int = 200
    batch_size: int = 16
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    kl_coef: float = 0.1
    max_length: int = 768
    keep_zero_weight: bool = False
    logging_steps: int = 50


def step_rows(
    relative_rows: Sequence[dict[str, Any]], tasks: Mapping[str, Task], keep_zero_weight: bool = False
) -> list[dict[str, Any]]:
    """Relative-correctness rows ``{"text", "score", "problem_id", ...}`` -> ``{"prompt", "completion", "weight"}``.

    ``text`` is the rendered state after the step; its last line is the step
    (``"Step k: ...\\n"``). The prompt is everything before the step plus its
    ``"Step k:"`` label; the completion is what the policy wrote for the step
    (`Task.written_step` of the row's task, ``tasks[problem_id]``): a Countdown
    move up to its ``"="``, without the result and the board the engine wrote.
    Weighting the label or the engine's text would train tokens the policy does
    not choose: with mostly negative weights (illegal and losing moves) that
    pushed down ``"Step 2:"`` itself and collapsed the policy.
    """
    rows = []
    for row in relative_rows:
        if not keep_zero_weight and row["score"] == 0:
            continue
        head, _, line = row["text"].rstrip("\n").rpartition("\n")
        label, _, step = line.partition(":")
        completion = tasks[row["problem_id"]].written_step(step.strip())
        rows.append({"prompt": f"{head}\n{label}:", "completion": completion, "weight": float(row["score"])})
    return rows


def tokenize_weighted(dataset: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int) -> Dataset:
    """``{"prompt", "completion", "weight"}`` -> ``input_ids``, ``labels`` (prompt masked), ``weight``."""

    def encode(row: dict[str, Any]) -> dict[str, Any]:
        prompt = tokenizer(row["prompt"])["input_ids"]
        completion = tokenizer(row["completion"], add_special_tokens=False)["input_ids"][:max_length]
        prompt = prompt[max(0, len(prompt) + len(completion) - max_length) :]
        return {
            "input_ids": prompt + completion,
            "labels": [IGNORE] * len(prompt) + completion,
            "weight": float(row["weight"]),
        }

    return dataset.map(encode, remove_columns=dataset.column_names, desc="tokenize weighted steps")


def collate(pad_id: int):
    """Right-pad ``input_ids`` (with `pad_id`) and ``labels`` (with -100); stack weights."""

    def collate_fn(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), pad_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            ids[row, :n] = torch.tensor(feature["input_ids"])
            labels[row, :n] = torch.tensor(feature["labels"])
            mask[row, :n] = 1
        weights = torch.tensor([float(f["weight"]) for f in features])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, "weight": weights}

    return collate_fn


class WeightedNLLTrainer(Trainer):
    """A `Trainer` whose loss is the score-weighted step NLL plus `kl_coef` x KL to `ref_model`."""

    def __init__(self, *args: Any, ref_model: PreTrainedModel, kl_coef: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ref_model = ref_model.eval().requires_grad_(False).to(self.args.device)
        self.kl_coef = kl_coef

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        weights = inputs.pop("weight").float()
        labels = inputs.pop("labels")[:, 1:]
        outputs = model(**inputs)
        logprobs = F.log_softmax(outputs.logits[:, :-1].float(), dim=-1)
        mask = (labels != IGNORE).float()
        tokens = mask.sum(dim=1).clamp(min=1.0)
        token_logprobs = logprobs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        nll = -(token_logprobs * mask).sum(dim=1) / tokens
        loss = (weights * nll).mean()
        if self.kl_coef:
            with torch.no_grad():
                ref_logprobs = F.log_softmax(self.ref_model(**inputs).logits[:, :-1].float(), dim=-1)
            kl = (logprobs.exp() * (logprobs - ref_logprobs)).sum(dim=-1)
            loss = loss + self.kl_coef * ((kl * mask).sum(dim=1) / tokens).mean()
        return (loss, outputs) if return_outputs else loss


def train_weighted_nll(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset: Dataset,
    settings: WeightedNLLSettings,
    output_dir: str,
    seed: int = 0,
    ref_model: PreTrainedModel | None = None,
    show_progress: bool = True,
) -> PreTrainedModel:
    """Train `model` on ``{"prompt", "completion", "weight"}`` rows (`step_rows`); returns it.

    `ref_model` (the KL anchor) defaults to a frozen deep copy of `model` before training.
    """
    if ref_model is None:
        ref_model = copy.deepcopy(model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    args = TrainingArguments(
        output_dir=output_dir,
        **schedule_args(settings, show_progress),
        **{**common_training_args(seed), "remove_unused_columns": False},  # keep the weight column
    )
    trainer = WeightedNLLTrainer(
        model=model,
        args=args,
        train_dataset=tokenize_weighted(dataset, tokenizer, settings.max_length),
        data_collator=collate(tokenizer.pad_token_id),
        ref_model=ref_model,
        kl_coef=settings.kl_coef,
    )
    run_trainer(trainer, "train policy (weighted NLL)", show_progress)
    model.eval()
    return trainer.model
