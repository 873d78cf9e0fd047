"""Images in: time to first token for one picture plus a short text, cold (a picture never seen)
and cached (the same picture again, another question), at 1 and 4 concurrent clients; new images
per second; and the stall a picture puts on a running text stream, against a text prompt of the
same token count. mr serve against llama-server from the same tree with the same `--mmproj`,
slots, context and threads, over HTTP (OpenAI chat, the picture as an `image_url` data URL), mr
serve also with a KV stream per slot (llama-server's layout, where idle conversations' caches
stay), and mr's engine in process (no HTTP; its step clocks say what the time goes to), A B A B.

The model is the bench's text model (--model, SmolLM2-135M-Instruct by default) with a random
projector from bench.tiny_vlm: BENCH's shape (a 224x224 image in 14x14 patches: 256 image tokens;
a ViT of width 384, seven blocks), TINY's (16 tokens) in a --quick run. The weights are random, so
the figures measure mr's mechanics against llama-server's on the same kernels, never what a real
model would say. Pictures are 640x480 JPEGs; each server decodes and resizes them itself.
Targets: cold TTFT <= 1.0 of llama-server's; cached <= 0.25 of cold. Run it with
`python -m bench vision`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import vision_load as load
from bench.core import Measure, Ratio, percentile, rotation
from bench.http_load import Target
from bench.servers import LLAMA, MODEL_NAME, MR, MR_PER_SLOT, Server, free_port, start_mr
from bench.tiny_vlm import BENCH, TINY, VisionShape, write_projector
from bench.vision_load import Client, EngineClient, HttpClient, picture, text_message
from bench.workload import question, words

if TYPE_CHECKING:
    from collections.abc import Callable

    from bench.context import Context
    from mr.engine import LLM

PART = "vision"
LEVELS = (1, 4)
ENGINE = "mr-engine"
MTMD_CLI = "llama-mtmd-cli"
ASK = "Describe this picture in one sentence. ({})"  # per request, so a question is never cached
STEP_PARTS = ("decode", "batch", "other", "sample", "publish")  # the engine's us_* clocks


@dataclasses.dataclass
class Setup:
    """What every trial shares: the pair, the settings both servers get, the trial sizes."""

    ctx: Context  # the suite's context, its context size raised where a slot cannot hold a picture
    shape: VisionShape
    mmproj: Path
    stream_tokens: int  # the running stream's limit (it is cancelled long before)
    warm_tokens: int  # pieces the stream has sent before another prompt is admitted
    filler_tokens: int = 0  # the text intruder's words: its prompt as long as the image intruder's


@dataclasses.dataclass
class Figures:
    """Per system: each figure's runs (one per repetition), and the usage seen."""

    runs: dict[str, dict[str, list[float]]] = dataclasses.field(default_factory=dict)
    usage: dict[str, dict[str, list[int]]] = dataclasses.field(default_factory=dict)

    def add(self, system: str, name: str, value: float) -> None:
        self.runs.setdefault(system, {}).setdefault(name, []).append(value)

    def saw(self, system: str, name: str, value: int) -> None:
        self.usage.setdefault(system, {}).setdefault(name, []).append(value)


def run(ctx: Context) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="mr-bench-vision-"))  # the projector, mr's store, a picture
    loop = asyncio.new_event_loop()
    servers: list[Server] = []
    clients: list[Client] = []
    llm = None
    try:
        setup = _setup(ctx, scratch)
        llm = _engine(setup)
        clients.append(EngineClient(llm))
        if ctx.http:
            servers = _start_servers(setup, scratch)
            clients += [HttpClient(s.target) for s in servers]
        setup.filler_tokens = _calibrate(llm)
        for client in clients:  # the first picture allocates the encoder's buffers
            loop.run_until_complete(load.wave(client, [client.image_message(picture(0), ASK.format("w"))]))
        figures = _repetitions(setup, clients, llm, loop, scratch)
        _report(setup, figures, [c.name for c in clients])
    finally:
        for client in clients:
            if isinstance(client, HttpClient):
                loop.run_until_complete(client.close())
        for server in servers:
            server.stop()
        if llm is not None:
            llm.close()
        loop.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _setup(ctx: Context, scratch: Path) -> Setup:
    from mr.store.gguf_meta import read_header

    quick = ctx.budget.quick
    shape = TINY if quick else BENCH
    kv = read_header(ctx.model).kv
    n_embd = int(kv[f"{kv['general.architecture']}.embedding_length"])
    mmproj = write_projector(scratch / "mmproj.gguf", n_embd, shape=shape)
    need = shape.tokens + 256  # the picture, the template and question, and the running stream
    vctx = ctx
    if ctx.ctx_size // ctx.slots < need:  # llama-server gives each slot ctx / slots
        vctx = dataclasses.replace(ctx, ctx_size=need * ctx.slots)
        ctx.results.note(PART, f"context raised to {vctx.ctx_size} for both servers: {ctx.slots} slots "
                               f"of {ctx.ctx_size // ctx.slots} tokens cannot hold a {shape.tokens}-token "
                               "picture")
    ctx.results.note(PART, f"projector: random weights, clip.cpp 'mlp' (LLaVA), ViT {shape.image_size}px "
                           f"/ {shape.patch_size}px patches = {shape.tokens} tokens, width {shape.width}, "
                           f"{shape.n_block} blocks ({shape.n_block - 1} run), into {ctx.model.name} "
                           f"(n_embd {n_embd})")
    per_slot = vctx.ctx_size // vctx.slots
    return Setup(vctx, shape, mmproj, stream_tokens=per_slot - shape.tokens // 4 - 64,
                 warm_tokens=4 if quick else 12)


