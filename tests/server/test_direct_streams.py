"""Streams written straight to the socket (mr.server.wire) say exactly what the non-streamed answer
says, for every kind of answer; the kinds that cannot go direct (tools, logprobs) take the ASGI
path and agree too. /metrics counts each stream by its path, so a silently lost fast path fails.

Greedy answers are compared across requests, cold and with a cached prompt, so the server runs in
the deterministic mode, where they are equal by construction on every CPU (with the default
kernels a cached prefix or a longer KV range can flip a near-tie: no property of the stream path).
Each test starts from a freshly loaded model all the same, so the counters it reads are its own."""

from __future__ import annotations

import json
import re
import socket
import time

import httpx
import pytest

from support.serving import SMOL, TINY, serve, serve_client, wait_for

CHAT = dict(model=SMOL, messages=[{"role": "user", "content": "Name three colours."}],
            max_tokens=24, temperature=0)
SCHEMA = {"type": "object", "properties": {"colour": {"type": "string", "maxLength": 12}},
          "required": ["colour"]}
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                       "required": ["city"]}}}


@pytest.fixture(scope="module")
def base_url(store_root, tmp_path_factory) -> str:
    with serve(store_root, tmp_path_factory.mktemp("direct"), deterministic=True, ctx_size=8192) as running:
        yield running.url


@pytest.fixture(autouse=True)
def fresh_cache(base_url: str) -> None:
    httpx.post(f"{base_url}/engines/unload", json={"all": True}, timeout=60).raise_for_status()


def streams_by_path(http: httpx.Client) -> dict[str, float]:
    text = http.get("/metrics").text
    found = re.findall(r'^mr_streamed_responses_total\{path="(\w+)"\} ([0-9.e+]+)$', text, re.M)
    return {path: float(n) for path, n in found}


def counted(http: httpx.Client, before: dict[str, float], path: str) -> float:
    return streams_by_path(http).get(path, 0.0) - before.get(path, 0.0)


def joined(chunks) -> dict[int, str]:
    out: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            out[choice.index] = out.get(choice.index, "") + (choice.delta.content or "")
    return out


def test_plain_chat_streams_direct_and_says_what_the_answer_says(oai, http) -> None:
    before = streams_by_path(http)
    whole = oai.chat.completions.create(**CHAT).choices[0]
    chunks = list(oai.chat.completions.create(stream=True, **CHAT))
    assert joined(chunks) == {0: whole.message.content}
    assert chunks[-1].choices[0].finish_reason == whole.finish_reason
    assert counted(http, before, "direct") == 1 and counted(http, before, "asgi") == 0


def test_n_choices_stream_direct_each_as_its_own_answer(oai, http) -> None:
    args = dict(CHAT, n=3, temperature=0.9, seed=7)
    before = streams_by_path(http)
    whole = oai.chat.completions.create(**args)
    chunks = list(oai.chat.completions.create(stream=True, **args))
    assert joined(chunks) == {c.index: c.message.content for c in whole.choices}
    finishes = {c.index: c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason}
    assert finishes == {c.index: c.finish_reason for c in whole.choices}
    assert counted(http, before, "direct") == 1


def test_json_schema_output_streams_as_answered(oai, http) -> None:
    """The chat library parses a schema-constrained answer (NativeFormat): ASGI path, same text."""
    fmt = {"type": "json_schema", "json_schema": {"name": "c", "schema": SCHEMA, "strict": True}}
    args = dict(CHAT, max_tokens=40, response_format=fmt)
    before = streams_by_path(http)
    whole = oai.chat.completions.create(**args).choices[0].message.content
    streamed = joined(oai.chat.completions.create(stream=True, **args))[0]
    assert streamed == whole and "colour" in json.loads(whole)
    assert counted(http, before, "direct") + counted(http, before, "asgi") == 1


def test_stop_strings_cut_the_direct_stream_where_they_cut_the_answer(oai, http) -> None:
    free = oai.chat.completions.create(**CHAT).choices[0].message.content
    words = free.split()
    if len(words) < 3:
        pytest.skip(f"the greedy answer on this machine is too short to cut: {free!r}")
    stop = " " + words[2]  # a word this machine's greedy answer really contains
    whole = oai.chat.completions.create(stop=[stop], **CHAT).choices[0]
    streamed = list(oai.chat.completions.create(stream=True, stop=[stop], **CHAT))
    assert joined(streamed)[0] == whole.message.content == free[: free.index(stop)]
    assert whole.finish_reason == streamed[-1].choices[0].finish_reason == "stop"


def test_tool_calls_and_logprobs_take_the_asgi_path_and_agree(oai, http) -> None:
    tools = dict(CHAT, messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[TOOL],
                 tool_choice="required", max_tokens=60)
    before = streams_by_path(http)
    whole = oai.chat.completions.create(**tools).choices[0].message.tool_calls
    args: dict[int, str] = {}
    names: dict[int, str] = {}
    for chunk in oai.chat.completions.create(stream=True, **tools):
        for call in chunk.choices[0].delta.tool_calls or []:
            names[call.index] = names.get(call.index, "") + (call.function.name or "")
            args[call.index] = args.get(call.index, "") + (call.function.arguments or "")
    assert [(names[i], json.loads(args[i])) for i in sorted(args)] == [
        (c.function.name, json.loads(c.function.arguments)) for c in whole]
    lp = dict(CHAT, logprobs=True, top_logprobs=2)
    whole_lp = oai.chat.completions.create(**lp).choices[0].logprobs.content
    streamed_lp = [t for chunk in oai.chat.completions.create(stream=True, **lp)
                   for t in (chunk.choices[0].logprobs.content if chunk.choices[0].logprobs else [])]
    assert [t.token for t in streamed_lp] == [t.token for t in whole_lp]
    assert counted(http, before, "asgi") == 2 and counted(http, before, "direct") == 0


