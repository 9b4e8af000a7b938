"""The parent of the API processes refuses a port that is taken, whoever holds it, before starting any."""

from __future__ import annotations

import socket
import time

import pytest

from cli.api_processes import listener, reserve, run_api_processes


def _held_port(reuse_port: bool) -> socket.socket:
    return listener("127.0.0.1", 0) if reuse_port else socket.create_server(("127.0.0.1", 0))


@pytest.mark.parametrize("reuse_port", [False, True], ids=["another-program", "another-fewshot"])
def test_a_taken_port_fails_at_once(reuse_port: bool) -> None:
    # SO_REUSEPORT sockets share a port: a second `fewshot serve` must not join the first's.
    with _held_port(reuse_port) as held:
        port = held.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(SystemExit) as stopped:
            run_api_processes("127.0.0.1", port, 2)
        assert stopped.value.code == 3
        assert time.monotonic() - start < 2


def test_the_reservation_lets_the_api_processes_listen_and_takes_no_connection() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with reserve("127.0.0.1", port) as reserved, listener("127.0.0.1", port) as process_socket:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            accepted, _ = process_socket.accept()  # the one listening socket got it, not the reservation
            accepted.close()
        assert reserved.getsockname()[1] == port
