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
