"""Prometheus metrics (GET /metrics) and the one-line-per-request log.

Request counts and latencies are observed by an ASGI middleware; token counters and latency
histograms by the inference routes; engine state (queue depth, busy slots, prefix-cache reuse,
loaded models and their memory) is read from the runner at scrape time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
from litestar import Response, get
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from mr.server.context import Req

if TYPE_CHECKING:
    from mr.runner import Runner
    from mr.server.openai.protocol import UsageOut

access_log = logging.getLogger("mr.access")
disable_created_metrics()  # no *_created series: they double the scrape for nothing
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)


class StreamTimer:
    """Time to first token, then the gaps between tokens, for one request. A token costs one
    timestamp in a list (`times`, which mr.server.wire appends to directly); the histograms are
    updated once, in `done`, under one lock."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._start = time.perf_counter()
        self.times: list[float] = []
        self.engine_frames = 0  # of `times`, those the engine sent itself

    def token(self) -> None:
        self.times.append(time.perf_counter())

    def done(self) -> None:
        """Record this request's latencies (once; later calls do nothing)."""
        times, self.times = self.times, []
        if self.engine_frames:
            self._metrics.engine_frames.inc(self.engine_frames)
            self.engine_frames = 0
        if not times:
            return
        self._metrics.ttft_seconds.observe(times[0] - self._start)
        if len(times) > 1:
            self._metrics.itl_seconds.observe_many(np.diff(np.asarray(times)))


