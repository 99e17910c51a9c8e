"""Build a tiny Llama-architecture model with a real byte-level BPE tokenizer, for tests.

Random weights, so its text is noise, but every code path is the real one: the directory is
written with ``save_pretrained`` and loaded back through ``from_pretrained``. The tokenizer is
trained on a few standard-library files and carries StarCoder-style FIM tokens.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

FIM_TOKENS = ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<file_sep>"]
# The special tokens of each FIM family (core/README.md's FIM table); the first one is EOS.
FAMILY_TOKENS = {
    "starcoder": FIM_TOKENS,
    "qwen": [
        "<|endoftext|>",
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
        "<|file_sep|>",
        "<|fim_pad|>",
    ],
    "deepseek": ["<｜end▁of▁sentence｜>", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"],
    "codellama": ["</s>", "▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"],
    "codestral": ["</s>", "[PREFIX]", "[SUFFIX]"],
    None: ["<|endoftext|>"],
}
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
    family: str | None = "starcoder",
    vocab_size: int = 1000,
    hidden_size: int = 64,
    layers: int = 2,
    context_length: int = 1024,
    seed: int = 0,
    endless: bool = False,
) -> Path:
    """Write a tiny random Llama (and tokenizer) to ``out_dir`` and return the path.

    ``endless`` makes end-of-text, every FIM token and line breaks practically unreachable, so a sampled completion runs to its
    token limit whatever the CPU's rounding: tests that must catch a generation while it runs
    need that, and a lucky seed only held on the kind of CPU it was picked on."""
    import torch
    from transformers import (
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specials = FAMILY_TOKENS[family if fim else None]
    raw = _train_tokenizer(vocab_size, specials)
    eos_token = specials[0]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token=eos_token,
        eos_token=eos_token,
        unk_token=eos_token,
        pad_token=eos_token,
        additional_special_tokens=specials[1:],
    )
    tokenizer.model_max_length = context_length
    tokenizer.save_pretrained(out)

    torch.manual_seed(seed)
    eos = tokenizer.convert_tokens_to_ids(eos_token)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context_length,
        tie_word_embeddings=not endless,  # endless: the output side differs (below)
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    model = LlamaForCausalLM(config)
    if endless:
        # Line breaks too: the language server ends a suggestion by its line and block rules,
        # so an endless one must be one long line.
        breaks = [i for i in range(len(tokenizer)) if "\n" in tokenizer.decode([i])]
        _push_away_from(model, tokenizer.convert_tokens_to_ids(specials) + breaks)
    model.save_pretrained(out)
    GenerationConfig(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos).save_pretrained(out)
    return out


def _push_away_from(model, pushed_ids: list[int]) -> None:
    """Make the tokens of ``pushed_ids`` (EOS, the FIM tokens, line breaks) practically unsampled.

    Every input embedding gets +1 in hidden dimension 0, so the residual stream's dimension 0 is
    about +1 at every position (the random layers add only ~0.02-sized changes) whatever the
    prompt holds; the output embedding (untied here) has +1 there for ordinary tokens and -1 for
    the pushed ones. After the final norm each ordinary logit gains about +8 and each pushed one
    loses 8: a pushed token is ~e^-16 as likely as before, and the rest stays random noise."""
    import torch

    with torch.no_grad():
        model.get_input_embeddings().weight[:, 0] = 1.0
        output = model.get_output_embeddings().weight
        output[:, 0] = 1.0
        output[pushed_ids, 0] = -1.0
