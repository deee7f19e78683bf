"""The service's OpenAPI document as the service really answers, and ``/docs`` without a CDN.

* every error is ``{"error": {"status", "message"}}`` (:class:`ErrorBody`), and each route lists the
  error statuses it can answer (:func:`error_responses`), in place of FastAPI's ``{"detail": ...}`` 422;
* the ``X-API-Key`` header is a security scheme, required on ``/v1`` routes when the service has a key;
* ``/docs`` is a small page (``docs.html``) served by the service itself (no Swagger UI from a CDN:
  it works offline) that renders ``/openapi.json``: routes, parameters, bodies, answers, schemas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from lsr.config import ServiceConfig

API_KEY_SCHEME = "ApiKey"

ERRORS = {
    400: "malformed JSON body, or a request the schema allows that this index or service cannot serve as "
    "asked: an option the index lacks (block-max modes, a dense stage, a docstore, the filter's fields), "
    "a combination the schema does not state (alpha or beta below 1 or a budget outside mode approx, a "
    "budget on a live or sharded index, from + k past "
    "max_k, rerank with a vector or a filter, too many query tokens, a repeated document id)",
    401: "missing or wrong X-API-Key (when the service has a key)",
    403: "a reload path outside the index roots (lsr serve --index-root)",
    404: "unknown index or document id",
    409: "another writer holds the index's write lock",
    413: "request body larger than --max-body-bytes",
    415: "body not sent as application/json",
    422: "a value outside the schema (the service's limits included)",
    503: "not ready yet, or the search took longer than the timeout",
}


class ErrorDetail(BaseModel):
    status: int
    message: str


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {"status": 422, "message": "k = 0 must lie in [1, 1000]"}}``."""

    error: ErrorDetail


def error_responses(*codes: int, ok: type[BaseModel] | None = None) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: each status with its meaning and the :class:`ErrorBody` schema,
    and the success answer's model ``ok`` (documentation only: answers are built as dicts)."""
    out: dict[int | str, dict[str, Any]] = {200: {"model": ok}} if ok is not None else {}
    return out | {code: {"model": ErrorBody, "description": ERRORS[code]} for code in codes}


# --- success answers (documentation; tests validate real answers against them) --------------------


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Hit(_Answer):
    rank: int
    id: str
    score: float
    title: str = Field(
        default="", description="with fields: ['title'] (the default when there is a docstore)"
    )
    text: str = Field(default="", description="with fields: ['text']")


class QueryAnswer(_Answer):
    query_terms: int = Field(default=0, description="non-zero query terms (absent with rerank)")
    ignored_terms: list[str] = Field(
        default=[], description="vector terms the index does not know (up to 20)"
    )
    partial: bool = Field(
        default=False, description="a sharded index answered without some shards (see missing_shards)"
    )
    missing_shards: list[str] = Field(
        default=[], description="with partial: the shards that did not answer; their documents are absent"
    )
    hits: list[Hit]


class SearchAnswer(QueryAnswer):
    index: str
    generation: int
    k: int
    mode: str
    took_ms: float


class BatchItem(QueryAnswer):
    id: str | None


class BatchAnswer(_Answer):
    index: str
    generation: int
    k: int
    mode: str
    took_ms: float
    results: list[BatchItem]


class QueryTerm(_Answer):
    term: str
    weight: float


class TermContribution(_Answer):
    term: str
    query_weight: float
    doc_impact: float = Field(description="stored impact x the index's quantization scale")
    contribution: float = Field(description="query_weight x doc_impact")


class ExplainedDoc(_Answer):
    id: str
    score: float = Field(
        description="the sum of the contributions: the document's score for this query (search answers "
        "the same number, summed in float32)"
    )
    terms: list[TermContribution] = Field(description="the query terms the document holds, largest first")


class ExplainAnswer(_Answer):
    index: str
    generation: int
    scale: float = Field(description="the index's quantization scale")
    query_terms: list[QueryTerm] = Field(description="the encoded query, heaviest first")
    docs: list[ExplainedDoc]


class EncoderInfo(_Answer):
    name: str | None
    model: str | None


class IndexInfo(_Answer):
    name: str
    path: str
    generation: int
    loaded_at: float
    load_seconds: float
    n_docs: int
    n_terms: int
    n_postings: int
    bytes: int
    impacts: str | None
    encoder: EncoderInfo
    modes: list[str]
    docstore: bool
    dense_rerank: bool


class IndexesAnswer(_Answer):
    indexes: list[IndexInfo]
    ready: bool


class Previous(_Answer):
    path: str
    generation: int


class ReloadAnswer(IndexInfo):
    previous: Previous


class DocAnswer(_Answer):
    index: str
    id: str
    title: str = ""
    text: str = ""


class UpsertAnswer(_Answer):
    index: str
    generation: int = Field(description="the committed generation that holds the write")
    added: list[str] = Field(description="ids that were new")
    updated: list[str] = Field(description="ids that existed: their old version is deleted")


class DeleteAnswer(_Answer):
    index: str
    generation: int
    deleted: list[str]


class Health(_Answer):
    status: str
    uptime_s: float


class Ready(_Answer):
    ready: bool
    indexes: list[str]
    missing_shards: dict[str, list[str]] = Field(
        default={}, description="sharded indexes served without some shards (answers are partial)"
    )


def _add_limits(schemas: dict[str, Any], settings: ServiceConfig) -> None:
    """The service's limits as schema bounds, so that a request the schema allows is one the service
    serves (or answers 400/404 for what only the index knows)."""

    def props(name: str) -> dict[str, Any]:
        return schemas.get(name, {}).get("properties", {})

    for name in ("SearchRequest", "BatchRequest"):
        props(name).get("k", {}).update(minimum=1, maximum=settings.max_k)
        props(name).get("from", {}).update(minimum=0, maximum=settings.max_k - 1)
        for key in ("alpha", "beta"):
            props(name).get(key, {}).update(exclusiveMinimum=0, maximum=1)
        props(name).get("budget", {}).update(minimum=0)
    for name in ("SearchRequest", "BatchQuery", "ExplainRequest"):
        props(name).get("query", {}).update(pattern=r"\S", maxLength=settings.max_query_chars)
        props(name).get("vector", {}).update(maxProperties=settings.max_vector_terms)
    props("BatchRequest").get("queries", {}).update(maxItems=settings.max_batch)


V1_ERRORS = (401, 413, 503)  # the middleware can answer these on any /v1 route
BODY_ERRORS = (400, 415, 422)  # a route with a JSON body


def install_openapi(app: FastAPI, api_key_required: bool, settings: ServiceConfig) -> None:
    """Replace ``app.openapi`` with one that adds the API key scheme and the service's limits (batch
    size, k, query length, vector terms), and serve ``/docs`` from the package."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {})
        components["securitySchemes"] = {
            API_KEY_SCHEME: {
                "type": "apiKey",
                "in": "header",
                "name": "X-API-Key",
                "description": "needed on /v1 routes when the service runs with a key "
                "(--api-key-file, $LSR_API_KEY)",
            }
        }
        for path, operations in schema["paths"].items():
            if path.startswith("/v1/") and api_key_required:
                for operation in operations.values():
                    operation["security"] = [{API_KEY_SCHEME: []}]
        _add_limits(components.get("schemas", {}), settings)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

    page = (Path(__file__).parent / "docs.html").read_text(encoding="utf-8")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page)
