"""The local transformers policy: batched sampling of next steps and whole solutions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import LogitsProcessorList, PreTrainedModel, PreTrainedTokenizerBase

from agents.models.base import Generation, SamplingConfig
from agents.models.exclusion import ExcludeTaken, Masses, taken_masses
from agents.models.loading import load_causal_lm
from agents.models.prompts import DEFAULT_SYSTEM_PROMPT, render_prompt
from agents.models.stepwise import cut_step, group_by_stops, merge, sample_solutions_by_task
from reasoning_gym import ReasoningState
from reasoning_gym.steps import normalize_step
from reasoning_gym.tasks import task_of


@dataclass(frozen=True)
class HFPolicyConfig:
    """Options of `HFPolicy`.

    Attributes:
        batch_size: most sequences (states x samples) per `generate` call.
        prompt_format: "plain" renders ``"Problem: ...\\nSolution:\\nStep 1: ..."``
            (the bundled models' format); "chat" puts the question in a user
            message of the tokenizer's chat template and the steps in the
            assistant turn; "auto" picks "chat" when the tokenizer has a template.
        system_prompt: the system message in "chat" format.
        cache_implementation: passed to `generate` ("static" or None for dynamic).
    """

    batch_size: int = 64
    prompt_format: str = "auto"
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    cache_implementation: str | None = None

    def __post_init__(self) -> None:
        if self.prompt_format not in ("plain", "chat", "auto"):
            raise ValueError(f"HFPolicyConfig.prompt_format must be plain, chat or auto, got {self.prompt_format!r}")
        if self.batch_size < 1:
            raise ValueError(f"HFPolicyConfig.batch_size must be >= 1, got {self.batch_size}")


class HFPolicy:
    """A `Policy` over any transformers causal LM.

    A step ends at the first of its task's step stops (`Task.step_stops`: the
    newline, and ``"="`` for Countdown, whose engine writes the result): every
    vocabulary token whose text contains a stop (``"\n"``, ``"\n\n"``, ``".\n"``,
    ...) is a stop id, and the text is cut before the first stop. Whole
    solutions of a task with more stops than the newline are sampled step by
    step (`agents.models.stepwise`). Steps proposed with `exclude` are sampled
    without replacement (`agents.models.exclusion`): the policy's distribution
    over whole steps with the excluded ones taken out.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: HFPolicyConfig | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config or HFPolicyConfig()
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        format_ = self.config.prompt_format
        self.chat = format_ == "chat" or (format_ == "auto" and bool(getattr(tokenizer, "chat_template", None)))
        self._vocabulary = [tokenizer.decode([i]) for i in range(len(tokenizer))]
        self._stop_ids: dict[tuple[str, ...], list[int]] = {}
        self.num_parameters = sum(p.numel() for p in model.parameters())

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, device: str | None = None, dtype: str | None = None, **config
    ) -> HFPolicy:
        """Load from a Hub id, a local folder or a ``.gguf`` file (see `load_causal_lm`)."""
        model, tokenizer = load_causal_lm(name_or_path, device=device, dtype=dtype)
        return cls(model, tokenizer, HFPolicyConfig(**config))

    # --- prompts -------------------------------------------------------------

    def prompt(self, state: ReasoningState, next_step: bool) -> str:
        """The text the model continues: the state, plus ``"Step k:"`` for one step."""
        return render_prompt(state, next_step, self.tokenizer if self.chat else None, self.config.system_prompt)

    # --- the Policy protocol -------------------------------------------------

    def propose_steps(
        self,
        states: Sequence[ReasoningState],
        n: int,
        sampling: SamplingConfig,
        exclude: Sequence[Sequence[str]] | None = None,
    ) -> Generation:
        parts = []
        for stops, indices in group_by_stops(states).items():
            prompts = [self.prompt(states[i], next_step=True) for i in indices]
            taken = None
            if exclude is not None:
                taken = [[task_of(states[i].problem).written_step(step) for step in exclude[i]] for i in indices]
            texts, prompt_tokens, completion_tokens, calls = self._generate(prompts, n, sampling, stops, taken)
            steps = [[normalize_step(cut_step(text, stops)) for text in row] for row in texts]
            parts.append((indices, Generation(steps, prompt_tokens, completion_tokens, calls)))
        return merge(parts, len(states))

    def sample_solutions(self, states: Sequence[ReasoningState], n: int, sampling: SamplingConfig) -> Generation:
        return sample_solutions_by_task(self, states, n, sampling, self._sample_whole)

    def _sample_whole(self, states: Sequence[ReasoningState], n: int, sampling: SamplingConfig) -> Generation:
        prompts = [self.prompt(state, next_step=False) for state in states]
        return Generation(*self._generate(prompts, n, sampling, ()))

    # --- generation ------------------------------------------------------------

    @torch.inference_mode()
    def _generate(
        self,
        prompts: list[str],
        n: int,
        sampling: SamplingConfig,
        stops: tuple[str, ...],
        taken: list[list[str]] | None = None,
    ) -> tuple[list[list[str]], list[int], list[int], int]:
        """Sample `n` continuations per prompt, each ending at a token containing one of
        `stops` or the EOS: texts (len(prompts) x n), per-prompt costs, calls.

        Greedy decoding computes each prompt once and repeats the text n times,
        so greedy costs are counted once. ``taken[i]``: continuations of prompt i
        (written out, stop included) not to sample; reading them to weigh them
        out costs their prompt tokens once more.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        copies = 1 if sampling.greedy else n
        rows = [prompt for prompt in prompts for _ in range(copies)]
        stop_ids = [self.tokenizer.eos_token_id, *self._stop_token_ids(stops)]
        extra: dict = {}
        if self.config.cache_implementation:
            extra["cache_implementation"] = self.config.cache_implementation
        prompt_tokens = [0] * len(prompts)
        temperature = 1.0 if sampling.greedy else sampling.temperature
        masses: list[Masses] | None = None
        if taken and any(taken):
            masses = self._taken_masses(prompts, taken, temperature, stop_ids, sampling.max_new_tokens, prompt_tokens)
            temperature_arg = 1.0  # ExcludeTaken applies the temperature itself
        else:
            temperature_arg = temperature
        sampling_args = (
            {"do_sample": False}
            if sampling.greedy
            else {"do_sample": True, "temperature": temperature_arg, "top_p": sampling.top_p, "top_k": 0}
        )
        outputs: list[str] = []
        completion_tokens = [0] * len(prompts)
        calls = 0
        device = self.model.device
        for start in range(0, len(rows), self.config.batch_size):
            chunk = rows[start : start + self.config.batch_size]
            batch = self.tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=not self.chat).to(device)
            processors = []
            if masses is not None:
                rows_masses = [masses[(start + offset) // copies] for offset in range(len(chunk))]
                processors.append(ExcludeTaken(rows_masses, batch["input_ids"].shape[1], temperature))
            generated = self.model.generate(
                **batch,
                max_new_tokens=sampling.max_new_tokens,
                eos_token_id=stop_ids,
                pad_token_id=self.tokenizer.pad_token_id,
                logits_processor=LogitsProcessorList(processors),
                **sampling_args,
                **extra,
            )[:, batch["input_ids"].shape[1] :]
            calls += 1
            for offset, (row, mask) in enumerate(zip(generated.tolist(), batch["attention_mask"].sum(dim=1).tolist())):
                owner = (start + offset) // copies
                length = _completion_length(row, set(stop_ids), self.tokenizer.pad_token_id)
                prompt_tokens[owner] += mask
                completion_tokens[owner] += length
                outputs.append(self.tokenizer.decode(row[:length], skip_special_tokens=True))
        texts = [[outputs[i * copies + (j if copies > 1 else 0)] for j in range(n)] for i in range(len(prompts))]
        return texts, prompt_tokens, completion_tokens, calls

    @torch.inference_mode()
    def _taken_masses(
        self,
        prompts: list[str],
        taken: list[list[str]],
        temperature: float,
        stop_ids: list[int],
        max_new_tokens: int,
        prompt_tokens: list[int],
    ) -> list[Masses]:
        """`taken_masses` per prompt, from one teacher-forced pass over each prompt + taken text.

        A taken text whose tokens this policy could not generate (no stop at its
        end, a stop before it, longer than `max_new_tokens`, or a prompt that
        tokenizes differently in front of it) is left out: the caller's duplicate
        filter still catches it. Adds the tokens read to `prompt_tokens`.
        """
        stop_set = set(stop_ids)
        special = not self.chat
        rows: list[tuple[int, list[int], int]] = []  # (prompt, prompt + continuation ids, prompt length)
        for p, texts in enumerate(taken):
            if not texts:
                continue
            head = self.tokenizer(prompts[p], add_special_tokens=special)["input_ids"]
            for text in texts:
                ids = self.tokenizer(prompts[p] + text, add_special_tokens=special)["input_ids"]
                tail = ids[len(head) :]
                if ids[: len(head)] != head or not 0 < len(tail) <= max_new_tokens:
                    continue
                if tail[-1] not in stop_set or any(token in stop_set for token in tail[:-1]):
                    continue
                rows.append((p, ids, len(head)))
        sequences: list[list[list[int]]] = [[] for _ in prompts]
        log_probabilities: list[list[list[float]]] = [[] for _ in prompts]
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(rows), self.config.batch_size):
            chunk = rows[start : start + self.config.batch_size]
            width = max(len(ids) for _, ids, _ in chunk)
            # Right padding keeps every real token at its unpadded position.
            device = self.model.device
            input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for _, ids, _ in chunk], device=device)
            mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for _, ids, _ in chunk], device=device)
            logits = self.model(input_ids=input_ids, attention_mask=mask).logits.double()
            log_probs = torch.log_softmax(logits / temperature, dim=-1)
            for row, (p, ids, head) in enumerate(chunk):
                positions = torch.arange(head - 1, len(ids) - 1, device=log_probs.device)
                targets = torch.tensor(ids[head:], device=log_probs.device)
                sequences[p].append(ids[head:])
                log_probabilities[p].append(log_probs[row, positions, targets].tolist())
                prompt_tokens[p] += len(ids)
        return [taken_masses(s, q) for s, q in zip(sequences, log_probabilities)]

    def _stop_token_ids(self, stops: tuple[str, ...]) -> list[int]:
        """Every vocabulary id whose text contains one of `stops` (memoised per stop tuple)."""
        if stops not in self._stop_ids:
            self._stop_ids[stops] = [i for i, text in enumerate(self._vocabulary) if any(s in text for s in stops)]
        return self._stop_ids[stops]


def _completion_length(row: list[int], stop_ids: set[int], pad_id: int | None) -> int:
    """Tokens generated in `row`, up to and including the first stop token."""
    for index, token in enumerate(row):
        if token in stop_ids:
            return index + 1
        if token == pad_id:
            return index
    return len(row)
