"""Several API processes on one port, each with a listening socket of its own (SO_REUSEPORT).

uvicorn's own multi-process mode shares one listening socket: whichever process wakes first
accepts every connection waiting, so the 16 keep-alive connections of a load balancer or a
benchmark that open at once often all land in one process while the other idles (a quarter of
`wrk -c16` runs on 2 cores: half the throughput, twice the latency; benchmarks/RESULTS.md, "Hot
predictions"). With a socket per process the kernel spreads new connections over the
processes by a hash of their addresses.

The parent holds the port bound (not listening, so it is given no connections: a second
`fewshot serve` on the port fails at once), starts the processes, starts again any that dies,
and stops them all on SIGINT or SIGTERM. Each process dies with the parent (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
import time
from typing import Any

log = logging.getLogger("uvicorn.error")

RESTART_DELAY_S = 1.0  # between a process's death and its replacement, so a crash at start-up does not spin
STOP_GRACE_S = 30.0  # uvicorn finishes the requests in flight after SIGTERM; SIGKILL after this


def listener(host: str, port: int, listen: bool, backlog: int = 2048) -> socket.socket:
    """A TCP socket bound to host:port with SO_REUSEPORT (and listening, when `listen`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


def _process_main(host: str, port: int, options: dict[str, Any]) -> None:
    """One API process: the app (cli.main.api_process_app: dies with its parent, heap settled),
    then uvicorn on a listening socket of its own."""
    import uvicorn

    from cli.main import api_process_app

    app = api_process_app()
    sock = listener(host, port, listen=True)
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, **options)).run(sockets=[sock])  # type: ignore[arg-type]


def run_api_processes(host: str, port: int, processes: int, **options: Any) -> None:
    """`processes` API processes on host:port until SIGINT or SIGTERM; `options` go to uvicorn.Config."""
    reserved = listener(host, port, listen=False)  # raises OSError (address in use) before anything starts
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    children: list[Any] = []

    def start() -> Any:
        child = context.Process(target=_process_main, args=(host, port, options), name="fewshot-api")
        child.start()
        log.info("Started API process [%s]", child.pid)
        return child

    try:
        children = [start() for _ in range(processes)]
        while not stop.wait(0.5):
            for i, child in enumerate(children):
                if not child.is_alive() and not stop.is_set():
                    log.error("API process [%s] exited with %s; starting another", child.pid, child.exitcode)
                    stop.wait(RESTART_DELAY_S)
                    if not stop.is_set():
                        children[i] = start()
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()  # SIGTERM: uvicorn's graceful shutdown
        deadline = time.monotonic() + STOP_GRACE_S
        for child in children:
            child.join(max(0.0, deadline - time.monotonic()))
            if child.is_alive():
                child.kill()
                child.join()
        reserved.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
