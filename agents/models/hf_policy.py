"""The local transformers policy: batched sampling of next steps and whole solutions."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from transformers import (
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from agents.models.base import Generation, SamplingConfig
from agents.models.decoding import decode, expand
from agents.models.exclusion import ExcludeTaken, Masses, taken_masses
from agents.models.loading import load_causal_lm
from agents.models.prefix_cache import PrefixCache, read, shared_prefix_lengths
from agents.models.prompts import DEFAULT_SYSTEM_PROMPT, render_prompt
from agents.models.stepwise import cut_step, group_by_stops, merge, sample_solutions_by_task
from reasoning_gym import Problem, ReasoningState
from reasoning_gym.steps import normalize_step
from reasoning_gym.tasks import task_of


@dataclass(frozen=True)
class HFPolicyConfig:
    """Options of `HFPolicy`.

    Attributes:
        batch_size: most sequences (states x samples) decoded together.
        prompt_format: "plain" renders ``"Problem: ...\\nSolution:\\nStep 1: ..."``
            (the bundled models' format); "chat" puts the question in a user
            message of the tokenizer's chat template and the steps in the
            assistant turn; "auto" picks "chat" when the tokenizer has a template.
        system_prompt: the system message in "chat" format.
        prefix_cache_tokens: most tokens of prefixes kept to be reused (their keys
            and values, `agents.models.prefix_cache`); 0 reads every prompt whole.
    """

    batch_size: int = 64
    prompt_format: str = "auto"
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    prefix_cache_tokens: int = 65_536

    def __post_init__(self) -> None:
        if self.prompt_format not in ("plain", "chat", "auto"):
            raise ValueError(f"HFPolicyConfig.prompt_format must be plain, chat or auto, got {self.prompt_format!r}")
        if self.batch_size < 1:
            raise ValueError(f"HFPolicyConfig.batch_size must be >= 1, got {self.batch_size}")
        if self.prefix_cache_tokens < 0:
            raise ValueError(f"HFPolicyConfig.prefix_cache_tokens must be >= 0, got {self.prefix_cache_tokens}")


class HFPolicy:
    """A `Policy` over any transformers causal LM.

    A step ends at the first of its task's step stops (`Task.step_stops`: the
    newline, and ``"="`` for Countdown, whose engine writes the result): every
    vocabulary token whose text contains a stop (``"\n"``, ``"\n\n"``, ``".\n"``,
    ...) is a stop id, and the text is cut before the first stop. Whole
    solutions of a task with more stops than the newline are sampled step by
    step (`agents.models.stepwise`). Steps proposed with `exclude` are sampled
    without replacement (`agents.models.exclusion`): the policy's distribution
    over whole steps with the excluded ones taken out. Prompts are read through a
    prefix cache (`agents.models.prefix_cache`) and decoded token by token
    (`agents.models.decoding`): what an earlier call read is not computed again.
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
        tokens = self.config.prefix_cache_tokens
        self.prefix_cache = PrefixCache(tokens) if tokens else None
        # {(prompt, step, temperature): log-probs of the step's tokens}, for steps this policy wrote
        self._step_log_probs: OrderedDict[tuple, list[float]] = OrderedDict()

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, device: str | None = None, dtype: str | None = None, **config
    ) -> HFPolicy:
        """Load from a Hub id, a local folder or a ``.gguf`` file (see `load_causal_lm`)."""
        model, tokenizer = load_causal_lm(name_or_path, device=device, dtype=dtype)
        return cls(model, tokenizer, HFPolicyConfig(**config))

    def clear_cache(self) -> None:
        """Forget the cached prefixes (call after the weights change; a run that should not
        read another run's prompts for free starts with it)."""
        if self.prefix_cache is not None:
            self.prefix_cache.clear()
        self._step_log_probs.clear()

    def forget(self, problem: Problem) -> None:
        """Drop the cached prefixes of `problem`'s prompts (its search is over): every entry
        that starts with the prompt of its root state."""
        if self.prefix_cache is not None:
            self.prefix_cache.drop(self._encode([self.prompt(ReasoningState(problem), next_step=False)])[0])

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
            generation = self._generate(prompts, n, sampling, stops, taken)
            steps = [[normalize_step(cut_step(text, stops)) for text in row] for row in generation.texts]
            parts.append((indices, replace(generation, texts=steps)))
        return merge(parts, len(states))

    def sample_solutions(self, states: Sequence[ReasoningState], n: int, sampling: SamplingConfig) -> Generation:
        return sample_solutions_by_task(self, states, n, sampling, self._sample_whole)

    def _sample_whole(self, states: Sequence[ReasoningState], n: int, sampling: SamplingConfig) -> Generation:
        prompts = [self.prompt(state, next_step=False) for state in states]
        return self._generate(prompts, n, sampling, ())

    # --- generation ------------------------------------------------------------

    def _encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of `texts` (one tokenizer call for all)."""
        return self.tokenizer(texts, add_special_tokens=not self.chat)["input_ids"] if texts else []

    @torch.inference_mode()
    def _generate(
        self,
        prompts: list[str],
        n: int,
        sampling: SamplingConfig,
        stops: tuple[str, ...],
        taken: list[list[str]] | None = None,
    ) -> Generation:
        """Sample `n` continuations per prompt, each ending at a token containing one of
        `stops` or the EOS (texts: len(prompts) x n).

        Each prompt is read once for all its samples, reusing the prefix cache
        (`agents.models.prefix_cache`); its computed tokens are counted once and the
        rest of what its samples read as reused. Greedy decoding computes each
        prompt once and repeats the text n times. ``taken[i]``: continuations of
        prompt i (written out, stop included) not to sample; reading them to weigh
        them out costs their tokens, unless this policy wrote them itself at this
        temperature in a call with `taken` (their log-probabilities are remembered:
        a search that samples without replacement asks again with them taken).
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        copies = 1 if sampling.greedy else n
        stop_ids = [self.tokenizer.eos_token_id, *self._stop_token_ids(stops)]
        stop_set = set(stop_ids)
        prompt_ids = self._encode(prompts)
        prompt_tokens, reused = [0] * len(prompts), [0] * len(prompts)
        temperature = 1.0 if sampling.greedy else sampling.temperature
        warpers = LogitsProcessorList()
        masses: list[Masses] | None = None
        if taken and any(taken):
            masses = self._taken_masses(prompts, prompt_ids, taken, temperature, stop_ids, sampling.max_new_tokens,
                                        prompt_tokens, reused)  # fmt: skip
        elif not sampling.greedy:
            warpers.append(TemperatureLogitsWarper(temperature))
        if not sampling.greedy and sampling.top_p < 1.0:
            warpers.append(TopPLogitsWarper(sampling.top_p))
        outputs: list[list[str]] = [[] for _ in prompts]
        completion_tokens = [0] * len(prompts)
        calls = 0
        per_call = max(1, self.config.batch_size // copies)  # prompts per call, each with all its samples
        pad = self.tokenizer.pad_token_id
        for first in range(0, len(prompts), per_call):
            chunk = list(range(first, min(first + per_call, len(prompts))))
            rows = [prompt_ids[i] for i in chunk]
            start = read(self.model, rows, self.prefix_cache, store_at=shared_prefix_lengths(rows), pad_id=pad)
            for i, computed, hit in zip(chunk, start.computed, start.reused):
                prompt_tokens[i] += computed
                reused[i] += copies * (computed + hit) - computed
            # A prompt with more samples than a call holds is read once and decoded in groups.
            for done in range(0, copies, self.config.batch_size):
                group = min(copies - done, self.config.batch_size)
                row_masses = None if masses is None else [masses[i] for i in chunk for _ in range(group)]

                def processors_for(rows: list[int]) -> LogitsProcessorList:
                    if row_masses is None:
                        return warpers
                    return LogitsProcessorList([ExcludeTaken([row_masses[r] for r in rows], 0, temperature), *warpers])

                begin = start if copies == 1 else expand(start, group)  # decoding appends to its cache
                decoded = decode(self.model, begin, processors_for, greedy=sampling.greedy, stop_ids=stop_ids,
                                 max_new_tokens=sampling.max_new_tokens,
                                 log_probs_at=temperature if taken is not None else None)  # fmt: skip
                calls += 1
                for row, tokens in enumerate(decoded.tokens):
                    owner = chunk[row // group]
                    completion_tokens[owner] += len(tokens)
                    outputs[owner].append(self.tokenizer.decode(tokens, skip_special_tokens=True))
                    if decoded.log_probs is not None and tokens and tokens[-1] in stop_set:
                        self._remember(prompt_ids[owner], tokens, temperature, decoded.log_probs[row])
        texts = [[row[j if copies > 1 else 0] for j in range(n)] for row in outputs]
        return Generation(texts, prompt_tokens, completion_tokens, calls, reused)

    @torch.inference_mode()
    def _taken_masses(
        self,
        prompts: list[str],
        prompt_ids: list[list[int]],
        taken: list[list[str]],
        temperature: float,
        stop_ids: list[int],
        max_new_tokens: int,
        prompt_tokens: list[int],
        reused: list[int],
    ) -> list[Masses]:
        """`taken_masses` per prompt, from one teacher-forced pass over each prompt + taken text.

        A taken text whose tokens this policy could not generate (no stop at its
        end, a stop before it, longer than `max_new_tokens`, or a prompt that
        tokenizes differently in front of it) is left out: the caller's duplicate
        filter still catches it. A text this policy wrote itself (`_remember`) is
        not read again. Adds the tokens read to `prompt_tokens` and `reused` (the
        prompt comes from the prefix cache after its first read).
        """
        stop_set = set(stop_ids)
        rows: list[tuple[int, list[int], int]] = []  # (prompt, prompt + continuation ids, prompt length)
        pairs = [(p, text) for p, texts in enumerate(taken) for text in texts]
        for (p, _), ids in zip(pairs, self._encode([prompts[p] + text for p, text in pairs])):
            head = prompt_ids[p]
            tail = ids[len(head) :]
            if ids[: len(head)] != head or not 0 < len(tail) <= max_new_tokens:
                continue
            if tail[-1] not in stop_set or any(token in stop_set for token in tail[:-1]):
                continue
            rows.append((p, ids, len(head)))
        sequences: list[list[list[int]]] = [[] for _ in prompt_ids]
        log_probabilities: list[list[list[float]]] = [[] for _ in prompt_ids]
        unread = []
        for p, ids, head in rows:
            known = self._step_log_probs.get(_step_key(prompt_ids[p], ids[head:], temperature))
            if known is None:
                unread.append((p, ids, head))
            else:
                sequences[p].append(ids[head:])
                log_probabilities[p].append(known)
        rows = unread
        pad = self.tokenizer.pad_token_id
        for first in range(0, len(rows), self.config.batch_size):
            chunk = rows[first : first + self.config.batch_size]
            ids_rows = [ids for _, ids, _ in chunk]
            keep = max(len(ids) - head for _, ids, head in chunk) + 1
            # The outputs at the prompt's last token and every taken token but the stop are needed.
            result = read(self.model, ids_rows, self.prefix_cache, reuse_up_to=[head - 1 for _, _, head in chunk],
                          keep=keep, store_at=[{head} for _, _, head in chunk], pad_id=pad)  # fmt: skip
            log_probs = torch.log_softmax(result.outputs.double() / temperature, dim=-1)
            for row, (p, ids, head) in enumerate(chunk):
                tail = len(ids) - head  # outputs at columns keep - tail - 1 .. keep - 2 predict the tail
                positions = torch.arange(keep - tail - 1, keep - 1, device=log_probs.device)
                targets = torch.tensor(ids[head:], device=log_probs.device)
                sequences[p].append(ids[head:])
                log_probabilities[p].append(log_probs[row, positions, targets].tolist())
                prompt_tokens[p] += result.computed[row]
                reused[p] += result.reused[row]
        return [taken_masses(s, q) for s, q in zip(sequences, log_probabilities)]

    def _remember(self, prompt: list[int], tokens: list[int], temperature: float, log_probs: list[float]) -> None:
        """Keep the log-probabilities of a step this policy wrote (least recently used go first)."""
        if self.prefix_cache is None:
            return  # with reuse off every taken step is read again, as the plain path does
        self._step_log_probs[_step_key(prompt, tokens, temperature)] = log_probs
        while len(self._step_log_probs) > _REMEMBERED_STEPS:
            self._step_log_probs.popitem(last=False)

    def _stop_token_ids(self, stops: tuple[str, ...]) -> list[int]:
        """Every vocabulary id whose text contains one of `stops` (memoised per stop tuple)."""
        if stops not in self._stop_ids:
            self._stop_ids[stops] = [i for i, text in enumerate(self._vocabulary) if any(s in text for s in stops)]
        return self._stop_ids[stops]


_REMEMBERED_STEPS = 50_000  # steps whose log-probabilities `HFPolicy` keeps (a few MB)


def _step_key(prompt: list[int], step: list[int], temperature: float) -> tuple:
    """Where a step's log-probabilities are kept: the prompt by its length and hash (a 64-bit
    collision would only weigh the wrong step out; the duplicate filter still holds)."""
    return len(prompt), hash(tuple(prompt)), tuple(step), temperature
