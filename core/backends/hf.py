"""The transformers model itself as a backend (``HFBackend``), the fallback for every model."""

from __future__ import annotations

import inspect

import torch
from transformers import DynamicCache


def input_device(model) -> torch.device:
    """Where input ids must go: the embedding's device, or its accelerate execution device when
    the weights are offloaded (they then sit on the "meta" device)."""
    embedding = model.get_input_embeddings()
    hook = getattr(embedding, "_hf_hook", None)
    if hook is not None and getattr(hook, "execution_device", None) is not None:
        return torch.device(hook.execution_device)
    device = embedding.weight.device
    return torch.device("cpu") if device.type == "meta" else device


class HFBackend:
    """Forward passes through the transformers model with its DynamicCache: the always-correct
    fallback, for any architecture transformers loads (including offloaded and 8-bit models).

    The cache is built without the model's config, so every layer keeps all its keys and can be
    cropped anywhere: a sliding-window model's own attention masks apply its window (built with
    ``config=`` its layers become sliding-window layers that refuse ``crop`` once the window is
    full, which every keystroke and rejected draft needs).
    """

    def __init__(self, model):
        self.model = model
        params = inspect.signature(model.forward).parameters
        # transformers 5.24 renamed past_key_values to cache; accept both spellings.
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self._logits_to_keep = "logits_to_keep" in params
        self.device = input_device(model)
        self._cache: DynamicCache | None = None
        self.length = 0

    def reset(self) -> None:
        self._cache = None
        self.length = 0

    release = reset

    def crop(self, keep: int) -> None:
        if self._cache is not None and keep < self.length:
            self._cache.crop(-(self.length - keep))  # 5.x: a negative count of tokens to drop
            self.length = keep

    def forward(self, ids: list[int], all_logits: bool = False) -> torch.Tensor:
        if self._cache is None:
            self._cache = DynamicCache()
        kwargs = {self._cache_kwarg: self._cache, "use_cache": True}
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 0 if all_logits else 1
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            out = self.model(input_ids=input_ids, **kwargs)
        returned = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        if returned is not None:
            self._cache = returned
        self.length += len(ids)
        return out.logits[0] if all_logits else out.logits[0, -1]

    def describe(self) -> dict:
        dtype = str(getattr(self.model, "dtype", "")).replace("torch.", "")
        path = f"transformers {dtype}".strip()
        return {"backend": "transformers", "prefill": path, "decode": path}