class BulkHistogram(Collector):
    """A Prometheus histogram that takes a request's worth of observations in one call (the
    client library's Histogram takes them one at a time, each under its lock)."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]) -> None:
        self._name, self._doc = name, documentation
        self._bounds = np.asarray(buckets, dtype=np.float64)
        self._counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # the last one: +Inf
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: np.ndarray) -> None:
        counts = np.bincount(np.searchsorted(self._bounds, values, side="left"),
                             minlength=len(self._counts))
        with self._lock:
            self._counts += counts
            self._sum += float(values.sum())

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            cumulative, total = np.cumsum(self._counts), self._sum
        labels = [*(repr(float(b)) for b in self._bounds), "+Inf"]
        yield HistogramMetricFamily(self._name, self._doc, sum_value=total,
                                    buckets=list(zip(labels, (int(c) for c in cumulative), strict=True)))


class Metrics:
    def __init__(self, runner: Runner | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("mr_http_requests", "HTTP requests by endpoint and status",
                                ["method", "endpoint", "status"], registry=r)
        self.latency = Histogram("mr_http_request_duration_seconds", "Time to the end of the response",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.ttft_seconds = Histogram("mr_time_to_first_token_seconds", "Time to first token",
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.itl_seconds = BulkHistogram("mr_inter_token_latency_seconds", "Time between streamed tokens",
                                         TOKEN_BUCKETS)
        r.register(self.itl_seconds)
        self.streams = Counter("mr_streamed_responses", "Streamed responses by how their tokens reached the "
                               "socket: direct (rendered in the engine, written by the event pump) or asgi",
                               ["path"], registry=r)
        self.engine_frames = Counter("mr_engine_sent_frames", "Streamed frames the engine thread sent to "
                                     "the client's socket itself (no event-loop wake-up)", registry=r)
        self.prompt_tokens = Counter("mr_prompt_tokens", "Prompt tokens processed", ["model"], registry=r)
        self.generated_tokens = Counter("mr_generated_tokens", "Tokens generated", ["model"], registry=r)
        self.cached_tokens = Counter("mr_cached_prompt_tokens", "Prompt tokens reused from the cache",
                                     ["model"], registry=r)
        if runner is not None:
            r.register(RunnerCollector(runner))

    def stream_timer(self, direct: bool = False) -> StreamTimer:
        """A streamed response's timer; counts the response by its path."""
        self.streams.labels("direct" if direct else "asgi").inc()
        return StreamTimer(self)

    def ttft(self, seconds: float) -> None:
        self.ttft_seconds.observe(seconds)

    def tokens(self, model: str, prompt: int, generated: int, cached: int = 0) -> None:
        self.prompt_tokens.labels(model).inc(prompt)
        self.generated_tokens.labels(model).inc(generated)
        if cached:
            self.cached_tokens.labels(model).inc(cached)

    def usage(self, model: str, usage: UsageOut) -> None:
        """Count an OpenAI usage object (prompt, completion, cached)."""
        self.tokens(model, usage.prompt_tokens, usage.completion_tokens,
                    usage.prompt_tokens_details.cached_tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RunnerCollector(Collector):
    """Engine and lifecycle state, read when scraped."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def collect(self) -> Iterator[Metric]:
        gauges = {name: GaugeMetricFamily(f"mr_{name}", doc, labels=["model"]) for name, doc in (
            ("queue_depth", "Requests waiting for a slot"), ("busy_slots", "Slots generating"),
            ("slots", "Slots configured"), ("active_requests", "Requests holding the model"),
            ("model_memory_bytes", "Estimated memory of the loaded model"),
        )}
        reused = CounterMetricFamily("mr_prefix_cache_reused_tokens", "Prompt tokens reused",
                                     labels=["model"])
        hits = CounterMetricFamily("mr_prefix_cache_hits", "Requests that reused a cached prefix",
                                   labels=["model"])
        drafted = CounterMetricFamily("mr_spec_drafted_tokens",
                                      "Draft tokens verified (speculative decoding)", labels=["model"])
        accepted = CounterMetricFamily("mr_spec_accepted_tokens", "Draft tokens kept", labels=["model"])
        loaded = self.runner.loaded()
        for m in loaded:
            stats = m.stats()
            gauges["queue_depth"].add_metric([m.name], stats.get("queued", 0))
            gauges["busy_slots"].add_metric([m.name], stats.get("busy_slots", 0))
            gauges["slots"].add_metric([m.name], m.n_slots)
            gauges["active_requests"].add_metric([m.name], m.active)
            gauges["model_memory_bytes"].add_metric([m.name], m.estimate.total)
            reused.add_metric([m.name], stats.get("tokens_reused", 0))
            hits.add_metric([m.name], stats.get("prefix_hits", 0))
            drafted.add_metric([m.name], stats.get("spec_drafted", 0))
            accepted.add_metric([m.name], stats.get("spec_accepted", 0))
        yield from gauges.values()
        yield from (reused, hits, drafted, accepted)
        loads = CounterMetricFamily("mr_model_loads", "Times a model was loaded", labels=["model"])
        for name, count in self.runner.loads.items():
            loads.add_metric([name], count)
        yield loads
        yield GaugeMetricFamily("mr_loaded_models", "Models loaded", value=len(loaded))
        yield GaugeMetricFamily("mr_memory_used_bytes", "Estimated memory of all loaded models",
                                value=self.runner.used_memory())
        yield GaugeMetricFamily("mr_memory_budget_bytes", "Memory budget for models",
                                value=self.runner.pool_size)


@get("/metrics", summary="Prometheus metrics", tags=["Runtime"], media_type="text/plain")
async def metrics_route(request: Req) -> Response[bytes]:
    from mr.server.context import server_context

    body = server_context(request).metrics.render()
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


def observe_middleware(metrics: Metrics, log_requests: bool) -> Callable[[ASGIApp], ASGIApp]:
    """ASGI middleware factory: counts, times and logs every HTTP request."""

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            start = time.perf_counter()
            status = 500

            async def send_wrapper(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_wrapper)
            finally:
                elapsed = time.perf_counter() - start
                endpoint = scope.get("path_template") or "unmatched"
                metrics.requests.labels(scope["method"], endpoint, str(status)).inc()
                metrics.latency.labels(endpoint).observe(elapsed)
                if log_requests:
                    access_log.info("%s %s %d %.1fms", scope["method"], scope["path"], status, elapsed * 1e3)

        return middleware

    return factory
