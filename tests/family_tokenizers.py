"""Tokenizers shaped like each code-model family's, and tiny random models that use them, for tests.

Built offline with the ``tokenizers`` library: a small vocabulary trained on a few standard-library
files, then given the family's special tokens and its tokenizer *shape*, which is what decides how a
FIM prompt comes out token by token:

- byte-level BPE (StarCoder/StarCoder2/stable-code, Qwen2.5-Coder, DeepSeek-Coder): no space is
  added anywhere; DeepSeek's tokenizer puts a BOS first;
- SentencePiece-style BPE with byte fallback and a dummy-prefix space (Code Llama: the legacy
  ``Prepend("▁")`` normalizer of its tokenizer.json; Codestral: a Metaspace pre-tokenizer that
  prepends to the first piece), with ``<s>`` first;
- SentencePiece-style without a dummy prefix (CodeGemma, Gemma's tokenizer), with ``<bos>`` first.
"""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

TRAINING_FILES = ["textwrap.py", "string.py", "bisect.py", "heapq.py"]

# family -> (shape, BOS added by the tokenizer or None, EOS, FIM and other special tokens)
FAMILIES = {
    "starcoder": (
        "byte",
        None,
        "<|endoftext|>",
        ["<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<file_sep>"],
    ),
    "qwen": (
        "byte",
        None,
        "<|endoftext|>",
        ["<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|file_sep|>"],
    ),
    "deepseek": (
        "byte",
        "<｜begin▁of▁sentence｜>",
        "<｜end▁of▁sentence｜>",
        ["<｜fim▁hole｜>", "<｜fim▁begin｜>", "<｜fim▁end｜>"],
    ),
    "codegemma": (
        "sp-plain",
        "<bos>",
        "<eos>",
        ["<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|file_separator|>"],
    ),
    "codellama": ("sp-legacy", "<s>", "</s>", ["▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"]),
    "codestral": ("sp-metaspace", "<s>", "</s>", ["[PREFIX]", "[SUFFIX]", "[MIDDLE]"]),
    # Plain Mistral-7B and Phi-3: SentencePiece models without any FIM token.
    "mistral": ("sp-metaspace", "<s>", "</s>", []),
}
SENTINEL = "☺"  # in the SentencePiece vocabularies as one piece, as in Llama's and Mistral's


def _texts() -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return [(stdlib / name).read_text(encoding="utf-8") for name in TRAINING_FILES]


def _byte_level(specials: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_texts(), trainer=trainer)
    return tokenizer


def _sentencepiece_like(shape: str, specials: list[str], vocab_size: int):
    """A BPE over "▁"-for-space text with <0xNN> byte fallback, as Hugging Face converts Llama's."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    trainer_tok = Tokenizer(models.BPE())
    trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        show_progress=False,
        initial_alphabet=["▁", SENTINEL],
    )
    trainer_tok.train_from_iterator(_texts(), trainer=trainer)
    spec = json.loads(trainer_tok.to_str())
    vocab = spec["model"]["vocab"]
    for byte in range(256):
        vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    spec["model"]["byte_fallback"] = True
    tokenizer = Tokenizer.from_str(json.dumps(spec))
    if (
        shape == "sp-legacy"
    ):  # Code Llama's tokenizer.json: a space before every text, by normalizer
        tokenizer.normalizer = normalizers.Sequence(
            [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
        )
        tokenizer.pre_tokenizer = None
        tokenizer.decoder = decoders.Sequence(
            [
                decoders.Replace("▁", " "),
                decoders.ByteFallback(),
                decoders.Fuse(),
                decoders.Strip(" ", 1, 0),
            ]
        )
    elif shape == "sp-metaspace":  # the current conversion: prepend to the first piece only
        tokenizer.normalizer = None
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
            replacement="▁", prepend_scheme="first", split=False
        )
        tokenizer.decoder = decoders.Sequence(
            [decoders.ByteFallback(), decoders.Metaspace("▁", "first")]
        )
    else:  # sp-plain (Gemma): spaces become "▁", nothing is prepended
        tokenizer.normalizer = normalizers.Replace(" ", "▁")
        tokenizer.pre_tokenizer = None
        tokenizer.decoder = decoders.Sequence(
            [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
        )
    return tokenizer


def build_family_tokenizer(family: str, vocab_size: int = 600):
    """A ``PreTrainedTokenizerFast`` with the family's special tokens and tokenizer shape."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    shape, bos, eos, fim_tokens = FAMILIES[family]
    specials = [t for t in ("<unk>" if shape != "byte" else None, bos, eos) if t] + fim_tokens
    raw = (
        _byte_level(specials, vocab_size)
        if shape == "byte"
        else _sentencepiece_like(shape, specials, vocab_size)
    )
    if bos:
        raw.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A",
            pair=f"{bos} $A {bos} $B",
            special_tokens=[(bos, raw.token_to_id(bos))],
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token=bos or eos,
        eos_token=eos,
        pad_token=eos,
        unk_token="<unk>" if shape != "byte" else eos,
        additional_special_tokens=fim_tokens,
    )


def build_family_model(
    out_dir: str | Path,
    family: str,
    *,
    hidden_size: int = 64,
    layers: int = 2,
    context_length: int = 1024,
    seed: int = 0,
) -> Path:
    """Save a tiny random Llama with the family's tokenizer to ``out_dir`` and return the path."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_family_tokenizer(family)
    tokenizer.model_max_length = context_length
    tokenizer.save_pretrained(out)
    torch.manual_seed(seed)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context_length,
        tie_word_embeddings=True,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    LlamaForCausalLM(config).save_pretrained(out)
    GenerationConfig(bos_token_id=bos, eos_token_id=eos, pad_token_id=eos).save_pretrained(out)
    return out
