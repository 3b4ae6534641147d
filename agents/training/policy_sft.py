"""Supervised fine-tuning of a policy with TRL's `SFTTrainer`."""

from __future__ import annotations

from dataclasses import dataclass

from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl import SFTConfig, SFTTrainer

from agents.training.trainer_args import common_training_args, run_trainer, schedule_args


@dataclass(frozen=True)
class SFTSettings:
    """The SFT hyperparameters the project sets (everything else is TRL's default).

    Attributes:
        max_steps: optimizer steps (a step budget keeps runs reproducible, unlike a
            time budget).
        batch_size: sequences per optimizer step.
        learning_rate: peak learning rate (cosine decay after a linear warm-up).
        warmup_ratio: share of steps spent warming up.
        max_length: longest sequence in tokens.
        completion_only_loss: loss on the completion only (needs prompt/completion
            columns); whole-sequence loss learned faster for the tiny models.
    """

    max_steps: int = 1000
    batch_size: int = 16
    learning_rate: float = 2e-3
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    max_length: int = 768
    completion_only_loss: bool = False
    logging_steps: int = 50


def train_policy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset: Dataset,
    settings: SFTSettings,
    output_dir: str,
    seed: int = 0,
    show_progress: bool = True,
    description: str = "train policy (SFT)",
) -> PreTrainedModel:
    """Fine-tune `model` on `dataset` (a ``text`` column, or ``prompt``/``completion``).

    Returns the trained model (the same object); saving it is the caller's job.
    `description` names the progress bar and the log line of the run.
    """
    config = SFTConfig(
        output_dir=output_dir,
        max_length=settings.max_length,
        packing=False,
        completion_only_loss=settings.completion_only_loss,
        **schedule_args(settings, show_progress),
        **common_training_args(seed),
    )
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    run_trainer(trainer, description, show_progress)
    return trainer.model
