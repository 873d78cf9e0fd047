"""The one OpenAI-API client every server is measured with: streaming requests, usage counted.

Works against mr, llama-server and any OpenAI-compatible base URL (Ollama, Docker Model Runner).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from bench.traces import Trace, Wave
from bench.workload import chat_messages

TIMEOUT = httpx.Timeout(connect=10, read=300, write=30, pool=300)


@dataclass(frozen=True)
class Target:
    name: str  # "mr-serve", "llama-server", or a name given with --url
    base_url: str  # ".../v1"
    model: str
    api_key: str | None = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


class NoUsageError(RuntimeError):
    pass


def body(target: Target, endpoint: str, user: str, max_tokens: int, system: str | None) -> dict[str, Any]:
    common: dict[str, Any] = {"model": target.model, "max_tokens": max_tokens, "temperature": 0,
                              "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True}
    if endpoint == "chat":
        return {**common, "messages": chat_messages(user, system)}
    return {**common, "prompt": f"{system}\n\n{user}" if system else user}


async def _one(client: httpx.AsyncClient, target: Target, endpoint: str, user: str, max_tokens: int,
               system: str | None) -> Trace:
    path = "/chat/completions" if endpoint == "chat" else "/completions"
    trace = Trace(start=time.perf_counter())
    chunks = 0
    request = body(target, endpoint, user, max_tokens, system)
    url = target.base_url + path
    async with client.stream("POST", url, json=request, headers=target.headers()) as response:
        if response.status_code != 200:
            detail = (await response.aread())[:300]
            raise RuntimeError(f"{target.name}: HTTP {response.status_code}: {detail!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if _text(chunk, endpoint):
                chunks += 1
                trace.marks.append((time.perf_counter(), chunks))
            usage = chunk.get("usage")
            if usage:
                trace.tokens = int(usage.get("completion_tokens", 0))
                trace.prompt_tokens = int(usage.get("prompt_tokens", 0))
                details = usage.get("prompt_tokens_details") or {}
                trace.cached_tokens = int(details.get("cached_tokens") or 0)
    trace.end = time.perf_counter()
    if not trace.tokens:
        raise NoUsageError(f"{target.name} sent no usage (stream_options.include_usage) or no tokens")
    return trace


def _text(chunk: dict[str, Any], endpoint: str) -> str:
    choices = chunk.get("choices") or []
    if not choices:
        return ""
    if endpoint == "chat":
        delta = choices[0].get("delta") or {}
        return delta.get("content") or delta.get("reasoning_content") or ""
    return choices[0].get("text") or ""


async def _wave(target: Target, endpoint: str, users: list[str], max_tokens: int, system: str | None) -> Wave:
    limits = httpx.Limits(max_connections=len(users) + 4, max_keepalive_connections=len(users) + 4)
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as client:
        start = time.perf_counter()
        traces = await asyncio.gather(*(_one(client, target, endpoint, u, max_tokens, system) for u in users))
        return Wave(list(traces), time.perf_counter() - start)


def wave(target: Target, endpoint: str, users: list[str], max_tokens: int, system: str | None = None) -> Wave:
    """Send one streaming request per user message at once (temperature 0, ignore_eos), wait for all."""
    return asyncio.run(_wave(target, endpoint, users, max_tokens, system))


def ttft(target: Target, endpoint: str, user: str, system: str | None = None) -> Trace:
    """One request for one token: time to first token and the cached-token count the server reports."""
    return wave(target, endpoint, [user], 1, system).traces[0]
