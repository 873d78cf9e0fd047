"""`mr worker`: serve this machine's backend (its GPUs, else its CPU) over llama.cpp's RPC protocol,
so that an `mr serve --rpc` (or `mr run --rpc`) elsewhere can put a share of a model's layers here.

The protocol has no authentication and no encryption: whoever reaches the port can allocate this
machine's memory and run computations on it. It binds loopback unless told otherwise, and says so
loudly when it is. A worker serves one client (one mr process) at a time, so it drops a client that
sends no handshake within 5 s or stays silent for --idle-timeout (mr's clients send a keep-alive
request after 2 s of silence: a loaded model keeps its worker however long it idles). --mem caps what
clients may allocate here, not only what they are told. Models and weights never touch this machine's
disk.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from types import FrameType

import click

from mr.rpc import DEFAULT_PORT

LOOPBACK_PREFIX = "127."
MIN_IDLE_TIMEOUT = 5  # seconds: above the 2 s after which mr's clients send a keep-alive request


def _idle_timeout(_ctx: click.Context, _param: click.Parameter, value: int) -> int:
    if 0 < value < MIN_IDLE_TIMEOUT:
        raise click.BadParameter(f"must be 0 (never) or at least {MIN_IDLE_TIMEOUT} seconds: mr's "
                                 "clients send a keep-alive request after 2 s of silence")
    return value


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (IPv4). Anything but loopback must be a trusted network.")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True,
              help="TCP port.")
@click.option("--threads", type=click.IntRange(0, 1024), default=0,
              help="CPU threads for the layers computed here (0: one per physical core).")
@click.option("--mem", type=click.IntRange(1, 1 << 30), default=None,
              help="MiB of memory to offer clients (default: what the device has); clients size "
                   "their share of a model by it, and a buffer beyond it is refused.")
@click.option("--idle-timeout", type=click.IntRange(0, 7 * 24 * 3600), default=60, show_default=True,
              callback=_idle_timeout,
              help="Seconds a client may stay silent before it is dropped and the next one served "
                   f"(0: never; else at least {MIN_IDLE_TIMEOUT}). mr's clients keep an idle "
                   "connection alive; other llama.cpp clients must stay busy.")
def worker(host: str, port: int, threads: int, mem: int | None, idle_timeout: int) -> None:
    """Serve this machine's backend to mr servers over llama.cpp's RPC protocol."""
    stop = _stop_on_signals()  # before the banner: a supervisor may signal as soon as it reads it
    address = _ipv4(host)
    if not address.startswith(LOOPBACK_PREFIX):
        click.secho(f"WARNING: listening on {address}:{port}. llama.cpp's RPC protocol has NO "
                    "authentication and no encryption: anyone who can reach this port can use this "
                    "machine's memory and compute, and read the model data sent to it. Expose it "
                    "only on a trusted network (a private LAN, a VPN, a firewall that admits the mr "
                    "servers alone).", fg="red", bold=True, err=True)
    offered = f"{mem} MiB" if mem else "all of its memory"
    click.echo(f"mr worker: serving this machine's backend on {address}:{port} ({offered}); "
               f"clients use `--rpc {address}:{port}`", err=True)
    _serve(address, port, threads, (mem or 0) << 20, idle_timeout, stop)


def _ipv4(host: str) -> str:
    """ggml's server binds a dotted IPv4 address: resolve a name first."""
    try:
        return socket.gethostbyname(host)
    except OSError as exc:
        raise click.BadParameter(f"cannot resolve {host}: {exc}", param_hint="--host") from None


def _log_client(peer: str, connected: bool, why: str) -> None:
    """One line per client as it comes and goes, and why the worker dropped it (called from the
    server's thread)."""
    stamp = time.strftime("%H:%M:%S")
    state = "connected" if connected else f"dropped: it {why}" if why else "disconnected"
    click.echo(f"{stamp} mr worker: client {peer} {state}", err=True)


def _log_errors() -> None:
    """llama.cpp's errors on this worker's stderr, as its client lines are: a buffer refused for
    --mem, a client that vanished mid-request."""
    from mr.engine import logbridge

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s mr worker: %(message)s", "%H:%M:%S"))
    logbridge.LOGGER.addHandler(handler)
    logbridge.LOGGER.setLevel(logging.ERROR)
    logbridge.LOGGER.propagate = False
    logbridge.install(logging.ERROR)


def _stop_on_signals() -> threading.Event:
    """An event SIGTERM and SIGINT set."""
    stop = threading.Event()

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def _serve(host: str, port: int, threads: int, mem_limit: int, idle_timeout: int,
           stop: threading.Event) -> None:
    """The server blocks in native code: it runs on a thread, and this one waits for a signal."""
    from mr import _native

    _log_errors()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            _native.serve_worker(host, port, threads, mem_limit, idle_timeout * 1000, _log_client)
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="mr-worker", daemon=True)
    thread.start()
    while thread.is_alive() and not stop.wait(0.2):
        pass
    if failure:
        raise click.ClickException(str(failure[0]))
    click.echo("mr worker: stopped", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # The server thread never returns from accept(); leave without finalising the interpreter
    # under it (a client arriving then would call back into a dying Python).
    os._exit(0)
