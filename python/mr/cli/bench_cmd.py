"""`mr bench MODEL`: tokens/s at several concurrency levels against the running server
(like `docker model bench`). The thorough, side-by-side suite lives in the repository's bench/."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import TYPE_CHECKING

import click

from mr.jsontypes import JSON

if TYPE_CHECKING:
    import httpx

PROMPT = "Write a short story about a lighthouse keeper."


async def _one(client: httpx.AsyncClient, model: str, max_tokens: int) -> tuple[float, int]:
    """(time to first token, completion tokens) of one streamed request."""
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "stream": True,
            "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
            "stream_options": {"include_usage": True}}
    start, ttft, tokens = time.perf_counter(), 0.0, 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            raise click.ClickException(f"the server answered {response.status_code}: {response.text[:200]}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if not ttft and any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or []):
                ttft = time.perf_counter() - start
            if chunk.get("usage"):
                tokens = chunk["usage"].get("completion_tokens", 0)
    return ttft, tokens


async def _level(base: str, model: str, concurrency: int, max_tokens: int) -> JSON:
    import httpx

    from mr.cli.backends import verify_for

    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(600, connect=5),
                                 verify=verify_for(base)) as client:
        await _one(client, model, 4)  # warm: the model is loaded and the prompt cached
        start = time.perf_counter()
        results = await asyncio.gather(*(_one(client, model, max_tokens) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    tokens = sum(n for _, n in results)
    ttfts = sorted(t for t, _ in results)
    return {"concurrency": concurrency, "tokens": tokens, "seconds": round(wall, 3),
            "tokens_per_second": round(tokens / wall, 1),
            "ttft_p50_ms": round(statistics.median(ttfts) * 1000, 1)}


@click.command()
@click.argument("model")
@click.option("-c", "--concurrency", "levels", default="1,2,4,8", show_default=True,
              help="Comma-separated numbers of concurrent requests.")
@click.option("--max-tokens", default=128, show_default=True, help="Tokens generated per request.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def bench(model: str, levels: str, max_tokens: int, as_json: bool) -> None:
    """Measure MODEL's tokens/s at several concurrency levels on the running server."""
    from mr.cli.backends import server_url
    from mr.errors import ServerNotRunningError

    base = server_url()
    if base is None:
        raise ServerNotRunningError("no mr server is running (start one with `mr serve`)")
    try:
        counts = [int(x) for x in levels.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter("use numbers like 1,2,4,8", param_hint="--concurrency") from None
    rows = [asyncio.run(_level(base, model, c, max_tokens)) for c in counts]
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    click.echo(f"{'CONCURRENCY':>11}  {'TOKENS/S':>9}  {'TTFT P50':>9}  {'TOKENS':>7}  {'SECONDS':>8}")
    for r in rows:
        click.echo(f"{r['concurrency']:>11}  {r['tokens_per_second']:>9.1f}  {r['ttft_p50_ms']:>7.0f}ms  "
                   f"{r['tokens']:>7}  {r['seconds']:>8.2f}")
