"""DeepShiva's logits processor for vLLM: token healing and Python's layout rules inside vLLM.

vLLM picks the tokens of a completion DeepShiva relays, so the two things DeepShiva decides token
by token (``core/output_constraint.py``) must run where vLLM samples. vLLM (0.11 and later, V1
engine) loads this class with ``--logits-processors core.vllm_logits:DeepShivaLogitsProcessor``
when this repository is on its ``PYTHONPATH`` (``scripts/serve-vllm`` does both); each request
then asks for it in its ``vllm_xargs`` (``core.output_constraint.request_args``). Requests that do
not ask, from DeepShiva or anyone else, pass through untouched and cost nothing.

This module runs in vLLM's own venv (it imports vLLM); DeepShiva's server never imports it. At
start it reads the served model's tokenizer and the text of every token (about a second).
"""

from __future__ import annotations

from typing import Optional

import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from .healing import TokenHealer, special_token_ids
from .output_constraint import OutputConstraint, check_request_args, from_request_args

GREEDY_BELOW = 1e-5  # vLLM samples greedily below this temperature


class DeepShivaLogitsProcessor(AdapterLogitsProcessor):
    """Healing and the Python rules for the requests whose vllm_xargs ask for them."""

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        super().__init__(vllm_config, device, is_pin_memory)
        from transformers import AutoTokenizer

        model = vllm_config.model_config
        self.tokenizer = AutoTokenizer.from_pretrained(
            model.tokenizer,
            revision=getattr(model, "tokenizer_revision", None),
            trust_remote_code=model.trust_remote_code,
        )
        self.healer = TokenHealer(self.tokenizer, special_token_ids(self.tokenizer))
        self.healer.token_texts()  # once, at start, not in the first request that heals

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        check_request_args(sampling_params.extra_args or {})

    def is_argmax_invariant(self) -> bool:
        return False  # it changes which token greedy decoding picks

    def new_req_logits_processor(self, params: SamplingParams) -> Optional[OutputConstraint]:
        return from_request_args(
            params.extra_args or {},
            self.healer,
            self.tokenizer,
            stop_ids=set(params.all_stop_token_ids),
            greedy=params.temperature < GREEDY_BELOW,
        )
