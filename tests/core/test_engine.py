"""OptimizedLLM end to end on a tiny real model loaded through from_pretrained."""

import threading
from pathlib import Path

import pytest

from core import (
    Completion,
    FIMNotSupported,
    InvalidParameter,
    ModelNotFound,
    ModelNotLoaded,
    OptimizedLLM,
)


@pytest.fixture(scope="module")
def llm(tiny_model_dir):
    return OptimizedLLM(str(tiny_model_dir))


PROMPT = "def fibonacci(n):\n    if n <= 1:\n        return n\n"


def test_spec_import_path_is_the_same_class():
    from optimized_llm import OptimizedLLM as SpecName

    assert SpecName is OptimizedLLM


def test_generate_returns_completion_only_and_counts_new_tokens(llm):
    result = llm.complete(PROMPT, max_length=7, temperature=0, repetition_penalty=1.0)
    assert isinstance(result, Completion)
    assert not result.text.startswith(PROMPT)
    assert result.generated_tokens <= 7  # max_length counts new tokens only
    assert result.finish_reason in ("length", "stop")
    assert result.prompt_tokens > 5
    text = llm.generate(PROMPT, max_length=7, temperature=0, repetition_penalty=1.0)
    assert text == result.text


def test_greedy_is_deterministic_and_seeded_sampling_repeats(llm):
    a = llm.generate(PROMPT, max_length=12, temperature=0)
    b = llm.generate(PROMPT, max_length=12, temperature=0)
    assert a == b
    s1 = llm.generate(PROMPT, max_length=12, temperature=1.0, seed=7, top_k=0, top_p=1.0)
    s2 = llm.generate(PROMPT, max_length=12, temperature=1.0, seed=7, top_k=0, top_p=1.0)
    assert s1 == s2


def test_sampling_parameters_change_the_output(llm):
    seeds = range(6)
    wide = {
        llm.generate(PROMPT, max_length=6, temperature=2.0, top_k=0, top_p=1.0, seed=s)
        for s in seeds
    }
    narrow = {llm.generate(PROMPT, max_length=6, temperature=2.0, top_k=1, seed=s) for s in seeds}
    assert len(narrow) == 1  # top_k=1 is greedy whatever the temperature
    assert len(wide) > 1


def test_greedy_emits_no_sampling_warnings(llm, recwarn):
    llm.generate(PROMPT, max_length=4, temperature=0)
    assert not [w for w in recwarn if "sampl" in str(w.message).lower()]


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("max_length", 0, "max_length must be an integer from 1 to"),
        ("max_length", -5, "max_length"),
        ("max_length", 10**9, "context length"),
        ("max_length", 2.5, "max_length"),
        ("temperature", 2.5, "temperature must be a number from 0 to 2"),
        ("temperature", float("nan"), "temperature"),
        ("top_p", 0, "top_p must be a number greater than 0 and at most 1"),
        ("top_p", 1.5, "top_p"),
        ("top_k", -1, "top_k must be an integer >= 0"),
        ("repetition_penalty", 0, "repetition_penalty"),
        ("stop_sequences", [""], "non-empty string"),
        ("stop_sequences", ["x"] * 17, "at most 16"),
        ("stop_sequences", 5, "list of strings"),
        ("seed", -1, "seed"),
    ],
)
def test_invalid_parameters_name_the_parameter_and_range(llm, field, value, words):
    with pytest.raises(InvalidParameter) as err:
        llm.generate(PROMPT, **{field: value})
    assert err.value.param == field
    assert words in str(err.value)


def test_prompt_must_be_a_string(llm):
    with pytest.raises(InvalidParameter) as err:
        llm.generate(123)
    assert err.value.param == "prompt"


def test_stop_sequence_across_token_boundary_ends_output_before_it(llm):
    tokenizer = llm.tokenizer
    free = llm.complete(PROMPT, max_length=24, temperature=0, repetition_penalty=1.0)
    ids = tokenizer.encode(free.text, add_special_tokens=False)
    # A stop string that straddles the boundary between two generated tokens.
    pieces = [tokenizer.decode(ids[:i]) for i in range(len(ids) + 1)]
    boundary = next(
        i
        for i in range(2, len(pieces) - 1)
        if len(pieces[i]) >= 2 and len(pieces[i + 1]) > len(pieces[i])
    )
    stop = pieces[boundary][-1] + pieces[boundary + 1][len(pieces[boundary])]
    cut = free.text.find(stop)
    stopped = llm.complete(
        PROMPT, max_length=24, temperature=0, repetition_penalty=1.0, stop_sequences=[stop]
    )
    assert stopped.text == free.text[:cut]
    assert stop not in stopped.text
    assert stopped.finish_reason == "stop"
    assert stopped.generated_tokens < free.generated_tokens


def test_streaming_yields_the_same_text_in_chunks(llm):
    whole = llm.generate(PROMPT, max_length=20, temperature=0)
    chunks = list(llm.generate(PROMPT, max_length=20, temperature=0, stream=True))
    assert "".join(chunks) == whole
    assert all(chunk and "\ufffd" not in chunk[-1:] for chunk in chunks)


