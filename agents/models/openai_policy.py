"""A `Policy` behind an OpenAI-compatible text-completions server (vLLM, SGLang).

Start a server, then point the policy at it::

    vllm serve HuggingFaceTB/SmolLM2-1.7B-Instruct --port 8000
    # or: python -m sglang.launch_server --model-path ... --port 8000

    policy = OpenAIPolicy.from_url(
        "http://127.0.0.1:8000/v1",
        tokenizer="HuggingFaceTB/SmolLM2-1.7B-Instruct",  # renders the chat template
        num_parameters=1_700_000_000,  # servers do not report it; budgets in FLOPs need it
    )

One policy call is one ``POST {base_url}/completions`` per `batch_size` prompts:
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
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agents.models.base import Generation, SamplingConfig
from agents.models.prompts import DEFAULT_SYSTEM_PROMPT, render_prompt
from agents.models.stepwise import cut_step, group_by_stops, merge, sample_solutions_by_task
from reasoning_gym import ReasoningState
from reasoning_gym.steps import normalize_step

RETRY_STATUSES = frozenset({429, 502, 503, 504})


class ServerConnectionError(ConnectionError):
    """The server could not be reached (refused, unknown host, timed out); names the URL."""


class ServerHTTPError(RuntimeError):
    """The server answered with an HTTP error.

    Attributes:
        url: the endpoint called.
        status: the HTTP status code.
        body: the response body (the server's explanation), as text.
    """

    def __init__(self, url: str, status: int, body: str) -> None:
        self.url = url
        self.status = status
        self.body = body
        shown = body if len(body) <= 2000 else body[:2000] + "..."
        super().__init__(f"{url} answered HTTP {status}: {shown}")


class ServerResponseError(RuntimeError):
    """The server answered 200 with something that is not a usable completions response."""


@dataclass(frozen=True)
class OpenAIPolicyConfig:
    """Options of `OpenAIPolicy`.

    Attributes:
        base_url: the server's API root, ending in ``/v1``.
        model: the served model name; None asks ``GET {base_url}/models`` for the
            first one (vLLM and SGLang serve one model).
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
        max_retries: retries (with backoff) after HTTP 429/502/503/504.
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

    @classmethod
    def from_url(cls, base_url: str, **config: Any) -> OpenAIPolicy:
        """`OpenAIPolicy(OpenAIPolicyConfig(base_url=base_url, **config))`."""
        return cls(OpenAIPolicyConfig(base_url=base_url, **config))

    @property
    def model(self) -> str:
        """The served model name (asked of ``GET /models`` once when not configured)."""
        if self._model is None:
            listing = self._request("GET", "/models")
            models = listing.get("data") if isinstance(listing, dict) else None
            if not models or not isinstance(models[0], dict) or "id" not in models[0]:
                raise ServerResponseError(f"{self.base_url}/models lists no model: {str(listing)[:500]}")
            self._model = str(models[0]["id"])
        return self._model

    # --- prompts (as HFPolicy renders them) --------------------------------------

    def prompt(self, state: ReasoningState, next_step: bool) -> str:
        """The text the model continues: the state, plus ``"Step k:"`` for one step."""
        return render_prompt(state, next_step, self.tokenizer if self.chat else None, self.config.system_prompt)

    # --- the Policy protocol -----------------------------------------------------

    def propose_steps(self, states: Sequence[ReasoningState], n: int, sampling: SamplingConfig) -> Generation:
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
        """`n` completions per prompt: texts (len(prompts) x n), per-prompt costs, requests made."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        copies = 1 if sampling.greedy else n
        texts: list[list[str]] = []
        prompt_tokens: list[int] = []
        completion_tokens: list[int] = []
        calls = 0
        for start in range(0, len(prompts), self.config.batch_size):
            chunk = prompts[start : start + self.config.batch_size]
            body: dict[str, Any] = {
                "model": self.model,
                "prompt": chunk,
                "n": copies,
                "max_tokens": max_tokens,
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
            }
            if stop:
                body["stop"] = stop
            if sampling.seed is not None:
                body["seed"] = sampling.seed
            if self.config.logprobs:
                body["logprobs"] = 0
            if self.chat:
                body["add_special_tokens"] = False
            body.update(self.config.extra_body or {})
            response = self._request("POST", "/completions", body)
            calls += 1
            choices = self._choices(response, len(chunk) * copies)
            usage = response.get("usage") or {}
            # Completion tokens: exact per choice from logprobs, else by characters.
            counted = [_logprob_tokens(choice) for choice in choices]
            exact = all(count is not None for count in counted)
            weights = [
                count if exact else len(choice["text"]) + 1  # +1: the stop or end token
                for count, choice in zip(counted, choices)
            ]
            per_choice = _split(_usage_int(usage, "completion_tokens"), weights, exact, "completion", self.base_url)
            # Prompt tokens: exact with a local tokenizer, else by characters.
            if self.tokenizer is not None:
                prompt_weights = [len(self.tokenizer(p, add_special_tokens=not self.chat)["input_ids"]) for p in chunk]
            else:
                prompt_weights = [len(p) for p in chunk]
            per_prompt = _split(
                _usage_int(usage, "prompt_tokens"), prompt_weights, self.tokenizer is not None, "prompt", self.base_url
            )
            for i in range(len(chunk)):
                row = [choices[i * copies + (j if copies > 1 else 0)]["text"] for j in range(n)]
                texts.append(row)
                prompt_tokens.append(per_prompt[i])
                completion_tokens.append(sum(per_choice[i * copies : (i + 1) * copies]))
        return texts, prompt_tokens, completion_tokens, calls

    def _choices(self, response: Any, expected: int) -> list[dict[str, Any]]:
        """The response's choices in prompt-major order (``index = prompt * n + sample``)."""
        url = f"{self.base_url}/completions"
        choices = response.get("choices") if isinstance(response, dict) else None
        if not isinstance(choices, list):
            raise ServerResponseError(f"{url}: response has no 'choices' list: {str(response)[:500]}")
        if len(choices) != expected:
            raise ServerResponseError(
                f"{url}: expected {expected} choices (prompts x n), got {len(choices)}; "
                "does the server accept a list of prompts with n > 1?"
            )
        if any(not isinstance(c, dict) or not isinstance(c.get("text"), str) for c in choices):
            raise ServerResponseError(f"{url}: every choice needs a 'text' string: {str(choices)[:500]}")
        indices = [c.get("index") for c in choices]
        if all(isinstance(i, int) for i in indices) and sorted(indices) == list(range(expected)):
            choices = sorted(choices, key=lambda c: c["index"])  # else keep the server's order
        return choices

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """JSON in, JSON out; errors name the URL (and carry the status and body)."""
        url = self.base_url + path
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        api_key = self.config.api_key if self.config.api_key is not None else os.environ.get("OPENAI_API_KEY")
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        for attempt in range(self.config.max_retries + 1):
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with self._opener.open(request, timeout=self.config.timeout_s) as response:
                    payload = response.read()
                break
            except urllib.error.HTTPError as error:
                text = error.read().decode("utf-8", "replace")
                if error.code in RETRY_STATUSES and attempt < self.config.max_retries:
                    time.sleep(0.5 * 2**attempt)
                    continue
                raise ServerHTTPError(url, error.code, text) from None
            except urllib.error.URLError as error:
                raise ServerConnectionError(
                    f"cannot reach the OpenAI-compatible server at {url}: {error.reason}. "
                    "Is it running? e.g. `vllm serve MODEL --port 8000` with base_url http://127.0.0.1:8000/v1"
                ) from None
            except TimeoutError:
                raise ServerConnectionError(
                    f"no answer from {url} within {self.config.timeout_s} s (raise timeout_s for long batches)"
                ) from None
            except (OSError, http.client.HTTPException) as error:  # e.g. the server dropped the connection
                raise ServerConnectionError(f"connection to {url} failed: {error!r}") from None
        try:
            return json.loads(payload)
        except json.JSONDecodeError:
            raise ServerResponseError(f"{url} returned invalid JSON: {payload[:300]!r}") from None


# --- helpers ----------------------------------------------------------------------


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
