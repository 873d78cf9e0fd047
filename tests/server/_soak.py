"""The soak workload (tests/server/test_soak.py, scripts/soak.sh): mixed traffic against one
server for a while, then an account of every request and of the server's resources.

Traffic: streaming and non-streaming chat, n > 1, tool calls, embeddings, clients that leave
mid-stream and while queued, unload/reload, idle gaps longer than the keep-alive."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@dataclass
class Report:
    outcomes: Counter[str] = field(default_factory=Counter)  # kind -> count
    unaccounted: list[str] = field(default_factory=list)  # anything that is not ok or a clean error
    rss_start: int = 0
    rss_end: int = 0
    fds_start: dict[int, str] = field(default_factory=dict)  # fd -> what it points at
    fds_end: dict[int, str] = field(default_factory=dict)

    def new_fds(self) -> dict[int, str]:
        """Descriptors open at the end that were not open at the start (a number reused for
        another file counts as new)."""
        return {fd: what for fd, what in self.fds_end.items() if self.fds_start.get(fd) != what}

    @property
    def requests(self) -> int:
        return sum(self.outcomes.values())

    def summary(self) -> str:
        growth = 100.0 * (self.rss_end - self.rss_start) / max(self.rss_start, 1)
        faults = sum(v for k, v in self.outcomes.items() if k.startswith(("disconnect", "unload", "idle")))
        return (f"soak: {self.requests} requests ({dict(sorted(self.outcomes.items()))}), {faults} faults "
                f"injected, RSS {self.rss_start >> 20} -> {self.rss_end >> 20} MiB ({growth:+.1f}%), "
                f"fds {len(self.fds_start)} -> {len(self.fds_end)} (new: {self.new_fds()}), "
                f"unaccounted {len(self.unaccounted)}")


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def fds() -> dict[int, str]:
    """This process's open descriptors and their targets (socket:[inode], pipe:[...], paths)."""
    gc.collect()  # a socket only a garbage cycle still holds is not a leak of the server's
    found = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, or one closed meanwhile
            found[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return found


def _clean_error(r: httpx.Response) -> bool:
    if r.status_code not in (400, 404, 409, 422, 499, 503, 507):
        return False
    try:
        body = r.json()
    except ValueError:
        return False
    return isinstance(body, dict) and "error" in body


class Soak:
    def __init__(self, url: str, model: str, seed: int = 0) -> None:
        self.url, self.model = url, model
        self.rng = random.Random(seed)
        self.report = Report()

    def _ok(self, kind: str) -> None:
        self.report.outcomes[kind] += 1

    def _judge(self, kind: str, r: httpx.Response) -> None:
        if r.status_code == 200:
            self._ok(kind)
        elif _clean_error(r):
            self._ok(f"{kind}:error{r.status_code}")
        else:
            self.report.unaccounted.append(f"{kind}: {r.status_code} {r.text[:120]}")

    def _chat_body(self, **extra: Any) -> dict[str, Any]:
        return {"model": self.model, "messages": [{"role": "user", "content": f"hello {self.rng.random()}"}],
                "max_tokens": self.rng.randint(4, 24), **extra}

    async def chat(self, c: httpx.AsyncClient) -> None:
        body = self._chat_body(n=self.rng.choice([1, 2]))
        self._judge("chat", await c.post("/v1/chat/completions", json=body))

    async def tools(self, c: httpx.AsyncClient) -> None:
        body = self._chat_body(tools=[TOOL], tool_choice="required", max_tokens=60)
        self._judge("tools", await c.post("/v1/chat/completions", json=body))

    async def embed(self, c: httpx.AsyncClient) -> None:
        body = {"model": self.model, "input": [f"text {i}" for i in range(self.rng.randint(1, 8))]}
        self._judge("embeddings", await c.post("/v1/embeddings", json=body))

    async def stream(self, c: httpx.AsyncClient, leave_after: int | None = None) -> None:
        kind = "stream" if leave_after is None else "disconnect-mid-stream"
        async with c.stream("POST", "/v1/chat/completions", json=self._chat_body(stream=True)) as r:
            if r.status_code != 200:
                await r.aread()
                self._judge(kind, r)
                return
            frames = 0
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                frames += 1
                if leave_after is not None and frames >= leave_after:
                    self._ok(kind)  # the client leaves; the server must free the slot
                    return
                if line == "data: [DONE]":
                    self._ok(kind)
                    return
                if "error" in json.loads(line[6:]):
                    self._ok(f"{kind}:error-event")
                    return
            self.report.unaccounted.append(f"{kind}: the stream ended without [DONE] or an error")

    async def leave_while_queued(self, c: httpx.AsyncClient) -> None:
        try:
            await c.post("/v1/chat/completions", json=self._chat_body(max_tokens=64), timeout=0.05)
            self._ok("disconnect-queued:finished-first")
        except httpx.TimeoutException:
            self._ok("disconnect-queued")

    async def unload(self, c: httpx.AsyncClient) -> None:
        self._judge("unload", await c.post("/engines/unload", json={"models": [self.model]}))

    async def one(self, c: httpx.AsyncClient) -> None:
        pick = self.rng.random()
        if pick < 0.25:
            await self.stream(c)
        elif pick < 0.45:
            await self.chat(c)
        elif pick < 0.55:
            await self.tools(c)
        elif pick < 0.7:
            await self.embed(c)
        elif pick < 0.8:
            await self.stream(c, leave_after=self.rng.randint(1, 4))
        elif pick < 0.9:
            await self.leave_while_queued(c)
        elif pick < 0.95:
            await self.unload(c)
        else:
            await asyncio.sleep(0)
            await self.chat(c)

    async def run(self, seconds: float, clients: int = 6, idle_every: float = 20.0,
                  idle_s: float = 3.5) -> None:
        deadline = time.monotonic() + seconds
        next_idle = time.monotonic() + idle_every

        async def worker() -> None:
            async with httpx.AsyncClient(base_url=self.url, timeout=60) as c:
                while time.monotonic() < deadline:
                    if time.monotonic() >= next_idle:
                        await asyncio.sleep(idle_s + 0.5)  # everyone idles: keep-alive expires
                        continue
                    try:
                        await self.one(c)
                    except httpx.HTTPError as exc:
                        self.report.unaccounted.append(f"transport: {type(exc).__name__}: {exc}")

        async def idler() -> None:
            nonlocal next_idle
            while time.monotonic() < deadline:
                await asyncio.sleep(max(0.0, next_idle - time.monotonic()))
                await asyncio.sleep(idle_s + 0.5)
                self._ok("idle-keep-alive-expiry")
                next_idle = time.monotonic() + idle_every

        await asyncio.gather(idler(), *(worker() for _ in range(clients)))
