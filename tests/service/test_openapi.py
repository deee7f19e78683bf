"""/openapi.json tells the truth about the service, and /docs works without internet (no CDN)."""

from __future__ import annotations

import json
import re
import time

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

import lsr
from lsr.config import ServiceConfig
from lsr.service.app import create_app

KEY = "openapi-test-key"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("openapi")
    lsr.Index.build(["vitamin d and cancer", "coffee and sleep"], path=root / "idx")
    (root / "key").write_text(KEY)
    settings = ServiceConfig(
        indexes={"t": str(root / "idx")}, log_requests=False, api_key_file=str(root / "key"), max_batch=7
    )
    with TestClient(create_app(settings)) as c:
        deadline = time.monotonic() + 60
        while c.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        yield c


def refs(node):
    return re.findall(r'"\$ref": "#/components/schemas/(\w+)"', json.dumps(node))


def test_docs_page_loads_nothing_from_the_network(client):
    r = client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "openapi.json" in r.text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", r.text), "a CDN reference in /docs"
    assert "http://" not in r.text and "https://" not in r.text
    assert client.get("/redoc").status_code == 404


def test_error_answers_are_documented_as_they_are_sent(client):
    spec = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in json.dumps(spec)  # FastAPI's {"detail": ...} is not what we send
    error = spec["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error"]
    for path, method, codes in [
        ("/v1/search", "post", {"400", "401", "404", "413", "415", "422", "503"}),
        ("/v1/search/batch", "post", {"400", "401", "404", "422"}),
        ("/v1/docs/{doc_id}", "get", {"401", "404"}),
        ("/v1/indexes", "get", {"401"}),
        ("/v1/indexes/{name}/reload", "post", {"400", "401", "403", "404"}),
    ]:
        responses = spec["paths"][path][method]["responses"]
        assert codes <= set(responses), (path, sorted(responses))
        for code in codes:
            assert refs(responses[code]) == ["ErrorBody"], (path, code)
    # the real bodies have that shape: a 401 from the middleware, a 422 from validation, a 404
    bodies = [
        client.post("/v1/search", json={"query": "x"}),
        client.post("/v1/search", json={"k": 3}, headers={"X-API-Key": KEY}),
        client.post("/v1/search", json={"query": "x", "index": "nope"}, headers={"X-API-Key": KEY}),
        client.post("/v1/search/batch", json={"queries": []}, headers={"X-API-Key": KEY}),
    ]
    assert [r.status_code for r in bodies] == [401, 422, 404, 422]
    for r in bodies:
        body = r.json()
        assert set(body) == {"error"} and set(body["error"]) == {"status", "message"}
        assert body["error"]["status"] == r.status_code


def test_metrics_are_documented_as_text(client):
    spec = client.get("/openapi.json").json()
    content = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(content) == ["text/plain"]
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")


def test_request_schemas_refuse_what_the_service_refuses(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    one_of = [{"required": ["query"]}, {"required": ["vector"]}]
    assert schemas["SearchRequest"]["oneOf"] == one_of  # {} is not schema-valid: the service says 422
    assert schemas["BatchQuery"]["oneOf"] == one_of
    queries = schemas["BatchRequest"]["properties"]["queries"]
    assert (queries["minItems"], queries["maxItems"]) == (1, 7)  # [] and > --max-batch are refused
    assert "null" not in json.dumps(schemas["SearchRequest"]["properties"]["query"])
    r = client.post("/v1/search", json={"query": "vitamin", "vector": None}, headers={"X-API-Key": KEY})
    assert r.status_code == 422 and "'vector' is null" in r.json()["error"]["message"]


def test_api_key_is_a_security_scheme(client):
    spec = client.get("/openapi.json").json()
    scheme = spec["components"]["securitySchemes"]["ApiKey"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-API-Key")
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            assert ("security" in operation) == path.startswith("/v1/"), path


def test_a_method_not_allowed_says_which_are(client):
    r = client.request("TRACE", "/v1/search", headers={"X-API-Key": KEY})
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.json()["error"]["status"] == 405


def test_success_answers_match_their_documented_schemas(client):
    from lsr.service import openapi as models

    spec = client.get("/openapi.json").json()
    key = {"X-API-Key": KEY}
    text_query = {"json": {"query": "vitamin", "fields": ["title", "text"]}}
    checks = [
        ("/v1/search", "post", text_query, models.SearchAnswer),
        ("/v1/search", "post", {"json": {"vector": {"vitamin": 1.0, "zzz": 2.0}}}, models.SearchAnswer),
        (
            "/v1/search/batch",
            "post",
            {"json": {"queries": [{"id": "q", "query": "coffee"}, {"query": "d"}]}},
            models.BatchAnswer,
        ),
        (
            "/v1/explain",
            "post",
            {"json": {"query": "vitamin cancer", "ids": ["0", "1"]}},
            models.ExplainAnswer,
        ),
        ("/v1/indexes", "get", {}, models.IndexesAnswer),
        ("/v1/docs/{doc_id}", "get", {"params": {"index": "t"}}, models.DocAnswer),
        ("/v1/indexes/{name}/reload", "post", {}, models.ReloadAnswer),
        ("/healthz", "get", {}, models.Health),
        ("/readyz", "get", {}, models.Ready),
    ]
    for path, method, kwargs, model in checks:
        url = path.replace("{doc_id}", "0").replace("{name}", "t")
        r = client.request(method.upper(), url, headers=key, **kwargs)
        assert r.status_code == 200, (url, r.text)
        model.model_validate(r.json())  # extra="forbid": an undocumented key fails
        documented = spec["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        assert documented == {"$ref": f"#/components/schemas/{model.__name__}"}


def test_the_schema_carries_the_service_limits(client):
    """The settings' limits are schema bounds, so a request the schema allows is one the service takes."""
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    search = schemas["SearchRequest"]["properties"]
    assert (search["k"]["minimum"], search["k"]["maximum"], search["from"]["maximum"]) == (1, 1000, 999)
    assert search["query"]["pattern"] == r"\S" and search["query"]["maxLength"] == 2048
    assert search["vector"]["maxProperties"] == 4096
    assert search["vector"]["additionalProperties"] == {"type": "number", "minimum": 1e-30, "maximum": 1e6}
    assert schemas["ExplainRequest"]["properties"]["ids"]["maxItems"] == 100
    assert "pattern" in schemas["DocIn"]["properties"]["id"]
    for body, status in (
        ({"query": "vitamin", "k": 1000, "from": 999}, 400),  # from + k: what the schema cannot say
        ({"query": "vitamin", "k": 3.0}, 200),  # JSON Schema's integer: 3.0 is 3
        ({"query": "vitamin", "k": 3.5}, 422),
        ({"vector": {"vitamin": 1e7}}, 422),
    ):
        r = client.post("/v1/search", json=body, headers={"X-API-Key": KEY})
        assert r.status_code == status, (body, r.text)
