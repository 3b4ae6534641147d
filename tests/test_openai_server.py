"""`OpenAIPolicy` against a real OpenAI-compatible server: ``transformers serve``.

The test starts ``transformers serve`` (from ``transformers[serving]``) as a
subprocess on 127.0.0.1, offline (``HF_HUB_OFFLINE=1``, an empty ``HF_HOME``),
in its own process group that a fixture finaliser always kills. The server loads
local model folders on demand (the ``model`` field of a request names the folder),
so one server serves both models below; it is ready when ``GET /health`` answers 200.

The model is a bundled tiny Llama (`build_policy_model`, char tokenizer) whose
weights are set by hand to a bigram table: its transformer blocks add nothing, so
the next token depends on the last one only, and every sample of a step after
``"Step k:"`` is ``" \\boxed{7}\\n"`` (11 tokens) whatever the seed. Texts and token
counts can therefore be checked exactly through the real server.

What ``transformers serve`` does differently from vLLM, and the client handles
(`test_what_the_server_does` pins each one down over raw HTTP):
a list of prompts is rejected (HTTP 400), ``n`` > 1 is ignored (one choice),
the stop string is left in the text, ``/v1/models`` lists a local folder only once
loaded, and an unknown field (``add_special_tokens``) is rejected with 422.
Faults: a frozen server (SIGSTOP) times requests out; a killed server (SIGKILL)
is restarted on the same port in the middle of a Self-Consistency run.

The server tests fail, naming what is missing, where ``transformers[serving]`` is
not installed; ``make test`` installs it (the ``dev`` extra). The last test
checks that ``configs/vllm.yaml``, the production preset, loads.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from agents.models.base import GREEDY, SamplingConfig
from agents.models.openai_policy import OpenAIPolicy, OpenAIPolicyConfig, ServerConnectionError, ServerHTTPError
from agents.models.presets import read_preset
from agents.models.tiny import TinyModelConfig, build_char_tokenizer, build_policy_model
from agents.search import Budget, SelfConsistency, SelfConsistencyConfig
from reasoning_gym import Problem, ReasoningState

ROOT = Path(__file__).resolve().parents[1]


def _serve_missing() -> str | None:
    """Why ``transformers serve`` with ``/v1/completions`` cannot run here (None when it can)."""
    from transformers.utils.import_utils import is_serve_available

    if not is_serve_available():
        return "transformers[serving] is not installed (fastapi, uvicorn, openai); `make test` installs it"
    if importlib.util.find_spec("transformers.cli.serving.completion") is None:
        return "this transformers has no /v1/completions in `transformers serve` (needs a newer 5.x)"
    return None


# Each character is followed by the next; "\\n" is followed by "\\" again, so a whole
# solution repeats "\\boxed{7}\\n" up to its token cap.
CHAIN = ": \\boxed{7}\n\\"
STEP = " \\boxed{7}\n"  # what the model writes after "Step k:"
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}[assistant]\n{% endif %}"
)
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def save_scripted_model(folder: Path, chat_template: str | None = None) -> Path:
    """A tiny Llama that writes `CHAIN`, saved with ``save_pretrained`` (with its tokenizer)."""
    tokenizer = build_char_tokenizer()
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    config = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, tokenizer="char")
    model = build_policy_model(config, tokenizer)
    chars = list(dict.fromkeys(CHAIN))
    ids = tokenizer.convert_tokens_to_ids(chars)
    with torch.no_grad():
        for layer in model.model.layers:  # the blocks add nothing: the last token's embedding reaches the head
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed = torch.zeros_like(model.model.embed_tokens.weight)
        head = torch.zeros_like(embed)
        for dim, token in enumerate(ids):
            embed[token, dim] = 1.0
        for current, following in zip(CHAIN, CHAIN[1:]):
            head[ids[chars.index(following)], chars.index(current)] = 4.0  # logit ~23: p(other) < 1e-8
        model.model.embed_tokens.weight.copy_(embed)
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(head)
    model.generation_config.do_sample = True  # transformers serve samples only when the model's config says so
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    """Raw JSON request (no retries): status and decoded body."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with _NO_PROXY.open(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class ServeProcess:
    """``transformers serve`` on 127.0.0.1:`port` in its own process group: start, kill, freeze, thaw."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.log_path = workdir / "serve.log"
        self.hf_home = workdir / "hf_home"  # empty: nothing cached, nothing listed
        self.process: subprocess.Popen | None = None

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.root}/v1"

    def start(self, timeout_s: float = 90.0) -> None:
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "HF_HOME": str(self.hf_home),
            "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        command = [sys.executable, "-m", "transformers.cli.transformers", "serve",
                   "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu", "--log-level", "error"]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"transformers serve exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with _NO_PROXY.open(f"{self.root}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"transformers serve not ready within {timeout_s} s:\n{self.log_tail()}")

    def _signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)

    def stop(self) -> None:
        """Kill the whole process group (SIGKILL) and reap it."""
        self._signal(signal.SIGCONT)
        self._signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)

    def freeze(self) -> None:
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal(signal.SIGCONT)

    def ensure_running(self) -> None:
        self.thaw()
        if self.process is None or self.process.poll() is not None:
            self.start()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("served_models")
    return {
        "plain": save_scripted_model(root / "plain"),
        "chat": save_scripted_model(root / "chat", CHAT_TEMPLATE),
    }


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    missing = _serve_missing()
    if missing is not None:  # `make test` installs the dev extra, which brings transformers[serving]
        pytest.fail(f"the real-server tests need transformers[serving] (pip install -e '.[dev]'): {missing}")
    process = ServeProcess(tmp_path_factory.mktemp("serve"))
    try:
        process.start()
        yield process
    finally:
        process.stop()


@pytest.fixture
def server(serve) -> ServeProcess:
    """The module's server, running (a fault test may have killed or frozen it)."""
    serve.ensure_running()
    return serve


