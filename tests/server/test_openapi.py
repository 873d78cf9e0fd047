"""The served OpenAPI schema, and Schemathesis against it: no input may cause a 5xx."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from support.serving import serve

SKIPPED = ("/models/create", "/api/pull")  # they reach out to registries: covered in test_dmr_api


def test_openapi_schema_is_served(http: httpx.Client) -> None:
    schema = http.get("/schema/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/api/chat",
                 "/api/generate", "/api/embed", "/models", "/engines/ps", "/engines/unload", "/metrics"):
        assert path in schema["paths"], path
    request = schema["components"]["schemas"]["ChatCompletionRequest"]
    temperature = request["properties"]["temperature"]
    options = [temperature, *temperature.get("oneOf", [])]
    assert any(option.get("maximum") == 2 for option in options)  # ranges are in the schema


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    """A server over an empty store (nothing to delete, nothing to load)."""
    home = tmp_path_factory.mktemp("fuzz")
    with serve(home / "store", home) as server:
        loaded = schemathesis.openapi.from_url(f"{server.url}/schema/openapi.json")
        yield loaded.exclude(path=list(SKIPPED))


fuzzed = schemathesis.pytest.from_fixture("api_schema")


@fuzzed.parametrize()
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_input_causes_a_server_error(case: schemathesis.Case) -> None:
    response = case.call(timeout=30)
    case.validate_response(response, checks=[not_a_server_error])


