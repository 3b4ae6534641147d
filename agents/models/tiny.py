"""The bundled offline models: a character-level tokenizer and Llama-style policy and PRM.

They are built from scratch (no download) and saved with ``save_pretrained`` so any
Hugging Face tool loads them. Around 1M parameters: small enough to train in
minutes on two CPU cores, large enough to learn multi-step arithmetic.
"""

from __future__ import annotations

import string
from dataclasses import asdict, dataclass

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
)

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
# Printable ASCII plus newline: everything the synthetic problems and steps use.
CHARACTERS = sorted(set(string.printable) - set("\t\r\x0b\x0c"))


def build_char_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer (one token per character, BOS prepended).

    Unknown characters map to ``<unk>``; padding is on the left for batched
    generation and last-token value heads.
    """
    vocab = {token: index for index, token in enumerate([PAD, BOS, EOS, UNK, *CHARACTERS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",
    )


@dataclass(frozen=True)
class TinyModelConfig:
    """Shape of the bundled Llama-style models (defaults: about 0.85M parameters)."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 384
    max_positions: int = 1024

    def validate(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"TinyModelConfig.hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})"
            )
        for name, value in asdict(self).items():
            if value < 1:
                raise ValueError(f"TinyModelConfig.{name} must be >= 1, got {value}")


def _llama_config(config: TinyModelConfig, tokenizer: PreTrainedTokenizerFast, **extra) -> LlamaConfig:
    config.validate()
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        **extra,
    )


def build_policy_model(config: TinyModelConfig, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """A freshly initialised causal LM for the tokenizer's vocabulary."""
    return LlamaForCausalLM(_llama_config(config, tokenizer))


def build_value_model(config: TinyModelConfig, tokenizer: PreTrainedTokenizerFast) -> LlamaForSequenceClassification:
    """A freshly initialised Llama backbone with a one-output head (the PRM)."""
    return LlamaForSequenceClassification(_llama_config(config, tokenizer, num_labels=1))
