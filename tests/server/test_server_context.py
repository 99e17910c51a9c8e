"""POST /generate and /stream with ``context``: accepted, validated with a 400 naming the item, documented."""

from __future__ import annotations

import json

import pytest

CONTEXT = [{"path": "pkg/models.py", "text": "class User:\n    name: str\n"}]


def test_generate_with_context_answers_and_counts_its_tokens(client):
    bare = client.post(
        "/generate", json={"prompt": "u = ", "max_length": 2, "temperature": 0}
    ).get_json()
    with_context = client.post(
        "/generate", json={"prompt": "u = ", "max_length": 2, "temperature": 0, "context": CONTEXT}
    ).get_json()
    assert with_context["status"] == "success"
    assert with_context["usage"]["prompt_tokens"] > bare["usage"]["prompt_tokens"] + 5


def test_stream_with_context(client):
    response = client.post(
        "/stream", json={"prompt": "u = ", "suffix": "\n", "max_length": 2, "context": CONTEXT}
    )
    assert response.status_code == 200
    assert b"event: done" in response.data


@pytest.mark.parametrize(
    "context, message",
    [
        ("pkg/models.py", "Invalid 'context': must be a list of at most 32 objects"),
        ([{"path": "a.py", "text": ""}] * 33, "(got 33 items)"),
        ([{"text": "x"}], "Missing required field 'context[0].path'"),
        ([{"path": "a.py", "text": "x"}, {"path": "", "text": "x"}], "Invalid 'context[1].path'"),
        ([{"path": "a\nb", "text": "x"}], "Invalid 'context[0].path': must be a one-line string"),
        ([{"path": "a.py", "text": ["x"]}], "Invalid 'context[0].text'"),
        (
            [{"path": "a.py", "text": "x" * 70_000}],
            "at most 65536 characters (got 70000 characters)",
        ),
        (
            [{"path": f"{i}.py", "text": "x" * 60_000} for i in range(5)],
            "at most 262144 characters in all (got 300000)",
        ),
        (["a.py"], "Invalid 'context[0]': must be an object"),
    ],
)
@pytest.mark.parametrize("path", ["/generate", "/stream"])
def test_bad_context_is_a_400_that_names_the_problem(client, path, context, message):
    response = client.post(path, json={"prompt": "x", "context": context})
    assert response.status_code == 400
    body = response.get_json()
    assert body["status"] == "error" and message in body["message"]
    assert len(body["message"]) < 300  # a huge text is never echoed back


def test_openapi_documents_context(client):
    doc = client.get("/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    field = schemas["GenerationRequestBody"]["properties"]["context"]
    listing = next(option for option in field["anyOf"] if option.get("type") == "array")
    assert listing["maxItems"] == 32
    assert listing["items"] == {"$ref": "#/components/schemas/ContextItem"}
    assert set(schemas["ContextItem"]["required"]) == {"path", "text"}
    assert schemas["ContextItem"]["properties"]["text"]["maxLength"] == 65536
    json.dumps(doc)
