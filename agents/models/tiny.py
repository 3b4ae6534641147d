"""The bundled offline models: a small tokenizer and Llama-style policy and PRM.

They are built from scratch (no download) and saved with ``save_pretrained`` so any
Hugging Face tool loads them. Around 1M parameters: small enough to train in
minutes on two CPU cores, large enough to learn multi-step arithmetic.

Two tokenizers: a byte-level BPE trained on the training corpus with every digit a
token of its own (the default: sequences are 2.5x shorter than characters, so
training sees 2.5x more problems per second, while arithmetic stays digit by
digit), and a character-level one.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
)

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
# Printable ASCII plus newline: everything the synthetic problems and steps use.
CHARACTERS = sorted(set(string.printable) - set("\t\r\x0b\x0c"))


def _wrap(backend: Tokenizer, unk: str | None) -> PreTrainedTokenizerFast:
    """A transformers tokenizer over `backend` that prepends BOS and pads on the left.

    Left padding keeps each row's last token at the end, which batched generation
    and last-token value heads need.
    """
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", special_tokens=[(BOS, backend.token_to_id(BOS))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=unk, padding_side="left"
    )


def build_char_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer over printable ASCII; other characters map to ``<unk>``."""
    vocab = {token: index for index, token in enumerate([PAD, BOS, EOS, UNK, *CHARACTERS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return _wrap(backend, UNK)


def build_bpe_tokenizer(corpus: Iterable[str], vocab_size: int = 768) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on `corpus`, each digit its own token; lossless on any text.

    Deterministic for a given corpus. The newline is a single token, so a policy
    can stop at the end of a step on a token id.
    """
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer)
    return _wrap(backend, None)


def build_tokenizer(config: TinyModelConfig, corpus: Iterable[str]) -> PreTrainedTokenizerFast:
    """The tokenizer `config` asks for (`corpus` trains the BPE; ignored for "char")."""
    if config.tokenizer == "char":
        return build_char_tokenizer()
    return build_bpe_tokenizer(corpus, config.vocab_size)


@dataclass(frozen=True)
class TinyModelConfig:
    """Shape of the bundled Llama-style models (defaults: about 0.95M parameters).

    Attributes:
        tokenizer: "bpe" (digits split, trained on the corpus) or "char".
        vocab_size: BPE vocabulary size (ignored for "char").
    """

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 384
    max_positions: int = 1024
    tokenizer: str = "bpe"
    vocab_size: int = 768

    def validate(self) -> None:
        if self.tokenizer not in ("bpe", "char"):
            raise ValueError(f"TinyModelConfig.tokenizer must be 'bpe' or 'char', got {self.tokenizer!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"TinyModelConfig.hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})"
            )
        for name, value in asdict(self).items():
            if isinstance(value, int) and value < 1:
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
