"""`mr ps`, `mr unload`, `mr configure`, `mr status`: talk to the running server at MR_HOST.

`configure` also works with no server running: the settings file is written directly and the
server reads it on the next load.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import click

from mr import config
from mr.cli import tls
from mr.errors import ServerNotRunningError
from mr.jsontypes import JSON
from mr.units import human_bytes

if TYPE_CHECKING:
    from mr.runner import ModelSettings


def base_url() -> str:
    """MR_HOST as a URL (mr.config.server_url: a URL, or the server's bind address)."""
    return config.server_url()


def _request(method: str, path: str, body: object = None, timeout: float = 10) -> Any:
    url = base_url() + path
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else {}
    key = config.api_key()
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    context = tls.ssl_context() if url.startswith("https://") else None
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise click.ClickException(_error_text(exc)) from None
    except (urllib.error.URLError, OSError) as exc:
        if tls.is_cert_failure(exc):
            raise tls.cert_error(base_url(), exc) from None
        raise ServerNotRunningError(f"no mr server answers at {base_url()} ({_reason(exc)}); "
                                    "start one with `mr serve`") from None


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "reason", exc))


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read())
        error = body.get("error", body)
        return str(error.get("message", error)) if isinstance(error, dict) else str(error)
    except (ValueError, AttributeError):
        return f"HTTP {exc.code}"


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["   ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the server's JSON.")
def ps(as_json: bool) -> None:
    """List the models the server has loaded."""
    models = _request("GET", "/engines/ps")
    if as_json:
        click.echo(json.dumps(models, indent=2))
        return
    rows = [[m["model_name"], m["backend_name"], m["mode"], m["until"], _context(m),
             str(m["parallel"]), human_bytes(m["memory"]), _drafts(m), _layers(m)] for m in models]
    click.echo(_table(rows, ["MODEL NAME", "BACKEND", "MODE", "UNTIL", "CONTEXT", "SLOTS", "MEMORY",
                             "DRAFTS", "LAYERS"]))


def _drafts(model: JSON) -> str:
    """Speculative decoding: the share of drafted tokens kept, "73% of 1204", or "-"."""
    drafted = model.get("spec_drafted", 0)
    return f"{100 * model.get('spec_accepted', 0) / drafted:.0f}% of {drafted}" if drafted else "-"


def _context(model: JSON) -> str:
    """The context, and each request's share of it with per-slot KV caches: "4096 (512/slot)"."""
    total, share = model["context_size"], model.get("request_context", model["context_size"])
    return str(total) if share >= total else f"{total} ({share}/slot)"


def _layers(model: JSON) -> str:
    """Where the layers live: "CPU 10, RPC0@10.0.0.2:50052 11+out"."""
    parts = []
    for p in model.get("placement") or []:
        where = f"{p['device']}@{p['host']}" if p.get("host") else p["device"]
        parts.append(f"{where} {p['layers']}{'+out' if p.get('output') else ''}")
    return ", ".join(parts) or "-"


@click.command()
@click.option("--all", "unload_all", is_flag=True, help="Unload every model.")
@click.argument("models", nargs=-1)
def unload(unload_all: bool, models: tuple[str, ...]) -> None:
    """Unload MODELS (or --all) from the server's memory."""
    if not unload_all and not models:
        raise click.UsageError("name models to unload, or --all")
    result = _request("POST", "/engines/unload", {"all": unload_all, "models": list(models)})
    count = result.get("unloaded_runners", 0)
    click.echo(f"Unloaded {count} model{'s' if count != 1 else ''}")
    draining = result.get("draining_runners", 0)
    if draining:
        click.echo(f"{draining} busy model{'s' if draining != 1 else ''} will unload when "
                   f"{'their' if draining != 1 else 'its'} requests finish")


@click.command()
@click.option("--context-size", type=click.IntRange(1, 1 << 20), default=None, help="Context size (tokens).")
@click.option("--parallel", type=click.IntRange(1, 256), default=None, help="Slots (parallel requests).")
@click.option("--keep-alive", default=None, help="Idle time before unloading: 5m, 1h, 0, -1 = never.")
@click.option("--mode", type=click.Choice(["completion", "embedding", "reranking"]), default=None,
              help="What the model serves (default: what its GGUF says; rerankers say reranking).")
@click.option("--think", type=click.Choice(["on", "off"]), default=None,
              help="Thinking by default for reasoning templates (a request's own field wins).")
@click.option("--rpc", default=None,
              help="llama.cpp RPC workers for its layers, HOST:PORT[,HOST:PORT...]; none: this "
                   "machine only (default: the server's --rpc).")
@click.argument("model")
def configure(context_size: int | None, parallel: int | None, keep_alive: str | None, mode: str | None,
              think: str | None, rpc: str | None, model: str) -> None:
    """Persist runtime settings for MODEL (applied at its next load; keep-alive at once)."""
    from mr.rpc import parse_endpoints
    from mr.runner import ModelSettings, parse_duration

    if all(v is None for v in (context_size, parallel, keep_alive, mode, think, rpc)):
        raise click.UsageError("give --context-size, --parallel, --keep-alive, --mode, --think or --rpc")
    workers = None if rpc is None else list(parse_endpoints(rpc))
    body = {"model": model, "context_size": context_size, "parallel": parallel, "keep_alive": keep_alive,
            "mode": mode, "think": think, "rpc": workers}
    try:
        result = _request("POST", "/engines/configure", body)
    except ServerNotRunningError:
        settings = ModelSettings(context_size=context_size, parallel=parallel,
                                 keep_alive=parse_duration(keep_alive), mode=mode,
                                 think=None if think is None else think == "on", rpc=workers)
        result = _configure_offline(model, settings)
    click.echo(f"Configured {model}: " + ", ".join(f"{k}={_shown(v)}" for k, v in result.items()
                                                    if k != "model" and v is not None))


def _shown(value: object) -> str:
    return (",".join(value) or "none") if isinstance(value, list) else str(value)


def _configure_offline(model: str, settings: ModelSettings) -> JSON:
    from mr.runner import SettingsFile, StoreSource
    from mr.runner.duration import format_duration
    from mr.store import Store

    resolved = StoreSource(Store()).resolve(model)
    key = resolved.keys[0] if resolved.keys else resolved.id
    merged = SettingsFile(config.home() / "model-settings.json").set(key, settings)
    return {"context_size": merged.context_size, "parallel": merged.parallel,
            "keep_alive": format_duration(merged.keep_alive) or None, "mode": merged.mode,
            "think": merged.think, "rpc": merged.rpc}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the server's JSON.")
def status(as_json: bool) -> None:
    """Say whether the server runs, with its memory budget and loaded models."""
    info = _request("GET", "/engines/status")
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    memory = info.get("memory", {})
    click.echo(f"mr {info.get('version')} is running at {base_url()} "
               f"(backend {info.get('backend')}, {info.get('loaded_models')} model(s) loaded, "
               f"memory {human_bytes(memory.get('used', 0))} of {human_bytes(memory.get('budget', 0))})")
