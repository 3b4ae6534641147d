"""Loading causal LMs and value models from a Hub id, a local directory or a GGUF file."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

logger = logging.getLogger(__name__)


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
    name_or_path: str, device: str | None = None, dtype: str | None = None, new_head_expected: bool = True
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A one-output sequence-classification model (backbone + scalar head) and tokenizer.

    A plain causal-LM checkpoint gets a freshly initialised head. Before PRM
    training that is expected (the head is what training learns), so
    transformers' "LOAD REPORT" warning (``score.weight MISSING``) becomes one
    INFO line; with ``new_head_expected=False`` (a PRM loaded to score states) it
    becomes one WARNING line, since the scores would be random. Any other
    missing, unexpected or mismatched weight keeps transformers' full report. A
    saved PRM loads its trained head.
    """
    location, extra = _split_gguf(name_or_path)
    tokenizer = load_tokenizer(name_or_path)
    target = pick_device(device)
    with _held_load_reports() as reports:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            location, num_labels=1, dtype=pick_dtype(target, dtype), output_loading_info=True, **extra
        )
    missing, unexpected = sorted(info.get("missing_keys", ())), sorted(info.get("unexpected_keys", ()))
    on_backbone = [key for key in missing + unexpected if key.startswith(f"{model.base_model_prefix}.")]
    if missing and not on_backbone and not info.get("mismatched_keys") and not info.get("error_msgs"):
        unused = f"; unused: {', '.join(unexpected)}" if unexpected else ""
        if new_head_expected:
            logger.info("value head %s newly initialised on the backbone of %s (expected: PRM training fits it%s)",
                        ", ".join(missing), name_or_path, unused)  # fmt: skip
        else:
            logger.warning("%s has no trained value head (%s newly initialised%s): its scores are random",
                           name_or_path, ", ".join(missing), unused)  # fmt: skip
    else:
        for record in reports:  # not the expected fresh head: show transformers' report as it was
            logging.getLogger(record.name).handle(record)
    # Sequence-classification heads find each row's last token through pad_token_id.
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(target).eval(), tokenizer


class _LoadReportFilter(logging.Filter):
    """Holds back transformers' "LOAD REPORT" records (kept in `records`) and passes the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if "LOAD REPORT" in record.getMessage():
            self.records.append(record)
            return False
        return True


@contextlib.contextmanager
def _held_load_reports() -> Iterator[list[logging.LogRecord]]:
    """The LOAD REPORT warnings that transformers logs inside the block, held back for the caller."""
    source = logging.getLogger("transformers.modeling_utils")
    held = _LoadReportFilter()
    source.addFilter(held)
    try:
        yield held.records
    finally:
        source.removeFilter(held)
