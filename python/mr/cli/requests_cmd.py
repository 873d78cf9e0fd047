"""`mr requests [--model M] [-f] [--json]`: the server's request log (GET /engines/requests)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from urllib.parse import urlencode

import click

from mr.cli.runtime_cmds import _request
from mr.jsontypes import JSON

PREVIEW = 200  # characters of each body in the human view


def _fetch(model: str | None, after: int) -> list[JSON]:
    query = {k: v for k, v in (("model", model), ("after", after)) if v}
    path = "/engines/requests" + (f"?{urlencode(query)}" if query else "")
    records: list[JSON] = _request("GET", path)
    return records


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW else flat[:PREVIEW] + "…"


def _human(rec: JSON) -> str:
    when = datetime.fromtimestamp(rec["started_at"]).strftime("%Y-%m-%d %H:%M:%S")
    tokens = ""
    if rec.get("prompt_tokens") is not None or rec.get("completion_tokens") is not None:
        tokens = f"  tokens {rec.get('prompt_tokens') or 0} in, {rec.get('completion_tokens') or 0} out"
    head = (f"{when}  {rec['model']}  {rec['method']} {rec['path']}  {rec['status']}  "
            f"{rec['duration_ms']:.0f} ms{tokens}{'  (stream)' if rec['stream'] else ''}")
    return f"{head}\n  > {_one_line(rec['request'])}\n  < {_one_line(rec['response'])}"


def _show(records: list[JSON], as_json: bool, follow: bool) -> None:
    if as_json and not follow:
        click.echo(json.dumps(records, indent=2))
        return
    for rec in records:
        click.echo(json.dumps(rec) if as_json else _human(rec))


@click.command()
@click.option("--model", default=None, help="Only this model's requests.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new requests (Ctrl+C to stop).")
@click.option("--json", "as_json", is_flag=True, help="JSON: an array, or one object a line with -f.")
def requests(model: str | None, follow: bool, as_json: bool) -> None:
    """Show the server's recent requests and responses."""
    records = _fetch(model, 0)
    _show(records, as_json, follow)
    if not follow:
        return
    last = records[-1]["id"] if records else 0
    try:
        while True:
            time.sleep(0.5)
            new = _fetch(model, last)
            if new:
                _show(new, as_json, follow)
                last = new[-1]["id"]
    except KeyboardInterrupt:
        return