def _engine(setup: Setup) -> LLM:
    import msgspec

    from mr.engine import LLM

    ctx = setup.ctx
    options = msgspec.structs.replace(ctx.engine_options(n_ctx=ctx.ctx_size), mmproj=str(setup.mmproj))
    return LLM(ctx.model, options)


def _calibrate(llm: LLM) -> int:
    """The text intruder's filler length: its prompt then has as many tokens as the image
    intruder's, template included (as mr renders both; llama-server's counts are recorded)."""
    from mr.engine.media import MediaTokens

    def length(messages: load.Messages) -> int:
        prompt = llm.prepare_chat(messages).prompt
        return len(prompt.tokens if isinstance(prompt, MediaTokens) else prompt)

    with_image = length(EngineClient(llm).image_message(picture(1), ASK.format(0)))
    bare = length(text_message(ASK.format(0)))
    return max(1, with_image - bare - 1)  # - 1: the newline between the filler and the question


def _llama_server(setup: Setup, exe: Path) -> Server:
    """llama-server as bench.servers starts it, with the projector (`--mmproj`)."""
    ctx = setup.ctx
    port = free_port()
    cmd = [str(exe), "-m", str(ctx.model), "--mmproj", str(setup.mmproj), "--host", "127.0.0.1", "--port",
           str(port), "-np", str(ctx.slots), "-c", str(ctx.ctx_size), "-b", str(ctx.n_batch), "-ub",
           str(ctx.n_batch), "-t", str(ctx.threads), "-a", MODEL_NAME, "--no-webui", "-fa", ctx.flash_attn]
    log = (ctx.out / f"{LLAMA}-{PART}.log").open("ab")
    spawned = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return Server(Target(LLAMA, f"http://127.0.0.1:{port}/v1", MODEL_NAME), proc, log, spawned,
                  f"http://127.0.0.1:{port}/health")


def _start_servers(setup: Setup, scratch: Path) -> list[Server]:
    """llama-server (when built) and mr serve with the model packaged with its projector, also
    with a KV stream per slot."""
    from bench.llama_runs import available

    ctx, res = setup.ctx, setup.ctx.results
    starters: list[Callable[[], Server]] = []
    exe = available("llama-server", ctx.build_tools)
    if exe is None:
        res.note(PART, "llama-server is not built: mr figures only")
    else:
        starters.append(lambda: _llama_server(setup, exe))
    home = scratch / "mr-home"  # mr serves its store's models: a private store
    env = {**os.environ, "MR_HOME": str(home)}
    env.pop("MR_MODELS_DIR", None)
    package = [sys.executable, "-m", "mr", "package", "--gguf", str(ctx.model), "--mmproj", str(setup.mmproj),
               MODEL_NAME]
    subprocess.run(package, env=env, check=True, capture_output=True, timeout=300)
    starters.append(lambda: start_mr(ctx, home))
    # llama-server's KV layout (a stream per slot), where idle conversations' caches cost the
    # running ones nothing and stay: mr's default shared cache drops them once others run
    starters.append(lambda: start_mr(ctx, home, MR_PER_SLOT, {"MR_PER_SLOT_KV": "1"}))
    servers = []
    for start in starters:
        server = None
        try:
            server = start()
            server.wait_ready()
            server.warm_up(ctx.endpoint)
            servers.append(server)
        except Exception as exc:  # one server that cannot start: the others still run
            res.note(PART, f"server failed to start: {exc}")
            if server is not None:
                server.stop()
    return servers


