"""Ids sort in the order they were made, even when many are made in the same microsecond (the
task listing pages by id, newest first; a CI run once listed two tasks of one loop swapped)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from store.ids import new_id


def test_ids_made_in_a_tight_loop_sort_in_the_order_they_were_made():
    ids = [new_id("tsk") for _ in range(20_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_ids_made_from_threads_are_unique_and_each_threads_ids_are_ordered():
    def make(_: int) -> list[str]:
        return [new_id("tsk") for _ in range(2_000)]

    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(make, range(4)))
    assert all(run == sorted(run) for run in runs)
    assert len({i for run in runs for i in run}) == 8_000
