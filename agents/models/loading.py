"""Loading causal LMs and value models from a Hub id, a local directory or a GGUF file."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)


def pick_device(device: str | None = None) -> torch.device:
    """`device` if given, else CUDA when available, else CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device, dtype: str | None = None) -> torch.dtype:
    """`dtype` by name if given, else bfloat16 on CUDA and float32 elsewhere."""
    if dtype:
        try:
            return getattr(torch, dtype)
        except AttributeError:
            raise ValueError(f"unknown torch dtype {dtype!r}") from None
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def _split_gguf(name_or_path: str) -> tuple[str, dict[str, str]]:
    """A GGUF file path becomes (its folder, {"gguf_file": name}) for from_pretrained."""
    path = Path(name_or_path)
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        return str(path.parent), {"gguf_file": path.name}
    return name_or_path, {}


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """The tokenizer of `name_or_path`, with left padding and a pad token set.

    Left padding keeps each prompt's last token at the end of the row, which
    batched generation and last-token value heads both need.
    """
    location, extra = _split_gguf(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(location, **extra)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    name_or_path: str, device: str | None = None, dtype: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal LM and its tokenizer from a Hub id, a local folder or a ``.gguf`` file.

    GGUF files are dequantised by transformers (needs the ``gguf`` package).
    """
    location, extra = _split_gguf(name_or_path)
    target = pick_device(device)
    model = AutoModelForCausalLM.from_pretrained(location, dtype=pick_dtype(target, dtype), **extra)
    return model.to(target).eval(), load_tokenizer(name_or_path)


def load_value_backbone(
    name_or_path: str, device: str | None = None, dtype: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A one-output sequence-classification model (backbone + scalar head) and tokenizer.

    A plain causal-LM checkpoint gets a freshly initialised head (transformers warns);
    a saved PRM loads its trained head.
    """
    location, extra = _split_gguf(name_or_path)
    tokenizer = load_tokenizer(name_or_path)
    target = pick_device(device)
    model = AutoModelForSequenceClassification.from_pretrained(
        location, num_labels=1, dtype=pick_dtype(target, dtype), **extra
    )
    # Sequence-classification heads find each row's last token through pad_token_id.
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(target).eval(), tokenizer
