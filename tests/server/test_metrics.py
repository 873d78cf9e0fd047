"""GET /metrics: Prometheus text with request, token, latency, engine and memory series."""

from __future__ import annotations

import re

import httpx

from support.serving import SMOL


def value(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} ([0-9.e+-]+)$", text, re.M)
    assert match, f"{series} not in /metrics"
    return float(match.group(1))


def test_prometheus_metrics_after_traffic(http: httpx.Client) -> None:
    chat = {"model": SMOL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0}
    assert http.post("/v1/chat/completions", json=chat).status_code == 200
    assert http.post("/v1/chat/completions", json={**chat, "stream": True}).status_code == 200
    http.post("/v1/chat/completions", json={**chat, "temperature": 9})
    r = http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    ok = 'mr_http_requests_total{endpoint="/v1/chat/completions",method="POST",status="200"}'
    bad = 'mr_http_requests_total{endpoint="/v1/chat/completions",method="POST",status="400"}'
    assert value(text, ok) >= 2 and value(text, bad) >= 1
    assert value(text, 'mr_generated_tokens_total{model="smollm2"}') >= 8
    assert value(text, 'mr_prompt_tokens_total{model="smollm2"}') > 0
    assert value(text, "mr_time_to_first_token_seconds_count") >= 1
    assert value(text, "mr_inter_token_latency_seconds_count") >= 1
    assert value(text, 'mr_slots{model="smollm2"}') == 4
    assert value(text, 'mr_busy_slots{model="smollm2"}') == 0
    assert value(text, 'mr_queue_depth{model="smollm2"}') == 0
    assert value(text, 'mr_prefix_cache_reused_tokens_total{model="smollm2"}') > 0  # same prompt twice
    assert value(text, 'mr_model_memory_bytes{model="smollm2"}') > 90 << 20
    assert value(text, "mr_loaded_models") >= 1 and value(text, "mr_memory_budget_bytes") > 0
    assert "_created" not in text