def states() -> list[ReasoningState]:
    a = Problem("a", "Tom has 3 apples and buys 4 more. How many apples?", "7")
    b = Problem("b", "What is 3 + 4?", "7")
    return [ReasoningState(a), ReasoningState(a, ("3 + 4 = 7",)), ReasoningState(b)]


def spy(policy: OpenAIPolicy) -> list[dict]:
    """Record the bodies `policy` sends (every attempt)."""
    bodies: list[dict] = []
    request = policy._request

    def recording(method, path, body=None):
        if body is not None:
            bodies.append(dict(body))
        return request(method, path, body)

    policy._request = recording
    return bodies


@pytest.mark.slow
def test_what_the_server_does(server, models):
    """The behaviours the client must handle, seen over raw HTTP."""
    assert http("POST", f"{server.root}/reset")[0] == 200  # unload: a fresh server
    assert http("GET", f"{server.url}/models") == (200, {"object": "list", "data": []})  # local folder not listed
    body = {"model": str(models["plain"]), "prompt": "Problem: q\nSolution:\nStep 1:", "max_tokens": 20,
            "temperature": 0.7, "stop": ["\n"], "n": 3, "seed": 1}
    status, reply = http("POST", f"{server.url}/completions", body)
    assert status == 200 and len(reply["choices"]) == 1  # n = 3 ignored
    assert reply["choices"][0]["text"] == STEP  # stop string left in the text
    assert reply["usage"]["completion_tokens"] == len(STEP)
    assert [m["id"] for m in http("GET", f"{server.url}/models")[1]["data"]] == [str(models["plain"])]  # once loaded
    status, reply = http("POST", f"{server.url}/completions", {**body, "prompt": [body["prompt"]] * 2})
    assert status == 400 and "prompt must be a string" in reply["detail"]
    status, reply = http("POST", f"{server.url}/completions", {**body, "add_special_tokens": False})
    assert status == 422 and "add_special_tokens" in reply["detail"]


