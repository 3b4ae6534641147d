"""A `Policy` behind an OpenAI-compatible text-completions server (vLLM, SGLang, transformers serve).

Start a server, then point the policy at it::

    vllm serve HuggingFaceTB/SmolLM2-1.7B-Instruct --port 8000
    # or: python -m sglang.launch_server --model-path ... --port 8000
    # or, small models on CPU: transformers serve [MODEL] --port 8000   (pip install 'transformers[serving]')

    policy = OpenAIPolicy.from_url(
        "http://127.0.0.1:8000/v1",
        tokenizer="HuggingFaceTB/SmolLM2-1.7B-Instruct",  # renders the chat template
        num_parameters=1_700_000_000,  # servers do not report it; budgets in FLOPs need it
    )

One policy call is one ``POST {base_url}/completions`` per `batch_size` prompts
(on vLLM and SGLang; other servers below):
``prompt`` is the list of rendered states, ``n`` samples each, ``stop`` = the
task's step stops for single steps (``["\\n"]``; Countdown adds ``"="``). The
legacy completions endpoint (not chat completions) is used so that a partial
solution can be continued inside the assistant turn: in "chat" format the
prompt is the tokenizer's chat template rendered locally, exactly as `HFPolicy`
renders it, and sent with ``add_special_tokens: false``
(a vLLM/SGLang extension that stops a second BOS being added).

Token accounting. Servers report only batch totals in ``usage``; they are split
per state so that each search tree pays its own share:

- completion tokens: the request asks for ``logprobs: 0`` (the sampled tokens'
  own log-probabilities, no alternatives), so each choice lists its tokens and
  the split is exact. Without logprobs (``logprobs=False`` or a server that
  ignores it) the total is split in proportion to each choice's characters
  (plus one for its stop token).
- prompt tokens: with a local `tokenizer`, each prompt is counted exactly;
  otherwise the total is split in proportion to the prompts' characters.
  Servers count a prompt once per request however many samples share it
  (vLLM and SGLang share the prefill), so that is what is charged.
The split always sums to the server's ``usage`` totals.

Greedy decoding (temperature 0) asks for one sample and repeats it `n` times,
as `HFPolicy` does, so greedy costs are counted once.

Servers differ; the policy learns what its server does from the first requests
and adapts (tested against ``transformers serve`` in tests/test_openai_server.py):

- a list of prompts rejected (``transformers serve``: HTTP 400 "prompt must be a
  string"): one request per prompt from then on, sent concurrently
  (`max_concurrency`);
- ``n`` ignored (one choice per prompt where ``n`` > 1 were asked;
  ``transformers serve`` and llama.cpp do this, vLLM honours ``n``): the missing
  samples are asked for by concurrent requests with ``n: 1``, sample j with
  ``seed + j`` so that they differ and stay reproducible. Each request's prompt
  tokens are charged: the server did process the prompt once per request;
- the stop string left at the end of the text (``transformers serve``): cut off
  (text up to the first stop), so texts and character-based token splits are the
  same as with vLLM;
- ``GET /models`` listing nothing (a server that loads local folders on demand):
  the configured `tokenizer` name is used as the model name;
- an optional field rejected (HTTP 422, e.g. ``add_special_tokens`` by
  ``transformers serve``): the optional fields the error names (``logprobs``,
  ``seed``, ``add_special_tokens``; all three when it names none) are dropped
  and the request is sent once more; they stay dropped for later requests (a
  warning says what that costs). Without ``add_special_tokens: false`` a chat
  prompt is sent without its leading BOS text, which the server adds itself.
  A rejected field of ``extra_body`` is an error that names it.

``transformers serve`` also samples only when the model's ``generation_config``
has ``do_sample: true``; otherwise it decodes greedily at any temperature.

Faults. A refused or dropped connection, a timeout (`timeout_s`) and HTTP
429/502/503/504 are retried up to `max_retries` times, waiting `retry_backoff_s`,
then twice as long each time, at most `retry_backoff_max_s`. A server killed and
restarted within that budget is waited for and the search goes on where it was;
past the budget the error names the URL, the attempts and the time waited.

Transport: the standard library's ``urllib``, not the ``openai`` client. The
policy makes one kind of request (a JSON POST) and needs exact control over
what an error says: a refused connection names the URL, an HTTP error carries
the status and the server's body (the ``openai`` client reports "Connection
error." and retries by default). It also keeps the backend free of an extra
dependency; the ``openai`` extra remains available for users' own scripts.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from agents.models.base import Generation, SamplingConfig
from agents.models.prompts import DEFAULT_SYSTEM_PROMPT, render_prompt
from agents.models.stepwise import cut_step, group_by_stops, merge, sample_solutions_by_task
from reasoning_gym import ReasoningState
from reasoning_gym.steps import normalize_step

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Request fields a server may reject (HTTP 422) without which a completion is still right.
OPTIONAL_FIELDS = ("logprobs", "seed", "add_special_tokens")
UNKNOWN_FIELD_WORDS = ("unexpected", "unknown", "unrecognized", "extra", "not permitted", "not allowed", "unsupported")
DROPPED_COST = {
    "logprobs": "completion tokens are split by characters",
    "seed": "sampling is not reproducible",
    "add_special_tokens": "chat prompts are sent without their leading BOS text, which the server adds",
}


class ServerConnectionError(ConnectionError):
    """The server could not be reached (refused, unknown host, timed out); names the URL."""


class ServerHTTPError(RuntimeError):
    """The server answered with an HTTP error.

    Attributes:
        url: the endpoint called.
        status: the HTTP status code.
        body: the response body (the server's explanation), as text.
    """

    def __init__(self, url: str, status: int, body: str, hint: str = "") -> None:
        self.url = url
        self.status = status
        self.body = body
        shown = body if len(body) <= 2000 else body[:2000] + "..."
        super().__init__(f"{url} answered HTTP {status}: {shown}" + (f" ({hint})" if hint else ""))


class ServerResponseError(RuntimeError):
    """The server answered 200 with something that is not a usable completions response."""


@dataclass(frozen=True)
class OpenAIPolicyConfig:
    """Options of `OpenAIPolicy`.

    Attributes:
        base_url: the server's API root, ending in ``/v1``.
        model: the served model name; None asks ``GET {base_url}/models`` (the listed
            `tokenizer` name if listed, else the first model; vLLM and SGLang serve
            one), and uses the `tokenizer` name when nothing is listed.
        api_key: sent as a bearer token; None reads ``$OPENAI_API_KEY`` (and sends
            nothing if that is unset too).
        prompt_format: "plain" (``"Problem: ...\\nSolution:\\nStep 1:"``, the bundled
            models' format), "chat" (the tokenizer's chat template, rendered
            locally; needs `tokenizer`) or "auto" ("chat" when a tokenizer with a
            chat template is given).
        tokenizer: Hub id, folder or ``.gguf`` of the served model's tokenizer, for
            the chat template and exact prompt token counts; None for neither.
        system_prompt: the system message in "chat" format.
        batch_size: most prompts per request (the server batches them itself).
        num_parameters: the served model's parameter count, for FLOPs budgets
            (``Usage.flops``); servers do not report it, so 0 unless given.
        logprobs: ask for ``logprobs: 0`` to count completion tokens per sample
            exactly; turn off for servers that reject it.
        timeout_s: seconds to wait for one response.
        max_retries: retries after a refused or dropped connection, a timeout or
            HTTP 429/502/503/504 (to ride out a server restart, give enough retries
            for the restart's duration).
        retry_backoff_s: the wait before the first retry; doubled for each next one.
        retry_backoff_max_s: the longest wait between two attempts.
        max_concurrency: most requests in flight at once when a server needs one
            request per prompt or per sample (it ignores lists of prompts or ``n``).
        extra_body: more JSON fields for every completions request (e.g.
            ``{"top_k": 20, "repetition_penalty": 1.1}`` for vLLM).
    """

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str | None = None
    api_key: str | None = None
    prompt_format: str = "auto"
    tokenizer: str | None = None
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    batch_size: int = 256
    num_parameters: int = 0
    logprobs: bool = True
    timeout_s: float = 600.0
    max_retries: int = 2
    retry_backoff_s: float = 0.5
    retry_backoff_max_s: float = 10.0
    max_concurrency: int = 8
    extra_body: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.prompt_format not in ("plain", "chat", "auto"):
            raise ValueError(
                f"OpenAIPolicyConfig.prompt_format must be plain, chat or auto, got {self.prompt_format!r}"
            )
        if self.prompt_format == "chat" and self.tokenizer is None:
            raise ValueError("OpenAIPolicyConfig.prompt_format='chat' needs `tokenizer` (for the chat template)")
        parsed = urllib.parse.urlparse(self.base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(
                "OpenAIPolicyConfig.base_url must be an http(s) URL like http://127.0.0.1:8000/v1, "
                f"got {self.base_url!r}"
            )
        if self.batch_size < 1:
            raise ValueError(f"OpenAIPolicyConfig.batch_size must be >= 1, got {self.batch_size}")
        if self.num_parameters < 0 or self.max_retries < 0 or self.timeout_s <= 0:
            raise ValueError("OpenAIPolicyConfig: num_parameters and max_retries must be >= 0, timeout_s > 0")
        if self.retry_backoff_s < 0 or self.retry_backoff_max_s < 0:
            raise ValueError("OpenAIPolicyConfig: retry_backoff_s and retry_backoff_max_s must be >= 0")
        if self.max_concurrency < 1:
            raise ValueError(f"OpenAIPolicyConfig.max_concurrency must be >= 1, got {self.max_concurrency}")


class OpenAIPolicy:
    """A `Policy` served over HTTP by an OpenAI-compatible ``/v1/completions`` endpoint.

    A step ends at the first of its task's step stops (``stop=["\\n"]``, Countdown
    adds ``"="``); whole solutions end at the model's end of sequence (a task with
    more stops is sampled step by step, `agents.models.stepwise`); both at most
    ``sampling.max_new_tokens`` tokens (sent as ``max_tokens``). Construction makes no request: the model name, when not
    given, is looked up on first use.
    """

    def __init__(self, config: OpenAIPolicyConfig | None = None, tokenizer: Any = None) -> None:
        """`tokenizer`: an already loaded tokenizer, used instead of loading ``config.tokenizer``."""
        self.config = config or OpenAIPolicyConfig()
        if tokenizer is None and self.config.tokenizer is not None:
            from agents.models.loading import load_tokenizer  # transformers only when asked for

            tokenizer = load_tokenizer(self.config.tokenizer)
        self.tokenizer = tokenizer
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if self.config.prompt_format == "chat" and not has_template:
            raise ValueError("prompt_format='chat' but the tokenizer has no chat template")
        self.chat = self.config.prompt_format == "chat" or (self.config.prompt_format == "auto" and has_template)
        self.num_parameters = self.config.num_parameters
        self.base_url = self.config.base_url.rstrip("/")
        self._model = self.config.model
        host = urllib.parse.urlparse(self.base_url).hostname or ""
        # Environment proxies are for the outside world; a local server is reached directly.
        proxies = {} if _is_loopback(host) else None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies))
        # What the server turned out to do (None: not seen yet); see the module docstring.
        self._lists: bool | None = None  # accepts a list of prompts in one request
        self._n: bool | None = None  # honours n > 1
        self._dropped: set[str] = set()  # optional fields it rejects
        self._adds_bos: bool | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, base_url: str, **config: Any) -> OpenAIPolicy:
        """`OpenAIPolicy(OpenAIPolicyConfig(base_url=base_url, **config))`."""
        return cls(OpenAIPolicyConfig(base_url=base_url, **config))

    @property
    def model(self) -> str:
        """The served model name (asked of ``GET /models`` once when not configured)."""
        if self._model is None:
            try:
                listing = self._request("GET", "/models")
            except ServerHTTPError as error:
                if error.status != 404:
                    raise
                listing = {"data": []}
            models = listing.get("data") if isinstance(listing, dict) else None
            if not isinstance(models, list) or any(not isinstance(m, dict) or "id" not in m for m in models):
                raise ServerResponseError(f"{self.base_url}/models: not a model list: {str(listing)[:500]}")
            ids = [str(m["id"]) for m in models]
            wanted = self.config.tokenizer
            if wanted is not None and (wanted in ids or not ids):
                if not ids:  # e.g. transformers serve lists a local folder only once it is loaded
                    logger.info("%s/models lists no model; using the tokenizer name %r", self.base_url, wanted)
                self._model = wanted
            elif ids:
                self._model = ids[0]
            else:
                raise ServerResponseError(
                    f"{self.base_url}/models lists no model; set `model` (the name the server serves it under)"
                )
        return self._model

    # --- prompts (as HFPolicy renders them) --------------------------------------

    def prompt(self, state: ReasoningState, next_step: bool) -> str:
        """The text the model continues: the state, plus ``"Step k:"`` for one step."""
        return render_prompt(state, next_step, self.tokenizer if self.chat else None, self.config.system_prompt)

    # --- the Policy protocol -----------------------------------------------------

    def propose_steps(
        self,
        states: Sequence[ReasoningState],
        n: int,
        sampling: SamplingConfig,
        exclude: Sequence[Sequence[str]] | None = None,
    ) -> Generation:
        """As `Policy.propose_steps`; `exclude` is not applied (a completions server
        samples with replacement), so the caller's duplicate filter does the work."""
        parts = []
        for stops, indices in group_by_stops(states).items():
            prompts = [self.prompt(states[i], next_step=True) for i in indices]
            texts, prompt_tokens, completion_tokens, calls = self._complete(
                prompts, n, sampling, sampling.max_new_tokens, stop=list(stops)
            )
            steps = [[normalize_step(cut_step(text, stops)) for text in row] for row in texts]
            parts.append((indices, Generation(steps, prompt_tokens, completion_tokens, calls)))
        return merge(parts, len(states))

    def sample_solutions(self, states: Sequence[ReasoningState], n: int, sampling: SamplingConfig) -> Generation:
        return sample_solutions_by_task(self, states, n, sampling, self._sample_whole)

    def _sample_whole(self, states: Sequence[ReasoningState], n: int, sampling: SamplingConfig) -> Generation:
        prompts = [self.prompt(state, next_step=False) for state in states]
        return Generation(*self._complete(prompts, n, sampling, sampling.max_new_tokens, stop=None))

    # --- requests --------------------------------------------------------------------

    def _complete(
        self, prompts: list[str], n: int, sampling: SamplingConfig, max_tokens: int, stop: list[str] | None
    ) -> tuple[list[list[str]], list[int], list[int], int]:
        """`n` completions per prompt: texts (len(prompts) x n), per-prompt costs, requests made.

        The work is planned as requests (`_Job`), re-planned whenever a reply shows
        what the server does with lists of prompts and with ``n``. While that is
        unknown, one request goes at a time; then all the rest at once.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        copies = 1 if sampling.greedy else n
        fields: dict[str, Any] = {
            "max_tokens": max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
        if stop:
            fields["stop"] = stop
        _ = self.model  # resolved here, before any concurrent request
        got = [0] * len(prompts)
        texts: list[list[str]] = [[] for _ in prompts]
        prompt_tokens = [0] * len(prompts)
        completion_tokens = [0] * len(prompts)
        calls = 0

        def record(job: _Job, reply: _Reply) -> None:
            for row, i in enumerate(job.indices):
                texts[i] += reply.texts[row]
                prompt_tokens[i] += reply.prompt_tokens[row]
                completion_tokens[i] += reply.completion_tokens[row]
                got[i] += len(reply.texts[row])

        def send(job: _Job) -> _Reply:
            return self._send(job, prompts, fields, sampling.seed, stop)

        while jobs := self._plan(got, copies):
            probe = next((job for job in jobs if self._probes(job)), None)
            try:
                if probe is not None or len(jobs) == 1:
                    job = probe or jobs[0]
                    replies = [(job, send(job))]
                else:
                    with ThreadPoolExecutor(min(len(jobs), self.config.max_concurrency)) as pool:
                        replies = list(zip(jobs, pool.map(send, jobs)))
            except _Replan:
                continue
            for job, reply in replies:
                record(job, reply)
            calls += len(replies)
        if copies == 1 and n > 1:  # greedy: one sample, repeated
            texts = [row * n for row in texts]
        return texts, prompt_tokens, completion_tokens, calls

    def _plan(self, got: list[int], copies: int) -> list[_Job]:
        """The requests that bring every prompt from `got[i]` to `copies` samples."""
        by_first: dict[int, list[int]] = {}
        for i, count in enumerate(got):
            if count < copies:
                by_first.setdefault(count, []).append(i)
        size = 1 if self._lists is False else self.config.batch_size
        jobs = []
        for first, indices in by_first.items():
            groups = [tuple(indices[s : s + size]) for s in range(0, len(indices), size)]
            step = 1 if self._n is False else copies - first
            for start in range(first, copies, step):  # a prompt's samples in order
                jobs += [_Job(group, min(step, copies - start), start) for group in groups]
        return jobs

    def _probes(self, job: _Job) -> bool:
        """Whether `job`'s reply would show something still unknown about the server."""
        return self._lists is None or (job.n > 1 and self._n is None)

    def _send(
        self, job: _Job, prompts: list[str], fields: dict[str, Any], seed: int | None, stop: list[str] | None
    ) -> _Reply:
        """One ``POST /completions`` for `job`; learns the server's ways from its answer."""
        url = f"{self.base_url}/completions"
        body: dict[str, Any] = {"model": self.model, "prompt": [prompts[i] for i in job.indices], "n": job.n}
        body.update(fields)
        if seed is not None:
            body["seed"] = seed + job.first  # sample j of a prompt has seed + j whoever draws it
        if self.config.logprobs:
            body["logprobs"] = 0
        if self.chat:
            body["add_special_tokens"] = False
        body.update(self.config.extra_body or {})
        dropped_now: list[str] = []
        while True:
            sent = {key: value for key, value in body.items() if key not in self._dropped}
            if "add_special_tokens" in body and "add_special_tokens" not in sent:
                sent["prompt"] = [self._without_bos(p) for p in sent["prompt"]]
            if self._lists is False:
                sent["prompt"] = sent["prompt"][0]  # a one-prompt job, sent as a string
            try:
                response = self._request("POST", "/completions", sent)
                break
            except ServerHTTPError as error:
                if self._lists is None and _rejects_prompt_list(error):
                    self._lists = False
                    logger.info("%s takes one prompt per request; sending one request per prompt", url)
                    raise _Replan from None
                rejected = self._rejected_fields(error, sent)
                if not rejected:
                    raise
                if dropped_now:  # one retry only
                    hint = f"also after dropping the optional fields {dropped_now}"
                    raise ServerHTTPError(error.url, error.status, error.body, hint) from None
                extra = sorted(set(rejected) - set(OPTIONAL_FIELDS))
                if extra:
                    where = " from extra_body" if set(extra) & set(self.config.extra_body or {}) else ""
                    hint = f"the server does not accept {extra}: remove them{where}"
                    raise ServerHTTPError(error.url, error.status, error.body, hint) from None
                with self._lock:
                    new = [key for key in rejected if key not in self._dropped]
                    self._dropped.update(rejected)
                dropped_now = rejected
                if new:
                    costs = "; ".join(f"without {key}, {DROPPED_COST[key]}" for key in new)
                    logger.warning("%s rejects %s (HTTP %s): sending without them; %s", url, new, error.status, costs)
        if isinstance(sent["prompt"], list):
            self._lists = True
        return self._reply(response, job, sent, stop)

    def _reply(self, response: Any, job: _Job, sent: dict[str, Any], stop: list[str] | None) -> _Reply:
        """Texts and costs per prompt of `job`, from the server's `response` to `sent`."""
        size = len(job.indices)
        choices = self._choices(response, size * job.n, size if job.n > 1 and self._n is not True else None)
        n = len(choices) // size
        if job.n > 1:
            if n == job.n:
                self._n = True
            elif self._n is None:
                self._n = False
                logger.info("%s ignores n > 1; asking for the other samples in separate requests", self.base_url)
        texts = [choice["text"] for choice in choices]
        if stop:  # some servers (transformers serve) leave the stop string in the text
            texts = [cut_step(text, stop) for text in texts]
        usage = response.get("usage") or {}
        # Completion tokens: exact per choice from logprobs, else by characters.
        counted = [_logprob_tokens(choice) for choice in choices]
        exact = all(count is not None for count in counted)
        weights = [
            count if exact else len(text) + 1  # +1: the stop or end token
            for count, text in zip(counted, texts)
        ]
        per_choice = _split(_usage_int(usage, "completion_tokens"), weights, exact, "completion", self.base_url)
        # Prompt tokens: exact with a local tokenizer (tokenizing what was sent as the server does), else by characters.
        chunk = sent["prompt"] if isinstance(sent["prompt"], list) else [sent["prompt"]]
        if self.tokenizer is not None:
            specials = sent.get("add_special_tokens", True) is not False
            prompt_weights = [len(self.tokenizer(p, add_special_tokens=specials)["input_ids"]) for p in chunk]
        else:
            prompt_weights = [len(p) for p in chunk]
        per_prompt = _split(
            _usage_int(usage, "prompt_tokens"), prompt_weights, self.tokenizer is not None, "prompt", self.base_url
        )
        return _Reply(
            texts=[texts[i * n : (i + 1) * n] for i in range(size)],
            prompt_tokens=per_prompt,
            completion_tokens=[sum(per_choice[i * n : (i + 1) * n]) for i in range(size)],
        )

    def _choices(self, response: Any, expected: int, also: int | None = None) -> list[dict[str, Any]]:
        """The response's choices in prompt-major order (``index = prompt * n + sample``).

        `also`: another acceptable count (one choice per prompt, from a server that ignores ``n``).
        """
        url = f"{self.base_url}/completions"
        choices = response.get("choices") if isinstance(response, dict) else None
        if not isinstance(choices, list):
            raise ServerResponseError(f"{url}: response has no 'choices' list: {str(response)[:500]}")
        if len(choices) not in (expected, also):
            raise ServerResponseError(
                f"{url}: expected {expected} choices (prompts x n), got {len(choices)}; "
                "does the server accept a list of prompts with n > 1?"
            )
        if any(not isinstance(c, dict) or not isinstance(c.get("text"), str) for c in choices):
            raise ServerResponseError(f"{url}: every choice needs a 'text' string: {str(choices)[:500]}")
        indices = [c.get("index") for c in choices]
        if all(isinstance(i, int) for i in indices) and sorted(indices) == list(range(len(choices))):
            choices = sorted(choices, key=lambda c: c["index"])  # else keep the server's order
        return choices

    def _rejected_fields(self, error: ServerHTTPError, sent: Mapping[str, Any]) -> list[str]:
        """Fields of `sent` that `error` rejects as unknown ([] when it is another error).

        A 422 that names no field is taken to reject the optional ones sent.
        """
        text = error.body.lower()
        if error.status != 422 and not (error.status == 400 and any(word in text for word in UNKNOWN_FIELD_WORDS)):
            return []
        named = [key for key in sent if any(f"{q}{key.lower()}{q}" in text for q in ("'", '"', "`"))]
        named = [key for key in named if key not in ("model", "prompt")]
        if named:
            return named
        return [key for key in OPTIONAL_FIELDS if key in sent] if error.status == 422 else []

    def _without_bos(self, prompt: str) -> str:
        """`prompt` without a leading BOS text, when the server's tokenizer will add the BOS itself."""
        bos = getattr(self.tokenizer, "bos_token", None)
        if not bos or not prompt.startswith(bos):
            return prompt
        if self._adds_bos is None:
            ids = self.tokenizer("", add_special_tokens=True)["input_ids"]
            self._adds_bos = bool(ids) and ids[0] == self.tokenizer.bos_token_id
        return prompt[len(bos) :] if self._adds_bos else prompt

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """JSON in, JSON out, with retries; errors name the URL (and carry the status and body)."""
        url = self.base_url + path
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        api_key = self.config.api_key if self.config.api_key is not None else os.environ.get("OPENAI_API_KEY")
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        retries, waited = self.config.max_retries, 0.0
        for attempt in range(retries + 1):
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with self._opener.open(request, timeout=self.config.timeout_s) as response:
                    payload = response.read()
                break
            except urllib.error.HTTPError as error:
                text = error.read().decode("utf-8", "replace")
                if error.code not in RETRY_STATUSES or attempt == retries:
                    raise ServerHTTPError(url, error.code, text) from None
                reason = f"HTTP {error.code}"
            except (OSError, http.client.HTTPException) as error:  # refused, dropped, timed out, unknown host
                reason, retryable = _connection_failure(error)
                if attempt == retries or not retryable:
                    tried = f"{attempt + 1} attempt(s), {waited:.1f} s of waiting; max_retries={retries}"
                    if reason == "timed out":
                        raise ServerConnectionError(
                            f"no answer from {url} within {self.config.timeout_s} s ({tried}); "
                            "raise timeout_s for long batches"
                        ) from None
                    raise ServerConnectionError(
                        f"cannot reach the OpenAI-compatible server at {url}: {reason} ({tried}). "
                        "Is it running? e.g. `vllm serve MODEL --port 8000` with base_url http://127.0.0.1:8000/v1"
                    ) from None
            delay = min(self.config.retry_backoff_s * 2**attempt, self.config.retry_backoff_max_s)
            logger.warning("%s: %s; retry %d/%d in %.1f s", url, reason, attempt + 1, retries, delay)
            time.sleep(delay)
            waited += delay
        try:
            return json.loads(payload)
        except json.JSONDecodeError:
            raise ServerResponseError(f"{url} returned invalid JSON: {payload[:300]!r}") from None