def test_stream_holds_back_a_possible_stop_start(llm):
    whole = llm.generate(PROMPT, max_length=20, temperature=0, repetition_penalty=1.0)
    stop = whole[5:8] + "\x00never"
    chunks = list(
        llm.generate(
            PROMPT,
            max_length=20,
            temperature=0,
            repetition_penalty=1.0,
            stop_sequences=[stop],
            stream=True,
        )
    )
    assert "".join(chunks) == whole


def test_closing_a_stream_stops_decoding_at_once(llm):
    stream = llm.generate(
        PROMPT,
        max_length=200,
        temperature=0,
        repetition_penalty=1.0,
        stream=True,
        stop_sequences=None,
    )
    next(stream)
    steps_at_close = llm.decode_steps
    stream.close()
    assert llm.decode_steps - steps_at_close == 0
    assert stream.result.finish_reason == "cancelled"
    # The model is free again: the next call runs.
    assert llm.generate(PROMPT, max_length=3, temperature=0) is not None


def test_cancel_event_stops_a_whole_generation(llm):
    cancel = threading.Event()
    cancel.set()
    result = llm.complete(PROMPT, max_length=200, temperature=0, cancel_event=cancel)
    assert result.finish_reason == "cancelled"
    assert result.generated_tokens <= 1


def test_generation_error_is_raised_in_the_caller_not_hung(llm, monkeypatch):
    runner = llm.runner

    def broken(token_id):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(runner, "decode_one_token", broken)
    stream = llm.generate(PROMPT, max_length=50, temperature=0, stream=True)
    with pytest.raises(RuntimeError, match="kernel exploded"):
        list(stream)
    monkeypatch.undo()
    assert isinstance(llm.generate(PROMPT, max_length=3, temperature=0), str)


def test_fim_request_uses_the_models_dialect_and_never_shows_markers(llm):
    assert llm.info()["fim_dialect"] == "starcoder"
    result = llm.complete(
        "def add(a, b):\n    ", suffix="\n\nprint(add(1, 2))\n", max_length=30, temperature=0
    )
    for marker in ("<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<|endoftext|>", "<file_sep>"):
        assert marker not in result.text


def test_plain_completion_never_emits_fim_tokens(llm):
    for seed in range(5):
        text = llm.generate(
            "x = 1\n", max_length=40, temperature=2.0, top_k=0, top_p=1.0, seed=seed
        )
        assert "<fim_" not in text and "<file_sep>" not in text


def test_fim_on_a_model_without_fim_tokens_is_a_clear_error(tiny_model_dir_no_fim):
    llm = OptimizedLLM(str(tiny_model_dir_no_fim))
    assert llm.info()["fim_dialect"] is None
    with pytest.raises(FIMNotSupported, match="no fill-in-the-middle tokens"):
        llm.generate("a = ", suffix="\n")


def test_long_prompt_keeps_the_text_nearest_the_cursor(llm):
    lines = "".join(f"value_{i} = {i}\n" for i in range(400))
    result = llm.complete(lines + "last_line = ", max_length=16, temperature=0)
    assert result.truncated
    assert result.prompt_tokens <= llm.context_length - 16
    ids, _, truncated, _ = llm.encode_prompt(
        __import__("core.request", fromlist=["GenerationRequest"]).GenerationRequest.checked(
            lines + "last_line = ", max_length=16, context_length=llm.context_length
        )
    )
    assert truncated
    assert "last_line" in llm.tokenizer.decode(
        ids + [0]
    )  # nearest text kept (plus the healed token)
    assert "value_0 =" not in llm.tokenizer.decode(ids)


def test_long_fim_prompt_trims_both_sides(llm):
    prefix = "".join(f"before_{i} = {i}\n" for i in range(300)) + "x = "
    suffix = "\n" + "".join(f"after_{i} = {i}\n" for i in range(300))
    result = llm.complete(prefix, suffix=suffix, max_length=16, temperature=0)
    assert result.truncated
    assert result.prompt_tokens <= llm.context_length - 16


def test_token_healing_backs_off_a_partial_last_token(llm):
    from core.request import GenerationRequest

    request = GenerationRequest.checked(
        "def fibonacci(n):\n    ret", context_length=llm.context_length
    )
    ids, heal, _, size = llm.encode_prompt(request)
    assert heal and "def fibonacci(n):\n    ret".endswith(heal)
    assert len(ids) == size - 1
    # Generation regrows the removed text, and it is not repeated in the output.
    text = llm.generate("def fibonacci(n):\n    ret", max_length=6, temperature=0)
    assert not text.startswith(heal) or heal == ""