def _repetitions(setup: Setup, clients: list[Client], llm: LLM, loop: asyncio.AbstractEventLoop,
                 scratch: Path) -> Figures:
    """Every system once per repetition, each repetition starting with the next one; the same
    pictures and prompts for every system within a repetition."""
    from bench.llama_runs import available

    ctx = setup.ctx
    figures, deadline = Figures(), ctx.deadline()
    cli = available(MTMD_CLI, ctx.build_tools)
    for rep in range(max(1, ctx.budget.reps)):
        if rep and deadline.passed:
            break
        seed = 1000 * (rep + 1)
        pictures = {n: [picture(seed + 10 * n + i) for i in range(n)] for n in LEVELS}
        intruder = picture(seed + 999)
        filler = words(setup.filler_tokens, llm.model, seed=seed)
        ctx.settle()
        for i in rotation(len(clients), rep):
            client = clients[i]
            stats = llm.stats if isinstance(client, EngineClient) else None
            loop.run_until_complete(_round(setup, client, figures, rep, pictures, intruder, filler, stats))
        if cli is not None:
            _mtmd_cli(setup, cli, figures, intruder, scratch)
    return figures


async def _round(setup: Setup, client: Client, figures: Figures, rep: int, pictures: dict[int, list[bytes]],
                 intruder: bytes, filler: str, stats: Any) -> None:
    name = client.name
    for n in LEVELS:
        before = stats() if stats is not None and n == 1 else None
        cold = await load.wave(client, [client.image_message(p, ASK.format(f"{rep}-{n}-{i}"))
                                        for i, p in enumerate(pictures[n])])
        if before is not None:  # the engine's step clocks for one picture
            after = stats()
            for part in STEP_PARTS:
                spent = after[f"us_{part}"] - before[f"us_{part}"]
                figures.add(name, f"step {part} per image", spent / 1e3)
        cached = await load.wave(client, [client.image_message(p, ASK.format(f"{rep}-{n}-{i}-again"))
                                          for i, p in enumerate(pictures[n])])
        figures.add(name, f"ttft cold@{n}", percentile(cold.ttfts(), 50) * 1e3)
        figures.add(name, f"ttft cached@{n}", percentile(cached.ttfts(), 50) * 1e3)
        for t in cold.traces:
            figures.saw(name, "image prompt tokens", t.prompt_tokens)
        for t in cached.traces:
            figures.saw(name, f"cached tokens@{n}", t.cached_tokens)
        if n == max(LEVELS):
            figures.add(name, f"images/s@{n}", n / cold.wall)
            figures.add(name, f"media tok/s@{n}", n * setup.shape.tokens / cold.wall)
    await _stalls(setup, client, figures, rep, intruder, filler)


async def _stalls(setup: Setup, client: Client, figures: Figures, rep: int, intruder: bytes,
                  filler: str) -> None:
    """The image intruder and the text intruder of the same length, in turns going first."""
    kinds = {"image": client.image_message(intruder, ASK.format(f"{rep}-stall")),
             "text": text_message(f"{filler}\n{ASK.format(f'{rep}-stall')}")}
    order = ["image", "text"] if rep % 2 == 0 else ["text", "image"]
    for k, kind in enumerate(order):
        stream = text_message(question(k, seed=rep))
        out = await load.stall(client, stream, kinds[kind], setup.stream_tokens, setup.warm_tokens)
        figures.add(client.name, f"stall {kind}", out.gap * 1e3)
        figures.add(client.name, f"itl before {kind}", out.before * 1e3)
        figures.saw(client.name, f"{kind} intruder prompt tokens", out.intruder.prompt_tokens)


def _mtmd_cli(setup: Setup, exe: Path, figures: Figures, jpeg: bytes, scratch: Path) -> None:
    """llama.cpp's own multimodal CLI on the same picture: its encode and image-decode times, the
    kernels' share without any serving around them."""
    path = scratch / "picture.jpg"
    path.write_bytes(jpeg)
    ctx = setup.ctx
    try:
        encode, decode = mtmd_cli_times(exe, ctx.model, setup.mmproj, path, ctx.threads, ctx.flash_attn)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        ctx.results.note(PART, f"{MTMD_CLI} failed: {exc}")
        return
    figures.add(MTMD_CLI, "encode per image", encode)
    figures.add(MTMD_CLI, "image decode per image", decode)
    figures.add(MTMD_CLI, "encode + image decode per image", encode + decode)