# --- helpers ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    """One request: the prompts at `indices`, `n` samples each, numbered from `first`."""

    indices: tuple[int, ...]
    n: int
    first: int


@dataclass(frozen=True)
class _Reply:
    """A request's results per prompt of its job: texts (n each) and token costs."""

    texts: list[list[str]]
    prompt_tokens: list[int]
    completion_tokens: list[int]


class _Replan(Exception):
    """The server rejected the request's form (a list of prompts); plan the work again."""


def _rejects_prompt_list(error: ServerHTTPError) -> bool:
    """A 400/422 that says the prompt must not be a list (``transformers serve``: "prompt must be a string")."""
    text = error.body.lower()
    return error.status in (400, 422) and "prompt" in text and any(w in text for w in ("str", "list", "array"))


def _connection_failure(error: OSError | http.client.HTTPException) -> tuple[str, bool]:
    """Why a request got no answer, and whether that is worth retrying (not for an unknown host)."""
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, TimeoutError):  # socket.timeout is TimeoutError
        return "timed out", True
    if isinstance(reason, socket.gaierror):
        return str(reason), False
    if isinstance(error, urllib.error.URLError):
        return str(reason), True  # e.g. [Errno 111] Connection refused
    return f"connection failed: {error!r}", True  # e.g. the server dropped the connection


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _logprob_tokens(choice: Mapping[str, Any]) -> int | None:
    """Tokens of a choice as listed by its ``logprobs`` (None when not given)."""
    logprobs = choice.get("logprobs")
    if isinstance(logprobs, Mapping) and isinstance(logprobs.get("tokens"), list):
        return len(logprobs["tokens"])
    return None


def _usage_int(usage: Mapping[str, Any], key: str) -> int | None:
    value = usage.get(key)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _split(total: int | None, weights: list[int], exact: bool, what: str, url: str) -> list[int]:
    """`total` shared in proportion to `weights` (largest remainder; sums to `total`).

    Without a reported total, exact weights (token counts) are used as they are;
    character weights are no token count, so that is an error.
    """
    if total is None:
        if exact:
            return list(weights)
        raise ServerResponseError(
            f"{url}/completions: the response has no usage.{what}_tokens, and the {what} tokens cannot be "
            f"counted locally ({'pass logprobs=True' if what == 'completion' else 'give a tokenizer'})"
        )
    weight_sum = sum(weights)
    if weight_sum == total:
        return list(weights)
    if weight_sum == 0:
        weights, weight_sum = [1] * len(weights), len(weights)
    shares = [total * w / weight_sum for w in weights]
    floors = [int(share) for share in shares]
    by_remainder = sorted(range(len(weights)), key=lambda i: floors[i] - shares[i])
    for i in by_remainder[: total - sum(floors)]:
        floors[i] += 1
    return floors
