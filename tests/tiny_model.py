"""Build a tiny Llama-architecture model with a real byte-level BPE tokenizer, for tests.

Random weights, so its text is noise, but every code path is the real one: the directory is
written with ``save_pretrained`` and loaded back through ``from_pretrained``. The tokenizer is
trained on a few standard-library files and carries StarCoder-style FIM tokens.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

FIM_TOKENS = ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<file_sep>"]
TRAINING_FILES = ["textwrap.py", "string.py", "bisect.py", "heapq.py", "glob.py", "shlex.py"]


def _train_tokenizer(vocab_size: int, special_tokens: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = [(stdlib / name).read_text(encoding="utf-8") for name in TRAINING_FILES]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def build_tiny_model(
    out_dir: str | Path,
    *,
    fim: bool = True,
    vocab_size: int = 1000,
    hidden_size: int = 64,
    layers: int = 2,
    context_length: int = 256,
    seed: int = 0,
) -> Path:
    """Write a tiny random Llama (and tokenizer) to ``out_dir`` and return the path."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specials = FIM_TOKENS if fim else ["<|endoftext|>"]
    raw = _train_tokenizer(vocab_size, specials)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=specials[1:],
    )
    tokenizer.model_max_length = context_length
    tokenizer.save_pretrained(out)

    torch.manual_seed(seed)
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context_length,
        tie_word_embeddings=True,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    GenerationConfig(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos).save_pretrained(out)
    return out
