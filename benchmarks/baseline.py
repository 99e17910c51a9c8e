"""The baseline every ratio is against: one plain ``model.generate`` per request, nothing reused.

This is what the original implementation did for each request: run the whole prompt through
``generate`` from scratch, greedy or sampled, and decode the result.
"""

from __future__ import annotations

import time

import torch


class PlainGenerate:
    """``model.generate`` per request on the same loaded model and the same prompt token ids."""

    def __init__(self, model, tokenizer):
        self.model = model
        self.tokenizer = tokenizer
        self.decode_steps = 0

    def run(self, ids: list[int], max_new_tokens: int, min_new_tokens: int = 0) -> dict:
        """Generate greedily; return text, new token count and wall time in ms."""
        input_ids = torch.tensor([ids])
        started = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=max_new_tokens,
                min_new_tokens=min_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.eos_token_id,
            )
        new = out[0, len(ids) :].tolist()
        self.decode_steps += max(len(new) - 1, 0)
        return {
            "text": self.tokenizer.decode(new, skip_special_tokens=True),
            "tokens": len(new),
            "ms": (time.perf_counter() - started) * 1000,
        }


def transformers_model(directory, dtype: torch.dtype):
    """The checkpoint at ``directory`` as transformers runs it: the baseline's model, and a model
    for extra runners. An engine's own model object cannot serve: the engine keeps each weight
    once and empties the tensors of it that its backend does not read."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(directory), dtype=dtype).eval()


def decode_through(llm, directory, precision: str) -> None:
    """Give ``llm`` a runner decoding through ``precision`` weights of the checkpoint at
    ``directory``; its old runner's memory goes first (benchmarks that compare precisions)."""
    from core.generation import ModelRunner

    llm.runner = None
    model = transformers_model(directory, llm.dtype)
    llm.runner = ModelRunner(model, decode_weights=precision, release_model=True)