@pytest.mark.slow
def test_propose_steps_fans_out_strips_stops_and_counts_tokens(server, models):
    http("POST", f"{server.root}/reset")  # /v1/models lists nothing: the tokenizer name is the model name
    policy = OpenAIPolicy.from_url(server.url, tokenizer=str(models["plain"]), num_parameters=1)
    assert not policy.chat
    bodies = spy(policy)
    batch = states()
    sampling = SamplingConfig(temperature=0.7, max_new_tokens=24, seed=5)
    generation = policy.propose_steps(batch, 3, sampling)

    assert policy.model == str(models["plain"])
    assert generation.texts == [["\\boxed{7}"] * 3] * 3  # stop string cut off
    # A list of prompts was rejected, n ignored: one request per sample, sample j with seed 5 + j.
    assert isinstance(bodies[0]["prompt"], list) and all(isinstance(b["prompt"], str) for b in bodies[1:])
    assert generation.calls == 9 == len(bodies) - 1
    prompts = [policy.prompt(state, next_step=True) for state in batch]
    assert sorted((b["prompt"], b["seed"], b["n"]) for b in bodies[1:]) == sorted(
        (p, 5 + j, 1 if (p, j) != (prompts[0], 0) else 3) for p in prompts for j in range(3)
    )
    # Tokens: the server's usage, per request; the char tokenizer counts one per character plus BOS.
    assert generation.completion_tokens == [3 * len(STEP)] * 3
    assert generation.prompt_tokens == [3 * (len(p) + 1) for p in prompts]

    # What was learned sticks: the next call sends one string prompt, n = 1, per sample, straight away.
    bodies.clear()
    again = policy.propose_steps(batch[:2], 2, sampling)
    assert again.calls == 4 == len(bodies) and all(b["n"] == 1 and isinstance(b["prompt"], str) for b in bodies)
    assert again.texts == [["\\boxed{7}"] * 2] * 2


@pytest.mark.slow
def test_greedy_is_one_request_per_state(server, models):
    policy = OpenAIPolicy.from_url(server.url, model=str(models["plain"]), tokenizer=str(models["plain"]))
    generation = policy.propose_steps(states(), 4, GREEDY)
    assert generation.texts == [["\\boxed{7}"] * 4] * 3
    assert generation.calls == 3 and generation.completion_tokens == [len(STEP)] * 3


@pytest.mark.slow
def test_sample_solutions_and_self_consistency(server, models):
    policy = OpenAIPolicy.from_url(server.url, model=str(models["plain"]), tokenizer=str(models["plain"]))
    generation = policy.sample_solutions(states()[:2], 2, SamplingConfig(seed=0, max_new_tokens=20))
    assert generation.texts == [["\\boxed{7}\n\\boxed{7}\n"] * 2] * 2  # no stop: up to the token cap
    assert generation.completion_tokens == [40, 40] and generation.calls == 4
    agent = SelfConsistency(policy, SelfConsistencyConfig(temperature=0.7, max_new_tokens=20, max_samples=4,
                                                          samples_per_round=2))
    results = agent.solve([s.problem for s in states()[::2]], Budget(completion_tokens=10_000))
    for result in results:
        assert result.answer == "7" and len(result.traces) == 4 and result.usage.policy_calls == 2
        assert result.usage.policy_completion_tokens == 4 * 20


@pytest.mark.slow
def test_rejected_optional_field_is_dropped_and_bos_left_to_the_server(server, models, caplog):
    policy = OpenAIPolicy.from_url(server.url, model=str(models["chat"]), tokenizer=str(models["chat"]))
    assert policy.chat
    bodies = spy(policy)
    state = states()[1]
    rendered = policy.prompt(state, next_step=True)
    assert rendered.startswith("<s>[system] ")
    with caplog.at_level(logging.WARNING, logger="agents.models.openai_policy"):
        generation = policy.propose_steps([state], 1, SamplingConfig(seed=0, max_new_tokens=24))
    assert generation.texts == [["\\boxed{7}"]]
    assert bodies[0]["add_special_tokens"] is False  # 422, then sent without it:
    assert "add_special_tokens" not in bodies[-1] and bodies[-1]["prompt"] == rendered.removeprefix("<s>")
    assert "rejects ['add_special_tokens']" in caplog.text
    # One BOS, added by the server: its count is the local count of the rendered prompt.
    assert generation.prompt_tokens == [len(policy.tokenizer(rendered, add_special_tokens=False)["input_ids"])]

    strict = OpenAIPolicy.from_url(server.url, model=str(models["plain"]), extra_body={"top_k": 5})
    with pytest.raises(ServerHTTPError, match=r"HTTP 422.*does not accept \['top_k'\]: remove them from extra_body"):
        strict.propose_steps([state], 1, GREEDY)


