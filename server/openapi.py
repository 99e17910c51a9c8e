"""The OpenAPI 3.1 document of the API, built from the pydantic models in schemas.py.

Schemas come from the same models that validate requests, so the document cannot drift from
the code; the tests check live responses against it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal, Optional

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from . import schemas
from .errors import LOAD_FAILED_STATUS, NO_MODEL_STATUS, OOM_STATUS


class StreamError(BaseModel):
    """data of the final ``event: error`` of /stream."""

    status: str = Field(description="Always 'error'.")
    message: str
    code: int = Field(
        description="The HTTP status this failure would have had before the stream began."
    )


class IndexLinks(BaseModel):
    health: str = Field(description="Liveness: GET /health.")
    openapi: str = Field(description="This document: GET /openapi.json.")
    metrics: str = Field(description="Prometheus metrics: GET /metrics.")
    docs: str = Field(
        description="Where the API is described in words (docs/API.md of the source tree)."
    )


class ServiceIndex(BaseModel):
    """GET /: what answers at this address and where to look next."""

    name: str
    description: str
    version: str = Field(description="The installed deepshiva package's version.")
    model_name: Optional[str] = Field(
        description="The model serving now; null when none is loaded."
    )
    state: Literal["not_loaded", "loading", "ready"]
    links: IndexLinks


# The schema of each event of a text/event-stream body (how schemathesis and OpenAPI 3.2's
# itemSchema read it): the stream as a whole is not one string to validate.
SSE_EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["message", "done", "error"]},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "description": "One line of JSON: StreamChunk, GenerateResponse (done) or StreamError (error).",
        },
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
    "required": ["data"],
}

REQUEST_MODELS = [schemas.GenerationRequestBody, schemas.LoadModelRequest]
RESPONSE_MODELS = [
    schemas.GenerateResponse,
    schemas.StreamChunk,
    StreamError,
    schemas.ErrorResponse,
    schemas.LoadModelResponse,
    schemas.ModelStatus,
    schemas.Health,
    ServiceIndex,
]

ERRORS = {
    "400": "Invalid JSON or parameter; the message names the field and its allowed range.",
    "401": "Missing or wrong `Authorization: Bearer <key>` (only when the server has an API key).",
    "403": (
        "The model is not on the server's allow-list, or the request's Host or Origin is not this "
        "server's own (see --allowed-hosts)."
    ),
    "404": "Model not found (or unknown path).",
    "405": "Method not allowed on this path.",
    "413": "Request body larger than the server's limit.",
    "415": "The request body is not application/json.",
    str(
        LOAD_FAILED_STATUS
    ): "The model exists but could not be loaded (broken or unsupported files).",
    "429": "The request queue is full; retry after the Retry-After seconds.",
    "500": "A bug in the server; the message says where to look (the server log).",
    str(NO_MODEL_STATUS): (
        "No model is loaded yet: POST /load_model first, or retry while the first model "
        "loads (Retry-After is set)."
    ),
    str(OOM_STATUS): "Out of memory while loading or generating; the server stays up.",
}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: str) -> dict:
    return {code: {"$ref": f"#/components/responses/Error{code}"} for code in codes}


@lru_cache(maxsize=16)
def openapi_document(
    server_url: str = "http://127.0.0.1:5005", api_key: bool = False, max_length: int | None = None
) -> dict:
    """The document for a server reached at ``server_url``; bearer security only with ``api_key``;
    ``max_length`` is the largest the server accepts now (its limit, or the model's context)."""
    models = [(m, "validation") for m in REQUEST_MODELS] + [
        (m, "serialization") for m in RESPONSE_MODELS
    ]
    _, defs = models_json_schema(models, ref_template="#/components/schemas/{model}")
    component_schemas = defs.get("$defs", {})
    if max_length is not None:
        field = component_schemas["GenerationRequestBody"]["properties"]["max_length"]
        field["maximum"] = max_length
        field["default"] = min(
            field["default"], max_length
        )  # what the server uses when it is omitted
    common = ("401", "403", "405", "500")
    generation_errors = _errors(
        "400", "413", "415", "429", str(NO_MODEL_STATUS), str(OOM_STATUS), *common
    )
    generate_body = {
        "required": True,
        "content": {"application/json": {"schema": _ref("GenerationRequestBody")}},
    }
    sse_description = (
        "Server-Sent Events. Each chunk is an unnamed event whose data is a StreamChunk JSON object; "
        "the last event is `event: done` (data: GenerateResponse, with the whole response and usage) "
        "or `event: error` (data: StreamError). Headers: Cache-Control: no-cache, X-Accel-Buffering: no."
    )
    paths = {
        "/": {
            "get": {
                "summary": "The service's name, version and the links to the rest of its documentation.",
                "responses": {
                    "200": _json(_ref("ServiceIndex"), "What answers here."),
                    **_errors(*common),
                },
            }
        },
        "/load_model": {
            "post": {
                "summary": "Load a model (name or local directory); the previous model serves until it succeeds.",
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _ref("LoadModelRequest")}},
                },
                "responses": {
                    "200": _json(_ref("LoadModelResponse"), "Loaded."),
                    **_errors(
                        "400",
                        "404",
                        "413",
                        "415",
                        str(LOAD_FAILED_STATUS),
                        str(OOM_STATUS),
                        *common,
                    ),
                },
            }
        },
        "/generate": {
            "post": {
                "summary": "Generate a completion for a prompt (and optional suffix for fill-in-the-middle).",
                "requestBody": generate_body,
                "responses": {
                    "200": _json(_ref("GenerateResponse"), "The completion."),
                    **generation_errors,
                },
            }
        },
        "/stream": {
            "post": {
                "summary": "Generate a completion as Server-Sent Events.",
                "requestBody": generate_body,
                "responses": {
                    "200": {
                        "description": sse_description,
                        "content": {"text/event-stream": {"schema": SSE_EVENT}},
                        "x-sse-events": {
                            "message": _ref("StreamChunk"),
                            "done": _ref("GenerateResponse"),
                            "error": _ref("StreamError"),
                        },
                    },
                    **generation_errors,
                },
            }
        },
        "/model_status": {
            "get": {
                "summary": "The loaded model, its facts and the loading state.",
                "responses": {"200": _json(_ref("ModelStatus"), "Status."), **_errors(*common)},
            }
        },
        "/health": {
            "get": {
                "summary": "Readiness; never needs the API key. 503 while the first model loads.",
                "security": [],
                "responses": {
                    "200": _json(_ref("Health"), "The server is up (with or without a model)."),
                    str(NO_MODEL_STATUS): _json(
                        _ref("ErrorResponse"),
                        "The first model is still loading; retry after the Retry-After seconds.",
                    ),
                    **_errors("403", "405", "500"),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document.",
                "responses": {
                    "200": _json({"type": "object"}, "OpenAPI 3.1 document."),
                    **_errors(*common),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics.",
                "responses": {
                    "200": {
                        "description": "Prometheus text format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(*common),
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "DeepShiva API",
            "version": "1.0.0",
            "description": "Self-hosted code completion. Every error body is "
            '{"status": "error", "message": ...}.',
        },
        "servers": [{"url": server_url}],
        **({"security": [{"bearer": []}]} if api_key else {}),
        "paths": paths,
        "components": {
            "schemas": component_schemas,
            "responses": {
                f"Error{code}": _json(_ref("ErrorResponse"), text) for code, text in ERRORS.items()
            },
            **(
                {
                    "securitySchemes": {
                        "bearer": {
                            "type": "http",
                            "scheme": "bearer",
                            "description": "The server's API key (--api-key).",
                        }
                    }
                }
                if api_key
                else {}
            ),
        },
    }
