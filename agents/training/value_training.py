"""Training the PRM by soft-label regression with transformers' `Trainer`.

ReST-MCTS* regresses soft quality values in [0, 1]. TRL's PRMTrainer casts labels
to int (and is gone from TRL >= 1.14), so the value head is trained here with
binary cross-entropy on soft targets: the model's logit passes through a sigmoid,
as `HFValueModel` does at inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from datasets import Dataset
from transformers import DataCollatorWithPadding, PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainingArguments

from agents.training.trainer_args import common_training_args, run_trainer, schedule_args


@dataclass(frozen=True)
class ValueSettings:
    """Hyperparameters of PRM training.

    Attributes:
        max_steps: optimizer steps.
        batch_size: states per optimizer step.
        learning_rate: peak learning rate (cosine decay after warm-up).
        max_length: longest input in tokens (longer inputs keep their last tokens).
    """

    max_steps: int = 600
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    max_length: int = 768
    logging_steps: int = 50


class SoftTargetTrainer(Trainer):
    """A `Trainer` whose loss is BCE-with-logits between the scalar head and soft targets."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        targets = inputs.pop("labels").float()
        outputs = model(**inputs)
        logits = outputs.logits.squeeze(-1).float()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
        return (loss, outputs) if return_outputs else loss


def live_repeats(targets: Sequence[float], depths: Sequence[int]) -> list[int]:
    """How often each value row is used so that live and dead rows weigh alike at each depth.

    A live row (target > 0: its state is still on a path to a correct answer) is
    used max(1, round(dead / live)) times, dead and live counted among the rows of
    its depth (steps taken); a dead row once. Why: on a planning task most deep
    states are dead ends (3% of the two-number boards of Countdown `basic` are
    live), and a PRM trained on them as they come learns the base rate, not the
    board: its loss stays at that rate's entropy and it ranks unseen boards at
    chance (README, "balanced D_V0").
    """
    if len(targets) != len(depths):
        raise ValueError(f"{len(targets)} targets but {len(depths)} depths")
    live: dict[int, int] = {}
    dead: dict[int, int] = {}
    for target, depth in zip(targets, depths):
        counts = live if target > 0 else dead
        counts[depth] = counts.get(depth, 0) + 1
    repeats = {depth: max(1, round(dead.get(depth, 0) / count)) for depth, count in live.items()}
    return [repeats[depth] if target > 0 else 1 for target, depth in zip(targets, depths)]


def rehearsal_rows(size: int, count: int, seed: int) -> list[int]:
    """Indices of `count` rows drawn from `size` rows for a rehearsal (`ValueTraining.replay`).

    Whole passes in fresh seeded orders, then part of one more, so no row is used
    twice before every row is used once; the first pass is the order
    ``Dataset.shuffle(seed=seed)`` gives (the same generator), so a count of at
    most `size` selects what ``shuffle(seed=seed).select(range(count))`` did.
    """
    if size <= 0 and count > 0:
        raise ValueError(f"cannot draw {count} rows from an empty dataset")
    generator = np.random.default_rng(seed)
    rows: list[int] = []
    while len(rows) < count:
        rows += generator.permutation(size)[: count - len(rows)].tolist()
    return rows


def tokenize_value_dataset(dataset: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int) -> Dataset:
    """``{"text", "target"}`` rows to ``input_ids``/``attention_mask``/``labels``."""
    missing = {"text", "target"} - set(dataset.column_names)
    if missing:
        raise ValueError(f"value dataset lacks column(s) {sorted(missing)}; has {dataset.column_names}")
    tokenizer.truncation_side = "left"

    def encode(batch):
        encoded = tokenizer(batch["text"], truncation=True, max_length=max_length)
        encoded["labels"] = [float(t) for t in batch["target"]]
        return encoded

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="tokenize value data")


def train_value_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset: Dataset,
    settings: ValueSettings,
    output_dir: str,
    seed: int = 0,
    show_progress: bool = True,
    description: str = "train PRM",
) -> PreTrainedModel:
    """Fit `model` (one-output sequence classifier) to the ``target`` column of `dataset`.

    `description` names the progress bar and the log line of the run.
    """
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    args = TrainingArguments(
        output_dir=output_dir,
        **schedule_args(settings, show_progress),
        **common_training_args(seed),
    )
    trainer = SoftTargetTrainer(
        model=model,
        args=args,
        train_dataset=tokenize_value_dataset(dataset, tokenizer, settings.max_length),
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
    )
    run_trainer(trainer, description, show_progress)
    model.eval()
    return trainer.model
