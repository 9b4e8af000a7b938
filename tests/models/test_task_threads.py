"""models.task_threads: a meta-batch's tasks across threads at one torch thread each."""

from __future__ import annotations

import threading

import pytest
import torch

from models.task_threads import map_in_threads, split, task_threads


def test_split_covers_every_task_once_in_order():
    assert split(5, 2) == [range(0, 3), range(3, 5)]
    assert split(2, 2) == [range(0, 1), range(1, 2)]
    for n in range(1, 12):
        for parts in range(1, n + 1):
            ranges = split(n, parts)
            assert [i for r in ranges for i in r] == list(range(n))
            assert max(map(len, ranges)) - min(map(len, ranges)) <= 1


def test_thread_count_is_the_intra_op_threads_at_most_one_a_task_on_the_cpu_only():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert task_threads(32, torch.device("cpu")) == 2
        assert task_threads(1, torch.device("cpu")) == 1
        assert task_threads(32, torch.device("cuda")) == 1
        torch.set_num_threads(1)
        assert task_threads(32, torch.device("cpu")) == 1
    finally:
        torch.set_num_threads(threads)


def test_calls_run_in_other_threads_at_one_torch_thread_with_the_callers_grad_mode():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    seen = []

    def record(i: int) -> int:
        seen.append((threading.current_thread() is not threading.main_thread(), torch.get_num_threads(), torch.is_grad_enabled()))
        return i * i

    try:
        with torch.no_grad():
            assert map_in_threads(record, [1, 2, 3]) == [1, 4, 9]  # in order
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert seen == [(True, 1, False)] * 3


def test_an_exception_in_a_thread_is_raised_to_the_caller_with_its_thread_count_restored():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)

    def fail(i: int) -> int:
        if i == 1:
            raise ValueError("task 1 failed")
        return i

    try:
        with pytest.raises(ValueError, match="task 1 failed"):
            map_in_threads(fail, [0, 1])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_a_thread_that_starts_torch_while_the_pool_works_takes_the_process_default():
    def probe(i: int) -> int:  # runs in a pool thread (one torch thread) and starts a fresh one
        seen: list[int] = []
        fresh = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))  # its first torch call
        fresh.start()
        fresh.join()
        return seen[0]

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert map_in_threads(probe, [0, 1]) == [2, 2]
    finally:
        torch.set_num_threads(threads)


def test_a_call_from_a_pool_thread_runs_its_items_there_instead_of_waiting_on_the_pool():
    both_busy = threading.Barrier(2, timeout=30)

    def inner(i: int) -> str:
        return threading.current_thread().name

    def outer(i: int) -> list[str]:
        both_busy.wait()  # every pool thread is in an outer call: a queued inner call would never run
        return map_in_threads(inner, [i, i])

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        names = map_in_threads(outer, [0, 1])
    finally:
        torch.set_num_threads(threads)
    for pair in names:
        assert pair[0] == pair[1] and pair[0].startswith("meta-batch")