def test_fim_prompts_are_token_healed_and_the_fill_does_not_repeat_the_prefix(llm):
    from core.request import GenerationRequest

    prefix, suffix = "def fibonacci(n):\n    ret", "\n\nprint(fibonacci(3))\n"
    request = GenerationRequest.checked(prefix, suffix=suffix, context_length=llm.context_length)
    ids, heal, _, size = llm.encode_prompt(request)
    assert heal and prefix.endswith(heal)
    assert len(ids) == size - 1
    assert llm.tokenizer.decode(ids).count("ret") == 0  # the partial word is regrown, not sent
    for seed in range(3):
        result = llm.complete(prefix, suffix=suffix, max_length=8, temperature=1.0, seed=seed)
        # Usage counts the healed token as prompt, and only new tokens as generated.
        assert result.prompt_tokens == size
        assert result.generated_tokens <= 8
        assert "<fim_" not in result.text and "<|endoftext|>" not in result.text


def test_concurrent_calls_do_not_corrupt_each_other(llm):
    prompts = [f"def f{i}(x):\n    return x * {i}\n" for i in range(4)]
    expected = {p: llm.generate(p, max_length=10, temperature=0) for p in prompts}
    results = {}

    def work(p):
        results[p] = llm.generate(p, max_length=10, temperature=0)

    threads = [threading.Thread(target=work, args=(p,)) for p in prompts * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == expected


def test_prefix_cache_reuses_a_shared_prefix(llm):
    llm.generate(PROMPT, max_length=2, temperature=0)
    fresh = llm.complete("zzz = 0\n", max_length=4, temperature=0)
    again = llm.complete("zzz = 0\nyy", max_length=4, temperature=0)
    assert fresh.reused_prompt_tokens == 0
    assert again.reused_prompt_tokens > 0


def test_unknown_model_is_not_found_quickly_when_offline(monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    started = time.monotonic()
    with pytest.raises(ModelNotFound) as err:
        OptimizedLLM("nobody/does-not-exist-model")
    assert time.monotonic() - started < 10
    message = str(err.value)
    assert "not a local directory" in message and "Hugging Face cache" in message
    # and it says where the way to bring a model to an offline machine is written down
    assert "'Use a real code model'" in message
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert "## Use a real code model" in readme


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "https://example.invalid/model", "/no/such/dir/here"]
)
def test_bad_model_names_are_not_found(name):
    with pytest.raises(ModelNotFound):
        OptimizedLLM(name)


def test_trust_remote_code_is_off_by_default(tiny_model_dir):
    llm = OptimizedLLM(str(tiny_model_dir))
    assert llm.trust_remote_code is False


def test_clear_memory_releases_the_model_and_then_refuses(tiny_model_dir):
    llm = OptimizedLLM(str(tiny_model_dir))
    llm.generate("a = 1\n", max_length=2)
    llm.clear_memory()
    assert not llm.is_loaded
    with pytest.raises(ModelNotLoaded, match="no model is loaded"):
        llm.generate("a = 1\n")


def test_int8_on_cpu_loads_quantized_weights(tiny_model_dir):
    pytest.importorskip("bitsandbytes")
    llm = OptimizedLLM(str(tiny_model_dir), load_in_8bit=True)
    assert llm.info()["quantization"] == "int8"
    linear = llm.model.model.layers[0].self_attn.q_proj
    assert "8bit" in type(linear).__name__
    assert isinstance(llm.generate(PROMPT, max_length=4, temperature=0), str)


def test_int8_without_bitsandbytes_is_a_clear_error_not_a_silent_full_load(
    tiny_model_dir, monkeypatch
):
    import builtins

    from core import QuantizationUnavailable

    real_import = builtins.__import__

    def no_bnb(name, *args, **kwargs):
        if name == "bitsandbytes":
            raise ImportError("simulated: bitsandbytes missing")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bnb)
    with pytest.raises(QuantizationUnavailable, match="needs bitsandbytes"):
        OptimizedLLM(str(tiny_model_dir), load_in_8bit=True)


def test_max_memory_shards_through_accelerate(tiny_model_dir):
    whole = OptimizedLLM(str(tiny_model_dir)).generate(PROMPT, max_length=5, temperature=0)
    # A budget smaller than the model: accelerate must place what does not fit elsewhere (disk).
    llm = OptimizedLLM(str(tiny_model_dir), max_memory={"cpu": "200KB"})
    assert "disk" in set(llm.model.hf_device_map.values())
    assert llm.generate(PROMPT, max_length=5, temperature=0) == whole


def test_dtype_strings_are_accepted(tiny_model_dir):
    import torch

    llm = OptimizedLLM(str(tiny_model_dir), torch_dtype="bfloat16")
    assert llm.model.dtype == torch.bfloat16
    assert llm.info()["dtype"] == "bfloat16"


def test_closing_a_finished_stream_keeps_its_finish_reason(llm):
    stream = llm.generate(PROMPT, max_length=3, temperature=0, repetition_penalty=1.0, stream=True)
    list(stream)
    reason = stream.result.finish_reason
    stream.close()
    assert stream.result.finish_reason == reason


def test_unreadable_model_files_are_a_load_failure_not_not_found(tiny_model_dir, tmp_path):
    import shutil

    from core import ModelLoadFailed

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "config.json").write_text("{ not json")
    with pytest.raises(ModelLoadFailed, match="could not be loaded"):
        OptimizedLLM(str(broken))
