"""GET /openapi.json documents every endpoint, field and error; live responses match it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
import torch
from server_helpers import make_config

from server import create_app
from server.schemas import ALLOWED, GenerationRequestBody

SPEC_PATHS = {"/load_model": "post", "/generate": "post", "/stream": "post", "/model_status": "get"}


@pytest.fixture
def doc(client) -> dict:
    return client.get("/openapi.json").get_json()


def _validate(doc: dict, schema: dict, instance) -> None:
    """Validate against a schema that may $ref into the document's components."""
    root = {**doc, **schema}
    jsonschema.Draft202012Validator(root).validate(instance)


def _response_schema(doc: dict, path: str, method: str, status: int) -> dict:
    responses = doc["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} {status} is not documented"
    entry = responses[str(status)]
    if "$ref" in entry:
        entry = doc["components"]["responses"][entry["$ref"].rsplit("/", 1)[1]]
    return entry["content"]["application/json"]["schema"]


def check(doc, response, path: str, method: str = "post") -> None:
    _validate(doc, _response_schema(doc, path, method, response.status_code), response.get_json())


def test_document_is_openapi_3_with_valid_schemas(doc):
    assert doc["openapi"].startswith("3.1")
    for path, method in {
        **SPEC_PATHS,
        "/health": "get",
        "/openapi.json": "get",
        "/metrics": "get",
    }.items():
        assert method in doc["paths"][path]
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    # every request field is documented, with its allowed range in words somewhere
    documented = doc["components"]["schemas"]["GenerationRequestBody"]["properties"]
    json_names = {f.alias or name for name, f in GenerationRequestBody.model_fields.items()}
    assert "stop" in json_names and json_names <= set(documented) and json_names <= set(ALLOWED)
    assert doc["components"]["schemas"]["GenerationRequestBody"]["required"] == ["prompt"]
    assert (
        documented["temperature"]["maximum"] == 2 and documented["top_p"]["exclusiveMinimum"] == 0
    )
    assert doc["paths"]["/health"]["get"]["security"] == []


def test_live_responses_match_the_document(client, app, doc, engine, tiny_model_dir, monkeypatch):
    check(doc, client.post("/generate", json={"prompt": "x", "max_length": 3}), "/generate")
    check(doc, client.post("/generate", json={"prompt": "x", "top_p": 2}), "/generate")
    check(doc, client.post("/generate", data="{", content_type="application/json"), "/generate")
    check(doc, client.get("/model_status"), "/model_status", "get")
    check(doc, client.get("/health"), "/health", "get")
    check(doc, client.get("/generate"), "/generate")  # 405 is documented too
    # 429: hold the model's slot so the zero-length line is full
    busy = create_app(make_config(queue_size=0), engine=engine)
    slot = busy.extensions["deepshiva"].queue.acquire()
    try:
        check(doc, busy.test_client().post("/generate", json={"prompt": "x"}), "/generate")
        check(doc, busy.test_client().post("/stream", json={"prompt": "x"}), "/stream")
    finally:
        slot.release()
    # 413, 503, 401
    small = create_app(make_config(max_body_bytes=1024), engine=engine).test_client()
    check(doc, small.post("/generate", json={"prompt": "y" * 4000}), "/generate")
    check(
        doc,
        create_app(make_config()).test_client().post("/generate", json={"prompt": "x"}),
        "/generate",
    )
    keyed = create_app(make_config(api_key="k"), engine=engine).test_client()
    check(doc, keyed.get("/model_status"), "/model_status", "get")
    # 507 (injected: the real decode step raises an out-of-memory error)
    monkeypatch.setattr(
        engine.runner,
        "decode_one_token",
        lambda token: (_ for _ in ()).throw(torch.OutOfMemoryError("out of memory")),
    )
    check(doc, client.post("/generate", json={"prompt": "x", "max_length": 3}), "/generate")


def test_load_model_responses_match_the_document(doc, engine, tiny_model_dir, tmp_path):
    from core import OptimizedLLM

    client = create_app(
        make_config(allowed_models=[str(tiny_model_dir), str(tmp_path)]),
        engine=engine,
        engine_factory=OptimizedLLM,
    ).test_client()
    check(doc, client.post("/load_model", json={"model_name": str(tiny_model_dir)}), "/load_model")
    check(doc, client.post("/load_model", json={"model_name": 3}), "/load_model")
    check(doc, client.post("/load_model", json={"model_name": "/elsewhere"}), "/load_model")  # 403
    check(
        doc,
        client.post("/load_model", json={"model_name": str(tmp_path / "nothing")}),
        "/load_model",
    )  # 404
    broken = shutil.copytree(tiny_model_dir, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"garbage" * 20)
    response = client.post("/load_model", json={"model_name": str(broken)})
    assert response.status_code == 422
    check(doc, response, "/load_model")


def test_stream_events_match_the_document(client, doc):
    events = doc["paths"]["/stream"]["post"]["responses"]["200"]["x-sse-events"]
    raw = client.post("/stream", json={"prompt": "x", "max_length": 4}).get_data(as_text=True)
    blocks = [block for block in raw.split("\n\n") if block]
    for block in blocks:
        lines = block.split("\n")
        name = lines[0][len("event: ") :] if lines[0].startswith("event: ") else "message"
        _validate(doc, events[name], json.loads(lines[-1][len("data: ") :]))
    assert blocks[-1].startswith("event: done")


def test_root_says_what_answers_here_and_links_to_the_rest(client, doc, engine):
    """Opening the server's address in a browser names the service and points to its docs."""
    response = client.get("/")
    assert response.status_code == 200
    check(doc, response, "/", "get")
    body = response.get_json()
    assert body["name"] == "DeepShiva" and body["version"] not in ("", None)
    assert body["model_name"] == engine.model_name and body["state"] == "ready"
    for name in ("health", "openapi", "metrics"):
        assert client.get(body["links"][name]).status_code == 200, name
    assert "docs/API.md" in body["links"]["docs"]
    assert (Path(__file__).parents[2] / "docs" / "API.md").is_file()  # the link names a real file
    empty = create_app(make_config()).test_client().get("/").get_json()
    assert empty["model_name"] is None and empty["state"] == "not_loaded"


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": ""},
        {"prompt": "", "suffix": ""},
        {"prompt": "", "suffix": None},
        {"prompt": "", "suffix": "\n"},
        {"prompt": "x"},
        {"prompt": "x", "suffix": ""},
    ],
)
def test_document_and_server_agree_on_empty_prompts(client, doc, body):
    """The document allowed {"prompt": ""}, which the server rejects (an empty prompt is only
    fill-in-the-middle with a suffix)."""
    schema = {"$ref": "#/components/schemas/GenerationRequestBody"}
    try:
        _validate(doc, schema, {**body, "max_length": 2})
        documented_valid = True
    except jsonschema.ValidationError:
        documented_valid = False
    response = client.post("/generate", json={**body, "max_length": 2})
    assert (response.status_code == 200) == documented_valid, (body, response.get_json())
    if not documented_valid:
        assert response.status_code == 400 and "'prompt'" in response.get_json()["message"]


