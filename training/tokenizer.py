"""Byte-level BPE tokenizer for Python source, saved in the transformers format.

Byte-level BPE with no normalizer and no added prefix space round-trips any text exactly,
which completion needs (indentation and whitespace are code). The special tokens are the
StarCoder FIM set, so the core detects the "starcoder" FIM dialect from the vocabulary.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"
FIM_PREFIX = "<fim_prefix>"
FIM_MIDDLE = "<fim_middle>"
FIM_SUFFIX = "<fim_suffix>"
FILE_SEP = "<file_sep>"
SPECIAL_TOKENS = [EOS, FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FILE_SEP]


def train_tokenizer(texts: list[str], vocab_size: int = 4096) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on texts; special tokens get ids 0-4 (EOS is 0)."""
    tok = Tokenizer(models.BPE())
    # GPT-2 style split regex on raw bytes; no prefix space so decode(encode(x)) == x.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return wrap(tok)


def wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """Wrap a raw tokenizer so AutoTokenizer.from_pretrained loads it with eos/bos/pad set."""
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=EOS,
        additional_special_tokens=[FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FILE_SEP],
        clean_up_tokenization_spaces=False,
        model_max_length=1024,
    )
    fast.add_bos_token = False
    fast.add_eos_token = False
    return fast


def build(out_dir: Path, texts: list[str], vocab_size: int = 4096) -> PreTrainedTokenizerFast:
    """Train on texts, check exact round-trip on a sample, and save to out_dir."""
    fast = train_tokenizer(texts, vocab_size)
    for text in texts[:50]:
        ids = fast(text, add_special_tokens=False)["input_ids"]
        if fast.decode(ids) != text:
            raise RuntimeError("tokenizer does not round-trip the training text")
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return fast


if __name__ == "__main__":
    import argparse

    from training.data import split

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("training/runs/tokenizer"))
    ap.add_argument("--vocab-size", type=int, default=4096)
    args = ap.parse_args()
    train, val = split()
    tk = build(args.out, [f.text for f in train], args.vocab_size)
    nbytes = sum(len(f.text.encode()) for f in val)
    ntok = sum(len(tk(f.text, add_special_tokens=False)["input_ids"]) for f in val)
    print(f"vocab {len(tk)}; held-out bytes/token {nbytes / ntok:.2f}")
