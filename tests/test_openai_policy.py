"""`OpenAIPolicy` against a small deterministic OpenAI-compatible server on 127.0.0.1.

The server (an `http.server` in a thread) implements ``GET /v1/models`` and
``POST /v1/completions`` the way vLLM does for what the policy uses: a list of
prompts, ``n`` samples each, ``stop`` strings, ``max_tokens``, ``logprobs`` and
``usage`` totals. Its "tokenizer" is one token per character plus a BOS per
prompt, like the bundled char tokenizer, so token counts can be checked exactly.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agents.config import ConfigError
from agents.models.base import GREEDY, Policy, SamplingConfig
from agents.models.openai_policy import (
    OpenAIPolicy,
    OpenAIPolicyConfig,
    ServerConnectionError,
    ServerHTTPError,
    ServerResponseError,
)
from agents.models.presets import build_policy, read_preset
from agents.models.tiny import build_char_tokenizer
from agents.search import Budget, SelfConsistency, SelfConsistencyConfig
from reasoning_gym import Problem, ReasoningState

MODEL = "fake-model"


def continuation(prompt: str, sample: int, seed) -> str:
    """What the fake model writes after `prompt` for sample `sample`."""
    return f" s{sample} seed {seed} len {len(prompt)}\nStep 9: 3 + 4 = 7\nThe answer is 7"


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.reset()

    def reset(self) -> None:
        self.requests: list[tuple[str, str, dict, dict]] = []  # method, path, headers, body
        self.fail: list[tuple[int, str]] = []  # (status, body) answered before serving normally
        self.with_logprobs = True
        self.reverse_choices = False
        self.drop_choice = False
        self.omit_usage = False
        self.ignore_n = False  # one choice per prompt whatever n says (llama.cpp, transformers serve)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, payload) -> None:
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.server.requests.append(("GET", self.path, dict(self.headers), {}))
        if self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        else:
            self._send(404, {"object": "error", "message": f"no route {self.path}"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        server.requests.append(("POST", self.path, dict(self.headers), body))
        if server.fail:
            self._send(*server.fail.pop(0))
            return
        if self.path != "/v1/completions":
            self._send(404, {"object": "error", "message": f"no route {self.path}"})
            return
        if body.get("model") != MODEL:
            message = f"The model `{body.get('model')}` does not exist."
            self._send(404, {"object": "error", "message": message, "code": 404})
            return
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        n, max_tokens, stops = body.get("n", 1), body["max_tokens"], body.get("stop") or []
        if server.ignore_n:
            n = 1
        choices, prompt_tokens, completion_tokens = [], 0, 0
        for prompt in prompts:
            prompt_tokens += len(prompt) + (0 if body.get("add_special_tokens") is False else 1)
            for sample in range(n):
                text = continuation(prompt, sample, body.get("seed"))
                cut = text[:max_tokens]
                hits = [cut.find(stop) for stop in stops if stop in cut]
                if hits:  # the stop string's tokens are generated (and counted), not returned
                    end = min(hits)
                    tokens, finish = list(cut[: end + 1]), "stop"
                    cut = cut[:end]
                elif len(text) > max_tokens:
                    tokens, finish = list(cut), "length"
                else:
                    tokens, finish = [*cut, "</s>"], "stop"
                completion_tokens += len(tokens)
                logprobs = {"tokens": tokens, "token_logprobs": [-0.5] * len(tokens)} if "logprobs" in body else None
                choices.append({"index": len(choices), "text": cut, "finish_reason": finish,
                                "logprobs": logprobs if server.with_logprobs else None})
        if server.reverse_choices:
            choices.reverse()
        if server.drop_choice:
            choices.pop()
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        response = {"id": "cmpl-1", "object": "text_completion", "model": MODEL, "choices": choices}
        if not server.omit_usage:
            response["usage"] = usage
        self._send(200, response)


@pytest.fixture(scope="module")
def server():
    httpd = FakeServer()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def fake(server):
    server.reset()
    return server


@pytest.fixture(scope="module")
def char_tokenizer():
    return build_char_tokenizer()


def states() -> list[ReasoningState]:
    a = Problem("a", "Tom has 3 apples and buys 4 more. How many apples?", "7")
    b = Problem("b", "What is 6 * 7?", "42")
    return [ReasoningState(a), ReasoningState(a, ("3 + 4 = 7",)), ReasoningState(b)]


def posts(server: FakeServer) -> list[dict]:
    return [body for method, _, _, body in server.requests if method == "POST"]


def test_one_batched_request_with_n_samples_stop_and_exact_token_accounting(fake, char_tokenizer):
    # The char tokenizer (no chat template) counts prompts exactly as the server does.
    config = OpenAIPolicyConfig(base_url=fake.url, prompt_format="plain", num_parameters=123)
    policy = OpenAIPolicy(config, char_tokenizer)
    assert isinstance(policy, Policy) and policy.num_parameters == 123
    batch = states()
    sampling = SamplingConfig(temperature=0.7, top_p=0.9, max_new_tokens=40, seed=5)
    generation = policy.propose_steps(batch, 3, sampling)

    assert [method for method, *_ in fake.requests] == ["GET", "POST"]  # model looked up once, one batch
    (body,) = posts(fake)
    prompts = [policy.prompt(state, next_step=True) for state in batch]
    assert prompts[1].endswith("Step 1: 3 + 4 = 7\nStep 2:")
    assert body["prompt"] == prompts and body["model"] == MODEL
    assert (body["n"], body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (3, 0.7, 0.9, 40, 5)
    assert body["stop"] == ["\n"] and body["logprobs"] == 0 and "add_special_tokens" not in body

    assert generation.calls == 1
    assert generation.texts == [
        [f"s{j} seed 5 len {len(prompt)}" for j in range(3)] for prompt in prompts
    ]  # single-line steps, the stop string cut off
    assert generation.prompt_tokens == [len(prompt) + 1 for prompt in prompts]  # once per prompt, BOS included
    expected = [sum(len(continuation(p, j, 5).split("\n")[0]) + 1 for j in range(3)) for p in prompts]
    assert generation.completion_tokens == expected  # each sample up to and including its stop token


def test_model_name_from_config_skips_the_lookup_and_api_key_is_sent(fake):
    policy = OpenAIPolicy.from_url(fake.url, model=MODEL, api_key="sk-test")
    policy.propose_steps(states()[:1], 1, SamplingConfig(seed=0))
    assert [method for method, *_ in fake.requests] == ["POST"]
    headers = fake.requests[0][2]
    assert headers["Authorization"] == "Bearer sk-test"


def test_greedy_asks_for_one_sample_and_counts_it_once(fake):
    policy = OpenAIPolicy.from_url(fake.url, model=MODEL)
    generation = policy.propose_steps(states(), 4, GREEDY)
    (body,) = posts(fake)
    assert body["n"] == 1 and body["temperature"] == 0 and "seed" not in body
    for row in generation.texts:
        assert len(row) == 4 and len(set(row)) == 1
    prompts = body["prompt"]
    assert generation.completion_tokens == [len(continuation(p, 0, None).split("\n")[0]) + 1 for p in prompts]


def test_prompt_tokens_without_a_tokenizer_split_the_server_total_by_characters(fake):
    policy = OpenAIPolicy.from_url(fake.url, model=MODEL)
    generation = policy.propose_steps(states(), 2, SamplingConfig(seed=1))
    prompts = posts(fake)[0]["prompt"]
    assert generation.total_prompt_tokens == sum(len(p) + 1 for p in prompts)  # the server's total, exactly
    for share, prompt in zip(generation.prompt_tokens, prompts):
        assert abs(share - (len(prompt) + 1)) <= 1


def test_batch_size_splits_requests_and_keeps_order(fake):
    policy = OpenAIPolicy.from_url(fake.url, model=MODEL, batch_size=2)
    generation = policy.propose_steps(states(), 2, SamplingConfig(seed=3))
    bodies = posts(fake)
    assert [len(body["prompt"]) for body in bodies] == [2, 1] and generation.calls == 2
    prompts = bodies[0]["prompt"] + bodies[1]["prompt"]
    assert generation.texts == [[f"s{j} seed 3 len {len(p)}" for j in range(2)] for p in prompts]


def test_ignored_n_is_made_up_by_concurrent_requests_with_the_next_seeds(fake):
    fake.ignore_n = True
    policy = OpenAIPolicy.from_url(fake.url, model=MODEL)
    generation = policy.propose_steps(states(), 3, SamplingConfig(seed=5))
    bodies = posts(fake)
    assert [(b["n"], b["seed"]) for b in bodies[:1]] == [(3, 5)]  # one choice per prompt came back
    assert sorted((b["n"], b["seed"]) for b in bodies[1:]) == [(1, 6), (1, 7)]  # the other samples
    assert generation.calls == 3 and all(b["prompt"] == bodies[0]["prompt"] for b in bodies)
    prompts = bodies[0]["prompt"]
    assert generation.texts == [[f"s0 seed {seed} len {len(p)}" for seed in (5, 6, 7)] for p in prompts]
    assert generation.prompt_tokens == [3 * (len(p) + 1) for p in prompts]  # the prompt was sent three times
    fake.reset()
    fake.ignore_n = True
    policy.propose_steps(states(), 2, SamplingConfig(seed=0))  # learned: n = 1 from the start
    assert sorted((b["n"], b["seed"]) for b in posts(fake)) == [(1, 0), (1, 1)]


def test_choices_are_reordered_by_index(fake):
    fake.reverse_choices = True
    policy = OpenAIPolicy.from_url(fake.url, model=MODEL)
    generation = policy.propose_steps(states(), 2, SamplingConfig(seed=0))
    prompts = posts(fake)[0]["prompt"]
    assert generation.texts == [[f"s{j} seed 0 len {len(p)}" for j in range(2)] for p in prompts]


def test_completion_tokens_without_logprobs_split_the_total(fake):
    fake.with_logprobs = False
    policy = OpenAIPolicy.from_url(fake.url, model=MODEL)
    generation = policy.propose_steps(states(), 3, SamplingConfig(seed=2, max_new_tokens=8))
    # Every sample is cut at max_new_tokens = 8 characters ("length"): 3 x 8 per state.
    assert generation.completion_tokens == [24, 24, 24]
    assert all(len(step) <= 8 for row in generation.texts for step in row)


def test_sample_solutions_has_no_stop_and_honours_the_token_cap(fake):
    policy = OpenAIPolicy.from_url(fake.url, model=MODEL)
    generation = policy.sample_solutions(states()[:1], 2, SamplingConfig(seed=4, max_new_tokens=200))
    (body,) = posts(fake)
    assert "stop" not in body and body["max_tokens"] == 200
    assert generation.texts[0][1].endswith("\nStep 9: 3 + 4 = 7\nThe answer is 7")
    assert generation.completion_tokens == [sum(len(t) + 1 for t in generation.texts[0])]  # + end token


def test_chat_format_renders_the_template_locally(fake):
    tokenizer = build_char_tokenizer()
    tokenizer.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    policy = OpenAIPolicy(OpenAIPolicyConfig(base_url=fake.url, model=MODEL, system_prompt="Be brief."), tokenizer)
    assert policy.chat
    state = states()[1]
    generation = policy.propose_steps([state], 1, SamplingConfig(seed=0))
    (body,) = posts(fake)
    head = f"<system>Be brief.\n<user>{state.problem.question}\n<assistant>"
    assert body["prompt"] == [head + "Step 1: 3 + 4 = 7\nStep 2:"]
    assert body["add_special_tokens"] is False
    assert generation.prompt_tokens == [len(body["prompt"][0])]  # no BOS on either side


def test_self_consistency_runs_over_the_server(fake):
    policy = OpenAIPolicy.from_url(fake.url, model=MODEL)
    agent = SelfConsistency(policy, SelfConsistencyConfig(temperature=0.7, max_samples=4, samples_per_round=2))
    (result,) = agent.solve([states()[0].problem], Budget(completion_tokens=10_000))
    assert result.answer == "7" and len(result.traces) == 4
    assert result.usage.policy_completion_tokens > 0 and result.usage.policy_calls == 2


def test_preset_with_the_openai_backend(fake):
    policy_options = {"backend": "openai", "base_url": fake.url, "num_parameters": 7}
    spec = read_preset({"policy": policy_options, "sampling": {"seed": 1}})
    policy = build_policy(spec)
    assert isinstance(policy, OpenAIPolicy) and fake.requests == []  # no request until used
    generation = policy.propose_steps(states()[:1], 2, spec.sampling)
    assert generation.texts[0][0].startswith("s0 seed 1") and policy.model == MODEL
    with pytest.raises(ConfigError, match="unknown key.*'temperature'"):
        read_preset({"policy": {"backend": "openai", "temperature": 0.5}})


# --- errors ---------------------------------------------------------------------------


def test_connection_refused_names_the_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    policy = OpenAIPolicy.from_url(f"http://127.0.0.1:{port}/v1", model=MODEL, timeout_s=5, retry_backoff_s=0.01)
    with pytest.raises(ServerConnectionError, match=rf"http://127\.0\.0\.1:{port}/v1/completions.*3 attempt\(s\)"):
        policy.propose_steps(states()[:1], 1, GREEDY)  # refused, retried twice (max_retries=2)


def test_http_errors_carry_status_and_body(fake):
    fake.fail = [(400, {"object": "error", "message": "max_tokens is too large", "code": 400})]
    policy = OpenAIPolicy.from_url(fake.url, model=MODEL)
    with pytest.raises(ServerHTTPError, match="HTTP 400.*max_tokens is too large") as caught:
        policy.propose_steps(states()[:1], 1, GREEDY)
    assert caught.value.status == 400 and "max_tokens is too large" in caught.value.body
    assert caught.value.url == f"{fake.url}/completions"


def test_unknown_model_is_reported_by_the_server(fake):
    policy = OpenAIPolicy.from_url(fake.url, model="nope")
    with pytest.raises(ServerHTTPError, match="HTTP 404.*`nope` does not exist"):
        policy.propose_steps(states()[:1], 1, GREEDY)


def test_overloaded_server_is_retried(fake):
    fake.fail = [(503, "busy")]
    policy = OpenAIPolicy.from_url(fake.url, model=MODEL, max_retries=1)
    generation = policy.propose_steps(states()[:1], 1, GREEDY)
    assert len(posts(fake)) == 2 and generation.texts[0][0]
    fake.reset()
    fake.fail = [(503, "busy"), (503, "still busy")]
    with pytest.raises(ServerHTTPError, match="HTTP 503: still busy"):
        policy.propose_steps(states()[:1], 1, GREEDY)


def test_malformed_responses_are_explained(fake):
    fake.drop_choice = True
    policy = OpenAIPolicy.from_url(fake.url, model=MODEL)
    with pytest.raises(ServerResponseError, match="expected 6 choices"):
        policy.propose_steps(states(), 2, SamplingConfig(seed=0))
    fake.reset()
    fake.omit_usage = True
    fake.with_logprobs = False
    with pytest.raises(ServerResponseError, match="no usage.completion_tokens"):
        policy.propose_steps(states(), 2, SamplingConfig(seed=0))
    fake.reset()
    fake.fail = [(200, "not json")]
    with pytest.raises(ServerResponseError, match="invalid JSON"):
        policy.propose_steps(states(), 2, SamplingConfig(seed=0))


def test_config_is_validated():
    with pytest.raises(ValueError, match="needs `tokenizer`"):
        OpenAIPolicyConfig(prompt_format="chat")
    with pytest.raises(ValueError, match="http"):
        OpenAIPolicyConfig(base_url="127.0.0.1:8000")
    with pytest.raises(ValueError, match="batch_size"):
        OpenAIPolicyConfig(batch_size=0)
