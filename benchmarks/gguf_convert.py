"""Convert a saved Hugging Face model to GGUF with llama.cpp's own converter, offline.

The converter and the gguf-py package beside it come from the llama-cpp-python source
distribution (PyPI's gguf release does not fit that converter). Unpack it with
``pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36`` and pass its
``vendor/llama.cpp`` folder. The converter recognises BPE pre-tokenizers by a hash of known
tokenizers; DeepShiva's is byte-level BPE with GPT-2's split rule, so it is declared as "gpt-2".
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(llama_cpp_dir: str, model_dir: str, out_file: str, out_type: str = "f32") -> None:
    root = Path(llama_cpp_dir)
    sys.path.insert(0, str(root / "gguf-py"))
    sys.path.insert(0, str(root))
    import convert_hf_to_gguf as converter

    from conversion.base import TextModel

    TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
    sys.argv = ["convert_hf_to_gguf.py", model_dir, "--outfile", out_file, "--outtype", out_type]
    converter.main()


if __name__ == "__main__":
    main(*sys.argv[1:])
