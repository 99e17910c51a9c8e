"""Hand-written bad input against the real server process (waitress, the tiny model): every answer
is a 4xx in the documented error shape, none is a 500, none hangs, and the server keeps serving.

tests/server/test_errors.py checks each field's message through Flask's test client; these go over
a real socket and aim at what a parser or a tokenizer can choke on.
"""

from __future__ import annotations

import json

import httpx
import pytest

pytestmark = pytest.mark.timeout(300)

OK = {"prompt": "def f():\n", "max_length": 2}


def _raw(url, path, content: bytes, headers=None, timeout=30.0) -> httpx.Response:
    return httpx.post(
        url + path,
        content=content,
        timeout=timeout,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def assert_4xx(response: httpx.Response, *statuses: int) -> dict:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    if statuses:
        assert response.status_code in statuses, (response.status_code, response.text[:300])
    body = response.json()
    assert set(body) == {"status", "message"} and body["status"] == "error", body
    assert isinstance(body["message"], str) and body["message"]
    return body


def assert_serving(url: str) -> None:
    assert httpx.get(url + "/health", timeout=5).json()["status"] == "ok"
    answer = httpx.post(url + "/generate", json=OK, timeout=30)
    assert answer.status_code == 200 and answer.json()["status"] == "success", answer.text


MALFORMED = [
    b"{",
    b'{"prompt": }',
    b'{"prompt": "x",}',
    b"nul",
    b'"just a string"',
    b"[]",
    b"null",
    b"123",
    b'{"prompt": "\xff\xfe"}',
    b'{"prompt": "\xc3"}',
    b"\xff" * 64,  # invalid UTF-8
    b"[" * 100_000 + b"]" * 100_000,  # nesting deeper than the JSON parser's recursion limit
    b'{"prompt": ' * 50_000 + b'"x"' + b"}" * 50_000,
    b'{"prompt": "x", "max_length": ' + b"9" * 5000 + b"}",  # more digits than int() accepts
    b'{"prompt": "x"} trailing',
    b"\x00\x00",
]


@pytest.mark.parametrize("path", ["/generate", "/stream", "/load_model"])
def test_malformed_bodies(api, path):
    for raw in MALFORMED:
        assert_4xx(_raw(api.url, path, raw, api.headers), 400)
    assert_serving(api.url)


NUMBERS = [
    ("temperature", "NaN"),
    ("temperature", "Infinity"),
    ("temperature", "-Infinity"),
    ("top_p", "NaN"),
    ("repetition_penalty", "Infinity"),
    ("max_length", "Infinity"),
    ("max_length", "NaN"),
    ("seed", "NaN"),
    ("top_k", "-Infinity"),
    ("temperature", "1e400"),
    ("max_length", str(10**30)),
    ("max_length", str(2**63)),
    ("max_length", str(-(10**30))),
    ("max_length", "1e3"),
    ("seed", str(2**64)),
]


@pytest.mark.parametrize("path", ["/generate", "/stream"])
def test_nan_infinity_and_huge_numbers(api, path):
    for field, literal in NUMBERS:
        raw = ('{"prompt": "x", "max_length": 2, "%s": %s}' % (field, literal)).encode()
        if field == "max_length":
            raw = ('{"prompt": "x", "max_length": %s}' % literal).encode()
        body = assert_4xx(_raw(api.url, path, raw, api.headers), 400)
        assert field in body["message"], (field, literal, body)
    assert_serving(api.url)


WRONG = [
    {"prompt": None},
    {"prompt": 5},
    {"prompt": ["x"]},
    {"prompt": {"text": "x"}},
    {"prompt": True},
    {"prompt": "x", "max_length": "10"},
    {"prompt": "x", "max_length": [2]},
    {"prompt": "x", "max_length": 2.5},  # 2.0 is an integer in JSON Schema: served
    {"prompt": "x", "temperature": "0.5"},
    {"prompt": "x", "temperature": [0.5]},
    {"prompt": "x", "stop": {"a": 1}},
    {"prompt": "x", "stop": [None]},
    {"prompt": "x", "suffix": ["a"]},
    {"prompt": "x", "echo": 1},
    {"prompt": "x", "stop": [""]},
    {"prompt": "x", "stop": ""},
    {"prompt": "x", "stop": ["a", ""]},
    {"prompt": "x", "stop": ["s"] * 17},
    {"prompt": "x", "stop": ["s"] * 20_000},
    {"max_length": 2},
]


@pytest.mark.parametrize("path", ["/generate", "/stream"])
def test_wrong_types_and_bad_stop_lists(api, path):
    for body in WRONG:
        assert_4xx(httpx.post(api.url + path, json=body, headers=api.headers, timeout=30), 400)
    assert_serving(api.url)


def test_awkward_but_valid_prompts_are_served(api):
    """Not errors: an empty prompt, control characters, lone surrogates (valid JSON escapes that
    are not valid Unicode), right-to-left marks, a prompt near the body limit (truncated from the
    left), a huge stop string. Each is a 200 or a 4xx, never a 500, and never a hang."""
    cases = [
        {"prompt": ""},
        {"prompt": "", "suffix": ""},
        {"prompt": "\x00\x01\x1b[31m\x7f"},
        {"prompt": "x", "suffix": "\x00"},
        {"prompt": "\u202e\u2066 \ufeff \U0010ffff"},
        {"prompt": "x", "stop": ["x" * 100_000]},
        {"prompt": "😀" * 2000, "stop": ["😀"]},
        {"prompt": "a = 1\n" * 120_000},  # 840 kB: under the 1 MiB limit, far over the context
        {"prompt": "x", "top_k": 10**40},  # no upper bound in the schema: more than the vocabulary
    ]
    raws = [
        b'\xef\xbb\xbf{"prompt": "x"}',  # a UTF-8 byte-order mark: tolerated
        b'{"prompt": "\\ud800"}',
        b'{"prompt": "x\\udfff", "suffix": "\\ud83d"}',
        b'{"prompt": "x", "stop": ["\\udc00"]}',
    ]
    for path in ("/generate", "/stream"):
        for body in cases:
            response = httpx.post(
                api.url + path, json={"max_length": 3, **body}, headers=api.headers, timeout=60
            )
            assert response.status_code == 200 or 400 <= response.status_code < 500, (
                body,
                response.text[:300],
            )
            if path == "/stream" and response.status_code == 200:
                assert "event: done" in response.text, response.text[-300:]
        for raw in raws:
            response = _raw(api.url, path, raw, api.headers, timeout=60)
            assert response.status_code != 500 and response.status_code < 500, response.text[:300]
            if path == "/stream" and response.status_code == 200:
                assert "event: error" not in response.text, response.text[-300:]
    big = httpx.post(
        api.url + "/generate",
        json={"prompt": "a = 1\n" * 120_000, "max_length": 2},
        headers=api.headers,
        timeout=60,
    ).json()
    assert big["truncated"] is True
    assert_serving(api.url)


def test_unknown_fields_are_ignored_by_design(api):
    """Unknown fields are ignored (server/schemas.py: clients of later versions keep working),
    including ones that look like engine or loader options: the answer is the same as without them."""
    plain = {**OK, "seed": 3, "temperature": 0}
    extra = {
        **plain,
        "bogus": 1,
        "__proto__": {"admin": True},
        "trust_remote_code": True,
        "model_name": "/etc",
        "device": "cuda",
        "max_new_tokens": 10**9,
        "stream": True,
    }
    answers = [
        httpx.post(api.url + "/generate", json=body, headers=api.headers, timeout=30)
        for body in (plain, extra)
    ]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json()["response"] == answers[1].json()["response"]
    assert (
        answers[0].json()["usage"]["completion_tokens"]
        == answers[1].json()["usage"]["completion_tokens"]
    )


def test_body_limits(api):
    """Over the limit (1 MiB by default): 413 in the error shape, with or without Content-Length."""
    huge = json.dumps({"prompt": "x" * (2 << 20)}).encode()
    assert_4xx(_raw(api.url, "/generate", huge, api.headers), 413)

    def chunks():
        for _ in range(40):
            yield b"x" * 65536

    chunked = httpx.post(
        api.url + "/generate",
        content=chunks(),
        timeout=30,
        headers={"Content-Type": "application/json", **api.headers},
    )
    assert_4xx(chunked, 413)
    assert_serving(api.url)


MODEL_NAMES = [
    "../../../../etc",
    "/etc",
    "/etc/passwd",
    "/",
    ".",
    "..",
    "~",
    "~/.ssh",
    "models/../../..",
    "http://127.0.0.1:1/model",
    "https://huggingface.co/org/model",
    "file:///etc/passwd",
    "ftp://x/y",
    "\\\\server\\share",
    "C:\\Windows",
    "a" * 5000,
    "org/model",
    "org/../../etc",
    "\x00",
    "/dev/zero",
    "/proc/self/environ",
    " ",
    "deepshiva/tiny-python/../../..",
]


def test_model_names_with_traversal_or_urls_are_refused(api):
    """The fixture's server has an allow-list (only the tiny model): everything else is 403,
    before any file is read or any download is tried."""
    for name in MODEL_NAMES:
        response = httpx.post(
            api.url + "/load_model", json={"model_name": name}, headers=api.headers, timeout=30
        )
        assert_4xx(response, 400, 403)
    status = httpx.get(api.url + "/model_status", headers=api.headers, timeout=5).json()
    assert (
        status["model_loaded"] and status["state"] == "ready" and status["last_load_error"] is None
    )
    assert_serving(api.url)


def test_wrong_methods_paths_and_content_types(api):
    url, headers = api.url, api.headers
    for method, path in [
        ("PUT", "/generate"),
        ("DELETE", "/model_status"),
        ("GET", "/load_model"),
        ("POST", "/health"),
        ("PATCH", "/stream"),
    ]:
        assert_4xx(httpx.request(method, url + path, headers=headers, timeout=10), 405)
    for path in [
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/generate/../../x",
        "/static/..%2f..%2f",
        "/" + "a" * 4000,
    ]:
        response = httpx.get(url + path, headers=headers, timeout=10)
        assert 400 <= response.status_code < 500, (path, response.status_code)
    form = httpx.post(url + "/generate", data={"prompt": "x"}, headers=headers, timeout=10)
    assert_4xx(form, 415)  # a form is what a web page can send cross-site: refused
    assert_serving(url)


def test_extreme_but_valid_sampling_numbers_are_served(api):
    """Values inside the documented ranges that float32 cannot hold (they round to 0 or overflow)
    once made the sampler divide by zero: NaN probabilities and a 500. Found by the fuzz run."""
    cases = [
        {"temperature": 5e-324},
        {"temperature": 3.28e-279},
        {"temperature": 1e-30},
        {"top_p": 5e-324},
        {"top_p": 1e-10, "top_k": 0},
        {"repetition_penalty": 2.03e-43},
        {"repetition_penalty": 1e-300, "temperature": 0},
        {"repetition_penalty": 5e-324, "top_p": 5e-324},
        {"temperature": 2.0, "top_p": 1.0, "top_k": 10**40, "repetition_penalty": 10.0},
    ]
    for path in ("/generate", "/stream"):
        for extra in cases:
            body = {"prompt": "x x x x", "max_length": 6, "seed": 1, **extra}
            response = httpx.post(api.url + path, json=body, headers=api.headers, timeout=30)
            assert response.status_code == 200, (extra, response.text[:300])
            if path == "/stream":
                assert "event: done" in response.text, (extra, response.text[-300:])