def test_completions_stream_direct(oai, http) -> None:
    args = dict(model=SMOL, prompt="The sky is", max_tokens=16, temperature=0)
    before = streams_by_path(http)
    whole = oai.completions.create(**args).choices[0].text
    streamed = "".join(c.choices[0].text for c in oai.completions.create(stream=True, **args))
    assert streamed == whole
    echoed = "".join(c.choices[0].text for c in oai.completions.create(stream=True, echo=True, **args))
    assert echoed == "The sky is" + whole
    assert counted(http, before, "direct") == 2


def test_an_http10_client_gets_the_stream_unchunked(base_url: str, oai) -> None:
    """HTTP/1.0 has no chunked encoding: direct frames go out raw, the close ends the body."""
    whole = oai.chat.completions.create(**CHAT).choices[0].message.content
    body = json.dumps(dict(CHAT, stream=True)).encode()
    port = int(base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.0\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding" not in head.lower()
    frames = [json.loads(line[6:]) for line in payload.split(b"\n\n") if line.startswith(b"data: {")]
    assert "".join(f["choices"][0]["delta"].get("content") or "" for f in frames) == whole
    assert payload.endswith(b"data: [DONE]\n\n")


def engine_frames(http: httpx.Client) -> float:
    found = re.search(r"^mr_engine_sent_frames_total ([0-9.e+]+)$", http.get("/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


def test_one_choice_streams_are_sent_by_the_engine_thread(oai, http) -> None:
    before = engine_frames(http)
    whole = oai.chat.completions.create(**CHAT).choices[0].message.content
    streamed = list(oai.chat.completions.create(stream=True, **CHAT))
    assert joined(streamed)[0] == whole
    contents = sum(1 for c in streamed if c.choices and c.choices[0].delta.content)
    # counted as the response ends on the server, a moment after the client has read it all
    assert wait_for(lambda: engine_frames(http) - before == contents > 0, 10), (engine_frames(http), contents)
    several = engine_frames(http)
    assert len(joined(list(oai.chat.completions.create(stream=True, n=3, **CHAT)))) == 3
    assert engine_frames(http) == several  # several choices share the connection: the loop writes them


def _chunked_body(raw: bytes) -> bytes:
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower()
    body = bytearray()
    while True:
        size, _, rest = rest.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            return bytes(body)
        body += rest[:n]
        assert rest[n : n + 2] == b"\r\n"
        rest = rest[n + 2 :]


def test_a_late_reader_gets_the_whole_stream_in_order(base_url: str, http) -> None:
    """The engine sends while the socket takes it (what it cannot take goes through the loop's
    transport, queued behind: tests/native/test_wire.py): a client that reads only after the
    answer is done still reads one intact, ordered stream."""
    ask = {"model": TINY, "messages": [{"role": "user", "content": "Go on."}], "max_tokens": 1500,
           "temperature": 0, "ignore_eos": True}
    whole = http.post("/v1/chat/completions", json=ask).json()["choices"][0]["message"]["content"]
    http.post("/engines/unload", json={"all": True}).raise_for_status()  # the same fresh cache again
    before = engine_frames(http)
    body = json.dumps(dict(ask, stream=True)).encode()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(60)
        sock.connect(("127.0.0.1", int(base_url.rsplit(":", 1)[1])))
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        time.sleep(3)  # nobody reads meanwhile
        raw = bytearray()
        while chunk := sock.recv(65536):
            raw += chunk
    events = [line[6:] for line in _chunked_body(bytes(raw)).split(b"\n\n") if line.startswith(b"data: ")]
    assert events[-1] == b"[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    contents = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert "".join(c or "" for c in contents) == whole
    assert wait_for(lambda: engine_frames(http) > before, 10)


def _records(client: httpx.Client) -> list[dict]:
    found = client.get("/engines/requests").json()
    return found if isinstance(found, list) else found["requests"]


def test_the_request_log_still_sees_a_direct_stream(store_root, tmp_path) -> None:
    with serve_client(store_root, tmp_path, request_log_size=5) as client:
        body = dict(CHAT, stream=True)
        with client.stream("POST", "/v1/chat/completions", json=body) as r:
            streamed = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                               for line in r.iter_lines() if line.startswith("data: {"))
        # recorded as the response ends on the server, a moment after the client has read it all
        assert wait_for(lambda: bool(_records(client)), 30), client.get("/engines/requests").text
        record = _records(client)[-1]
        paths = streams_by_path(client)
        assert paths.get("direct") == 1 and engine_frames(client) > 0, paths
    logged = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                     for line in record["response"].split("\n") if line.startswith("data: {"))
    assert streamed and logged == streamed, record
    assert record["response_bytes"] >= len(record["response"].encode())