@pytest.mark.slow
def test_timeout_is_retried_with_backoff(server, models):
    config = {"model": str(models["plain"]), "timeout_s": 1.0, "retry_backoff_s": 0.2, "retry_backoff_max_s": 0.5}
    server.freeze()  # accepts connections, answers nothing
    try:
        impatient = OpenAIPolicy.from_url(server.url, max_retries=1, **config)
        with pytest.raises(ServerConnectionError, match=rf"no answer from {server.url}/completions within 1.0 s "
                                                        r"\(2 attempt\(s\), 0.2 s of waiting; max_retries=1\)"):
            impatient.propose_steps(states()[:1], 1, GREEDY)
        patient = OpenAIPolicy.from_url(server.url, max_retries=10, **config)
        thaw = threading.Timer(1.5, server.thaw)
        thaw.start()
        started = time.monotonic()
        generation = patient.propose_steps(states()[:1], 1, GREEDY)
        assert time.monotonic() - started >= 1.0 and generation.texts == [["\\boxed{7}"]]
    finally:
        server.thaw()


class KillOnce(OpenAIPolicy):
    """Kills the server after its first completed call, checks that a short retry budget
    fails clearly, then restarts the server in a background thread."""

    def __init__(self, server: ServeProcess, short: OpenAIPolicy, **config) -> None:
        super().__init__(OpenAIPolicyConfig(base_url=server.url, **config))
        self.server, self.short = server, short
        self.restarter: threading.Thread | None = None
        self.restart_error: BaseException | None = None
        self.old_pid = 0

    def sample_solutions(self, states, n, sampling):
        generation = super().sample_solutions(states, n, sampling)
        if self.restarter is None:
            self.old_pid = self.server.process.pid
            self.server.stop()
            with pytest.raises(ServerConnectionError, match=rf"cannot reach .* at {self.server.url}/completions: "
                                                            r".*Connection refused \(2 attempt\(s\)"):
                self.short.sample_solutions(states, n, sampling)
            self.restarter = threading.Thread(target=self._restart)
            self.restarter.start()
        return generation

    def _restart(self) -> None:
        try:
            time.sleep(0.5)
            self.server.start()
        except BaseException as error:  # reported by the test
            self.restart_error = error


@pytest.mark.slow
def test_server_killed_and_restarted_in_the_middle_of_a_search(server, models):
    model = str(models["plain"])
    short = OpenAIPolicy.from_url(server.url, model=model, max_retries=1, retry_backoff_s=0.1)
    policy = KillOnce(server, short, model=model, max_retries=200, retry_backoff_s=0.2, retry_backoff_max_s=0.5)
    agent = SelfConsistency(policy, SelfConsistencyConfig(temperature=0.7, max_new_tokens=20, max_samples=4,
                                                          samples_per_round=2))
    try:
        (result,) = agent.solve([states()[0].problem], Budget(completion_tokens=10_000))
    finally:
        if policy.restarter is not None:
            policy.restarter.join(timeout=120)
    assert policy.restart_error is None, f"restart failed: {policy.restart_error}"
    assert server.process.pid != policy.old_pid  # a new server answered the second round
    # Both rounds are in the result: the first round's samples survived the restart.
    assert result.answer == "7" and len(result.traces) == 4 and result.usage.policy_calls == 2
    assert result.usage.policy_completion_tokens == 4 * 20


def test_vllm_preset_loads():
    """configs/vllm.yaml: the production preset (a vLLM server started separately)."""
    spec = read_preset(ROOT / "configs" / "vllm.yaml")
    assert spec.backend == "openai"
    config = OpenAIPolicyConfig(**spec.policy)  # every key is an OpenAIPolicyConfig field, and valid
    assert config.base_url == "http://127.0.0.1:8000/v1" and config.prompt_format == "chat"
    assert config.model == config.tokenizer and config.num_parameters > 0 and config.logprobs
    assert spec.sampling.temperature > 0 and spec.sampling.seed is not None
