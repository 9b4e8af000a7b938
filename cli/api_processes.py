"""Several API processes on one port, each with a listening socket of its own (SO_REUSEPORT).

uvicorn's own multi-process mode shares one listening socket: whichever process wakes first
accepts every connection waiting, so the keep-alive connections of a load balancer or a
benchmark that open at once can all land in one process while the other idles (one 10 s run in
four of 16 clients on 2 cores: half the throughput, twice the latency; benchmarks/RESULTS.md,
"Hot predictions"). With a socket per process the kernel spreads new connections over the
processes by a hash of their addresses.

The parent holds the port bound (not listening, so it is given no connections; a port already
taken, by a second `fewshot serve` too, fails at once), starts the processes, starts again any
that dies, and stops them all on SIGINT or SIGTERM. Each process dies with the parent
(PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import logging
import logging.config
import multiprocessing
import signal
import socket
import threading
import time
from multiprocessing.process import BaseProcess
from typing import Any

from uvicorn.config import STARTUP_FAILURE

log = logging.getLogger("uvicorn.error")

RESTART_DELAY_S = 1.0  # between a process's death and its replacement, so a crash at start-up does not spin
STOP_GRACE_S = 30.0  # uvicorn finishes the requests in flight after SIGTERM; SIGKILL after this


def _bound(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A TCP socket bound to host:port (SO_REUSEADDR, and SO_REUSEPORT when `reuse_port`), not listening."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def listener(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """An API process's own listening socket on host:port (SO_REUSEPORT)."""
    sock = _bound(host, port, reuse_port=True)
    sock.listen(backlog)
    return sock


def reserve(host: str, port: int) -> socket.socket:
    """The parent's hold on the port, bound and not listening. First a bind without SO_REUSEPORT:
    sockets that all set it share a port, so without this probe a second `fewshot serve` on a
    port taken by the first would share its connections instead of failing. SystemExit(3), uvicorn's
    STARTUP_FAILURE, as it exits when its port is taken, with the reason when the port is not free."""
    try:
        _bound(host, port, reuse_port=False).close()
        return _bound(host, port, reuse_port=True)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc.strerror or exc)
        raise SystemExit(STARTUP_FAILURE) from exc


def api_process_app() -> object:
    """The app of one of several API processes, which dies with the process that started it: a
    SIGKILLed `fewshot serve` must not leave API processes holding its port."""
    from service.main import create_app, settle_heap
    from workers.lifecycle import die_with_parent

    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid is not None:
        die_with_parent(signal.SIGKILL, parent=parent.pid)
    app = create_app()
    settle_heap()
    return app


def _process_main(host: str, port: int, options: dict[str, Any]) -> None:
    """One API process: the app (api_process_app: dies with its parent, heap settled), then uvicorn
    on a listening socket of its own."""
    import uvicorn

    app = api_process_app()
    sock = listener(host, port)
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, **options)).run(sockets=[sock])  # type: ignore[arg-type]


def run_api_processes(host: str, port: int, processes: int, **options: Any) -> None:
    """`processes` API processes on host:port until SIGINT or SIGTERM; `options` go to uvicorn.Config."""
    from uvicorn.config import LOGGING_CONFIG

    logging.config.dictConfig(LOGGING_CONFIG)  # the parent's lines as uvicorn's own manager wrote them
    reserved = reserve(host, port)
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    children: list[BaseProcess] = []

    def start() -> BaseProcess:
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
