"""Training arguments that work on a CPU laptop and on a GPU alike.

TRL and transformers default to bf16 and sometimes gradient checkpointing; on a
CPU both fail or crawl. This is the one place that decides device-dependent
arguments, so every trainer in the project gets the same, working choice.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

logger = logging.getLogger(__name__)

_FIELDS = {f.name for f in dataclasses.fields(TrainingArguments)}
# transformers 5.x renamed gradient checkpointing to activation checkpointing and
# warns on the old name; TRL configs still default the old name to True.
_CHECKPOINTING = "activation_checkpointing" if "activation_checkpointing" in _FIELDS else "gradient_checkpointing"
# Batches are drawn uniformly at random, never grouped by length. Length grouping
# saves about a third of the padding but fills each batch with look-alike examples
# (same operand and result widths), and the tiny models then barely learned: on
# arithmetic drills, 1,000 grouped steps left a model that copied 0 of 30 operands,
# while 400 random-batch steps copied 30 and computed 24 of 30 results.
_RANDOM_BATCHES = (
    {"train_sampling_strategy": "random"} if "train_sampling_strategy" in _FIELDS else {"group_by_length": False}
)


def schedule_args(settings: Any, show_progress: bool) -> dict[str, Any]:
    """The optimisation schedule every trainer here shares, from a settings dataclass.

    `settings` has ``max_steps``, ``batch_size``, ``learning_rate``, ``warmup_ratio``,
    ``weight_decay`` and ``logging_steps``: a linear warm-up over that share of the
    steps, then cosine decay.
    """
    return {
        "max_steps": settings.max_steps,
        "per_device_train_batch_size": settings.batch_size,
        "learning_rate": settings.learning_rate,
        "lr_scheduler_type": "cosine",
        "warmup_steps": max(1, round(settings.warmup_ratio * settings.max_steps)),
        "weight_decay": settings.weight_decay,
        "logging_steps": settings.logging_steps,
        "disable_tqdm": not show_progress,
    }


def common_training_args(seed: int) -> dict[str, Any]:
    """Keyword arguments for `TrainingArguments`/TRL configs suited to this machine.

    CPU: float32, ``use_cpu=True``, no gradient checkpointing. CUDA: bf16 when the
    GPU supports it. Checkpoints are not written by the trainers themselves (the
    caller saves the final model atomically), nothing is reported to trackers
    unless the caller asks, runs are seeded, and batches are drawn at random.
    """
    cuda = torch.cuda.is_available()
    return {
        "use_cpu": not cuda,
        "bf16": bool(cuda and torch.cuda.is_bf16_supported()),
        "fp16": False,
        _CHECKPOINTING: False,
        "save_strategy": "no",
        "report_to": [],
        "seed": seed,
        "data_seed": seed,
        "dataloader_num_workers": 0,
        "remove_unused_columns": True,
        **_RANDOM_BATCHES,
    }


class TrainingProgress(TrainerCallback):
    """One tqdm bar per training run, named after it, with the latest loss as its postfix.

    It replaces transformers' `ProgressCallback` (an unnamed bar that prints every
    log dictionary, ``{'loss': ...}``, under it) and `PrinterCallback` (which prints
    them when the bar is off). Each log becomes a DEBUG line of this module's
    logger; the end of training one INFO line (steps, seconds, mean loss).
    """

    def __init__(self, description: str, show_progress: bool = True):
        self.description = description
        self.show_progress = show_progress
        self.bar: tqdm | None = None
        self.step = 0
        self.summary: dict[str, Any] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps, desc=self.description, unit="step", disable=not self.show_progress)
        self.step = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.step)
        self.step = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        shown = {key: value for key, value in logs.items() if key != "total_flos"}
        if "train_runtime" in shown:  # the end-of-training summary, logged once the bar is closed
            self.summary = shown
            return
        logger.debug("%s: step %d/%d %s", self.description, state.global_step, state.max_steps, _format_logs(shown))
        if self.bar is not None and "loss" in shown:
            self.bar.set_postfix(loss=_format(shown["loss"]), refresh=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if state.is_world_process_zero:
            seconds, loss = self.summary.get("train_runtime"), self.summary.get("train_loss")
            logger.info(
                "%s: %d steps%s%s", self.description, state.global_step,
                "" if seconds is None else f" in {float(seconds):.1f} s", "" if loss is None else f", mean loss {_format(loss)}",
            )  # fmt: skip


def _format(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _format_logs(logs: dict[str, Any]) -> str:
    return ", ".join(f"{key} {_format(value)}" for key, value in logs.items())


def run_trainer(trainer: Trainer, description: str, show_progress: bool = True) -> None:
    """``trainer.train()`` with one named progress bar (`TrainingProgress`) and no printed log dictionaries."""
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(TrainingProgress(description, show_progress))
    trainer.train()
