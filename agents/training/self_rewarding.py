"""Self-Rewarding (Yuan et al. 2024), the second self-training baseline, with TRL's `DPOTrainer`.

One iteration, as `agents.training.self_train.SelfTrainer` runs it with
``method: self_rewarding``:

1. sample whole CoT solutions from pi_{i-1} on the training questions until the
   iteration has spent the same policy completion tokens as the ReST-MCTS*
   search (`agents.training.rest_em.sample_until`);
2. judge them WITHOUT the oracle. Documented choice: the judge is the current
   PRM V_{i-1} (the paper has the policy itself judge with an LLM-as-a-judge
   prompt, which a 1M-parameter policy cannot do; the PRM is the model this
   project trains to judge solutions). A solution's reward is the PRM value of
   its final state (the whole solution as written);
3. per question, the best-scored solution is "chosen" and the worst "rejected"
   (`preference_pairs`; questions whose samples all score alike give no pair);
4. DPO of the policy on the pairs (`train_dpo`), with an explicit reference
   model: a frozen copy of pi_{i-1}. A locally built model has no Hub id from
   which TRL could rebuild the reference, so it is passed in.

The PRM is not trained; MCTS* evaluation uses V_{i-1}. The oracle grades the
samples only for the record (``correct`` in the search stage's samples).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl import DPOConfig, DPOTrainer

from agents.models.base import ValueModel
from agents.training.rest_em import RestEMSettings, SampledSolution
from agents.training.trainer_args import common_training_args, run_trainer, schedule_args
from agents.training.tree_targets import TreeTargets


@dataclass(frozen=True)
class DPOSettings:
    """DPO hyperparameters the project sets (everything else is TRL's default).

    Attributes:
        max_steps: optimizer steps.
        batch_size: pairs per optimizer step.
        learning_rate: peak learning rate (cosine decay after warm-up).
        beta: DPO temperature (strength of the implicit KL to the reference).
        max_length: longest prompt + completion in tokens.
    """

    max_steps: int = 200
    batch_size: int = 8
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    beta: float = 0.1
    max_length: int = 768
    logging_steps: int = 50


@dataclass(frozen=True)
class SelfRewardingSettings:
    """Sampling (as ReST-EM), judging and DPO settings.

    Attributes:
        sampling: how solutions are sampled (`RestEMSettings`; its
            ``max_correct_per_problem`` is unused here).
        min_margin: least PRM score gap between chosen and rejected for a pair.
        dpo: the DPO hyperparameters.
    """

    sampling: RestEMSettings = field(default_factory=RestEMSettings)
    min_margin: float = 0.0
    dpo: DPOSettings = field(default_factory=DPOSettings)


def score_samples(value: ValueModel, samples: Sequence[SampledSolution]) -> list[float]:
    """The judge's reward of each sample: the PRM value of its final state (one batched call)."""
    if not samples:
        return []
    return list(value.score([sample.state for sample in samples]).values)


def preference_pairs(
    samples: Sequence[SampledSolution], scores: Sequence[float], min_margin: float = 0.0
) -> TreeTargets:
    """One DPO pair per question: its best-scored sample (chosen) against its worst (rejected).

    Ties go to the sample drawn first. A question gets no pair when its best and
    worst completions are the same text or their scores differ by no more than
    `min_margin`.
    """
    by_problem: dict[str, list[int]] = {}
    for index, sample in enumerate(samples):
        by_problem.setdefault(sample.problem.id, []).append(index)
    out = TreeTargets()
    for problem_id, indices in by_problem.items():
        best = max(indices, key=lambda k: (scores[k], -k))
        worst = min(indices, key=lambda k: (scores[k], k))
        chosen, rejected = samples[best], samples[worst]
        if chosen.completion == rejected.completion or scores[best] - scores[worst] <= min_margin:
            continue
        out.pairs.append(
            {"prompt": chosen.prompt, "chosen": chosen.completion, "rejected": rejected.completion, "problem_id": problem_id}
        )
    return out


def train_dpo(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset: Dataset,
    settings: DPOSettings,
    output_dir: str,
    seed: int = 0,
    ref_model: PreTrainedModel | None = None,
    show_progress: bool = True,
) -> PreTrainedModel:
    """DPO of `model` on ``{"prompt", "chosen", "rejected"}`` rows; returns the trained model.

    `ref_model` defaults to a frozen deep copy of `model` as it is before training
    (pi_{i-1}). Saving is the caller's job.
    """
    if ref_model is None:
        ref_model = copy.deepcopy(model)
    ref_model.eval().requires_grad_(False)
    dataset = dataset.select_columns(["prompt", "chosen", "rejected"])
    config = DPOConfig(
        output_dir=output_dir,
        beta=settings.beta,
        max_length=settings.max_length,
        **schedule_args(settings, show_progress),
        **common_training_args(seed),
    )
    trainer = DPOTrainer(
        model=model, ref_model=ref_model, args=config, train_dataset=dataset, processing_class=tokenizer
    )
    run_trainer(trainer, "train policy (DPO)", show_progress)
    model = trainer.model
    model.eval()
    return model

