"""Dataclass configs from YAML: nested dataclasses, and errors that name the bad key."""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or mapping does not fit its dataclass; the message names the key."""


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """Build dataclass `cls` from a mapping, recursing into nested dataclass fields.

    Unknown keys raise ConfigError naming them (with `where`, e.g. the file and
    the path of keys) and listing the valid ones. Lists become tuples where the
    field's type is a tuple.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} for {cls.__name__}; valid keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {name: _convert(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    for candidate in _dataclass_options(hint):
        if isinstance(value, dict):
            return from_dict(candidate, value, where)
    origin = typing.get_origin(hint)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    return value


def _dataclass_options(hint: Any) -> list[type]:
    """Dataclass types named by `hint` (itself, or members of a union such as ``X | None``)."""
    if dataclasses.is_dataclass(hint):
        return [hint]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [arg for arg in typing.get_args(hint) if dataclasses.is_dataclass(arg)]
    return []


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: Sequence[str], where: str = "--set") -> dict[str, Any]:
    """A copy of the mapping `data` with ``KEY.PATH=VALUE`` overrides applied (e.g. from ``--set``).

    Dotted keys walk into nested mappings, creating those missing
    (``agents.mcts_star.exploration=0.5``); a leading ``--`` is dropped, as
    ``wandb agent`` writes ``--key=value``. Values are read as YAML (``0.5``,
    ``3``, ``true``, ``null``, ``[1, 2]``; ``1e-05`` too), else kept as text. Build
    the config from the result with `from_dict`, so a misspelt key is an error
    naming it.
    """
    result = copy.deepcopy(data)
    for override in overrides:
        key, equals, text = override.partition("=")
        key = key.strip().lstrip("-")
        if not equals or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"{where}: expected KEY=VALUE (e.g. agents.mcts_star.exploration=0.5), got {override!r}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        if isinstance(value, str):  # YAML 1.1 reads 1e-05 as text
            try:
                value = float(value)
            except ValueError:
                pass
        node = result
        *parents, last = key.split(".")
        for depth, part in enumerate(parents):
            if node.get(part) is None:
                node[part] = {}
            elif not isinstance(node[part], dict):
                raise ConfigError(f"{where}: {key}: {'.'.join(parents[: depth + 1])} is not a mapping")
            node = node[part]
        node[last] = value
    return result


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain data (for manifests, YAML and W&B)."""
    return dataclasses.asdict(config)
