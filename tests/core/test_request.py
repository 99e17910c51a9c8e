"""One definition of the request parameters (core/request.py): the engine's signature, the
sampler, the server's JSON body, its 400 words and /openapi.json all read it."""

from __future__ import annotations

import inspect

import pytest

from core.errors import InvalidParameter
from core.request import DEFAULTS, MAX_STOP_LENGTH, MAX_STOP_SEQUENCES, GenerationRequest, allowed
from core.sampling import SamplingParams


def test_defaults_are_written_once():
    from core.engine import OptimizedLLM
    from server.schemas import GenerationRequestBody

    signature = inspect.signature(OptimizedLLM.generate).parameters
    for name in ("max_length", "temperature", "top_p", "top_k", "repetition_penalty"):
        assert signature[name].default == getattr(DEFAULTS, name)
        assert GenerationRequestBody.model_fields[name].default == getattr(DEFAULTS, name)
    assert SamplingParams() == SamplingParams(
        DEFAULTS.temperature, DEFAULTS.top_p, DEFAULTS.top_k, DEFAULTS.repetition_penalty
    )
    assert (DEFAULTS.max_length, DEFAULTS.temperature, DEFAULTS.top_p) == (512, 0.7, 0.9)


def test_the_server_schema_states_core_limits():
    from server.openapi import openapi_document

    body = openapi_document()["components"]["schemas"]["GenerationRequestBody"]["properties"]
    stop = next(s for s in body["stop"]["anyOf"] if s.get("type") == "array")
    assert stop["maxItems"] == MAX_STOP_SEQUENCES
    assert stop["items"]["maxLength"] == MAX_STOP_LENGTH
    assert body["temperature"]["maximum"] == 2 and body["top_p"]["exclusiveMinimum"] == 0


@pytest.mark.parametrize(
    "params, name, words",
    [
        ({"stop_sequences": ["ok", "s" * (MAX_STOP_LENGTH + 1)]}, "stop_sequences", "at index 1"),
        ({"stop_sequences": "s"}, None, None),  # one string is a list of one
        ({"max_length": 4000}, "max_length", "from 1 to 2048 (this model's context length)"),
        ({"temperature": float("inf")}, "temperature", "a number from 0 to 2"),
        ({"top_k": True}, "top_k", "an integer >= 0"),
        ({"seed": 2**63}, "seed", "from 0 to 2^63-1"),
        ({"language": "x" * 65}, "language", "1 to 64 characters"),
    ],
)
def test_checked_names_the_field_and_its_range(params, name, words):
    if name is None:
        assert GenerationRequest.checked("x", **params).stop_sequences == ("s",)
        return
    with pytest.raises(InvalidParameter) as err:
        GenerationRequest.checked("x", context_length=2048, **params)
    assert err.value.param == name
    assert str(err.value).startswith(f"{name} must be ") and words in str(err.value)


def test_an_omitted_max_length_fits_a_short_context():
    assert GenerationRequest.checked("x", context_length=100).max_length == 100
    assert GenerationRequest.checked("x", context_length=4096).max_length == DEFAULTS.max_length


def test_words_follow_the_bounds():
    assert allowed("top_p") == "a number greater than 0 and at most 1"
    assert allowed("max_length", 48) == "an integer from 1 to 48"
    assert allowed("suffix") == "a string, or null"


def test_unknown_parameters_are_a_type_error():
    with pytest.raises(TypeError, match="temprature"):
        GenerationRequest.checked("x", temprature=0.5)