def test_bearer_security_is_advertised_only_with_a_key(doc, engine):
    assert "security" not in doc and "bearer" not in doc["components"].get("securitySchemes", {})
    keyed = create_app(make_config(api_key="k"), engine=engine).test_client()
    keyed_doc = keyed.get("/openapi.json", headers={"Authorization": "Bearer k"}).get_json()
    assert keyed_doc["security"] == [{"bearer": []}]
    assert keyed_doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_document_names_the_address_the_client_reached(app):
    from server_helpers import running
    import httpx

    with running(app) as url:
        doc = httpx.get(url + "/openapi.json", timeout=10).json()
    assert doc["servers"] == [{"url": url}] and not url.endswith(":5005")


def test_body_over_waitress_limit_gets_the_json_413(engine):
    """Waitress refuses bodies past its own limit (16x the app's) before the app sees them; its
    answer was plain text."""
    from server_helpers import running
    import httpx

    app = create_app(make_config(max_body_bytes=1024), engine=engine)
    with running(app) as url:
        response = httpx.post(
            url + "/generate",
            content=b"x" * (2 << 20),
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        assert response.status_code == 413, response.text[:200]
        assert response.headers["content-type"].startswith("application/json")
        assert response.json() == {
            "status": "error",
            "message": "Request body too large: the limit is 1024 bytes.",
        }
        assert httpx.get(url + "/health", timeout=10).status_code == 200


def test_document_states_the_max_length_the_server_accepts(engine):
    """schemathesis (--checks all) found max_length 512 documented as valid and answered 400 by a
    server started with --max-length-limit 48; the model's context length bounds it too."""
    small = create_app(make_config(max_length_limit=48), engine=engine).test_client()
    doc = small.get("/openapi.json").get_json()
    assert (
        doc["components"]["schemas"]["GenerationRequestBody"]["properties"]["max_length"]["maximum"]
        == 48
    )
    assert small.post("/generate", json={"prompt": "x", "max_length": 49}).status_code == 400
    # omitted, max_length is the documented default, which the limit caps (schemathesis found the
    # default 512 answered 400 by a server whose limit is 48)
    assert (
        doc["components"]["schemas"]["GenerationRequestBody"]["properties"]["max_length"]["default"]
        == 48
    )
    omitted = small.post("/generate", json={"prompt": "x", "temperature": 0})
    assert omitted.status_code == 200 and omitted.get_json()["usage"]["completion_tokens"] <= 48
    large = create_app(make_config(max_length_limit=100_000), engine=engine).test_client()
    context = large.get("/model_status").get_json()["context_length"]
    doc = large.get("/openapi.json").get_json()
    assert (
        doc["components"]["schemas"]["GenerationRequestBody"]["properties"]["max_length"]["maximum"]
        == context
    )
    assert (
        large.post("/generate", json={"prompt": "x", "max_length": context + 1}).status_code == 400
    )


@pytest.mark.parametrize("stop", ["", [""], ["a", ""], ["a"] * 17, "a", ["a"] * 16, None])
def test_document_and_server_agree_on_stop(client, doc, stop):
    """schemathesis --checks all found ``"stop": ""`` documented as valid and answered 400."""
    body = {"prompt": "x", "max_length": 2, "stop": stop}
    try:
        _validate(doc, {"$ref": "#/components/schemas/GenerationRequestBody"}, body)
        documented_valid = True
    except jsonschema.ValidationError:
        documented_valid = False
    response = client.post("/generate", json=body)
    assert (response.status_code == 200) == documented_valid, (stop, response.get_json())


def test_integral_numbers_are_integers_as_in_json_schema(client, doc):
    """schemathesis --checks all sent ``"max_length": 43.0``, a valid JSON Schema integer, and got 400."""
    body = {"prompt": "x", "max_length": 3.0, "top_k": 5.0, "seed": 7.0}
    _validate(doc, {"$ref": "#/components/schemas/GenerationRequestBody"}, body)
    assert client.post("/generate", json=body).status_code == 200
    assert client.post("/generate", json={**body, "max_length": 2.5}).status_code == 400