def _report(setup: Setup, figures: Figures, systems: list[str]) -> None:
    res, ctx, shape = setup.ctx.results, setup.ctx, setup.shape
    params: dict[str, Any] = {"slots": ctx.slots, "ctx_size": ctx.ctx_size, "threads": ctx.threads,
                              "image_tokens": shape.tokens, "picture": "640x480 JPEG",
                              "projector": dataclasses.asdict(shape)}
    found: dict[tuple[str, str], Measure] = {}
    for system, runs in figures.runs.items():
        usage = {k: [min(v), max(v)] for k, v in figures.usage.get(system, {}).items() if v}
        for name, values in runs.items():
            values = [v for v in values if v == v and (v > 0 or name.startswith("step "))]
            if values:
                unit = "inputs/s" if name.startswith("images/s") else "tok/s" if "tok/s" in name else "ms"
                found[(system, name)] = res.add(Measure(PART, name, system, unit, values, {**params, **usage},
                                                        note=_NOTES.get(name.split("@")[0], "")))
        for n in LEVELS:
            cached = figures.usage.get(system, {}).get(f"cached tokens@{n}", [])
            if cached and min(cached) < shape.tokens:
                res.note(PART, f"{system} reported {min(cached)} cached tokens for a picture sent again "
                               f"at {n} clients (of {shape.tokens} image tokens): not taken from its cache")
    _ratios(setup, found, systems)


_NOTES = {
    "ttft cold": "one new 640x480 JPEG + a short question, max_tokens 1; p50 within a wave, median of waves",
    "ttft cached": "the same pictures again right after, with another question (the picture comes first)",
    "images/s": "new pictures per second at 4 clients: pictures / time to the wave's last first token",
    "media tok/s": "images/s x image tokens",
    "stall image": "a running text stream's largest gap between pieces while a new picture is admitted "
                   "(from its send to its first token)",
    "stall text": "the same while a text prompt of the same token count is admitted",
    "step decode per image": "the engine's step clocks (Engine.stats us_*) over one cold picture request; "
                             "decode holds the encode, the image and text decodes",
    "encode + image decode per image": "llama-mtmd-cli's own log (ms resolution), one run per repetition",
}


def _ratios(setup: Setup, found: dict[tuple[str, str], Measure], systems: list[str]) -> None:
    res = setup.ctx.results

    def add(name: str, a: tuple[str, str], b: tuple[str, str], target: str = "") -> None:
        if a in found and b in found:
            res.add_ratio(Ratio(PART, name, found[a].value / found[b].value, target))

    top = max(LEVELS)
    for mr in (MR, MR_PER_SLOT):  # the targets are the default's
        for n in LEVELS:
            add(f"{mr} / llama-server ttft cold@{n}", (mr, f"ttft cold@{n}"), (LLAMA, f"ttft cold@{n}"),
                "<= 1.00" if mr == MR else "")
            add(f"{mr} / llama-server ttft cached@{n}", (mr, f"ttft cached@{n}"), (LLAMA, f"ttft cached@{n}"))
        add(f"{mr} / llama-server images/s@{top}", (mr, f"images/s@{top}"), (LLAMA, f"images/s@{top}"))
        add(f"{mr} / llama-server stall image", (mr, "stall image"), (LLAMA, "stall image"))
    for system in systems:
        for n in LEVELS:
            target = "<= 0.25" if system in (MR, ENGINE) else ""
            add(f"{system} ttft cached / cold@{n}", (system, f"ttft cached@{n}"), (system, f"ttft cold@{n}"),
                target)
        add(f"{system} stall image / text", (system, "stall image"), (system, "stall text"))
    add("mr-engine step decode / llama-mtmd-cli encode + image decode, per image",
        (ENGINE, "step decode per image"), (MTMD_CLI, "encode + image decode per image"))


def mtmd_cli_times(exe: Path, model: Path, mmproj: Path, image: Path, threads: int,
                   flash_attn: str) -> tuple[float, float]:
    """One llama-mtmd-cli run on `image`: (encode ms, image decode ms) from its log."""
    cmd = [str(exe), "-m", str(model), "--mmproj", str(mmproj), "--image", str(image), "-p", ASK.format(0),
           "-n", "1", "--temp", "0", "-t", str(threads), "-fa", flash_attn, "-c", "2048", "-lv", "4"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    log = out.stdout + out.stderr
    encode = [int(m) for m in re.findall(r"(?:batch encoding done|slice encoded) in (\d+) ms", log)]
    decode = [int(m) for m in re.findall(r"decoded \(batch \d+/\d+\) in (\d+) ms", log)]
    if not encode or not decode:
        raise ValueError(f"no encode/decode times in its log (exit {out.returncode})")
    return float(sum(encode)), float(sum(decode))
