"""Admission control for adaptations: a bounded number in flight per API process and per tenant.

An adaptation is in flight from the moment its POST is admitted until it is answered (a
`"wait": false` request only until its message is sent). Over the tenant's bound the answer
is 429 `too_many_adaptations`, over the process's bound 503 `overloaded`, both with
`Retry-After` and both before the request touches the database.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from service.errors import ApiError, TooManyRequests, Unavailable

RETRY_AFTER_S = 1  # a slot frees as soon as one adaptation is answered: tens of milliseconds


class TooManyAdaptations(TooManyRequests):
    code = "too_many_adaptations"


class Overloaded(Unavailable):
    code = "overloaded"


class Admission:
    """Counts of adaptations in flight in this process; a bound of 0 turns that bound off."""

    def __init__(self, per_process: int, per_tenant: int) -> None:
        self.per_process = per_process
        self.per_tenant = per_tenant
        self._held: Counter[str | None] = Counter()  # slots held: None for the process, else by tenant
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        return self._held[None]

    @property
    def by_tenant(self) -> dict[str, int]:
        return {k: n for k, n in self._held.items() if k is not None and n}

    def process_slot(self) -> AbstractContextManager[None]:
        """One of the process's slots, held inside the block; 503 `overloaded` when none is free."""
        return self._slot(None, self.per_process, lambda held: Overloaded(
            f"this API process has {held} adaptations in flight, its limit "
            f"(FEWSHOT_MAX_INFLIGHT_ADAPTATIONS={self.per_process}); retry in {RETRY_AFTER_S} s",
            retry_after=RETRY_AFTER_S,
        ))

    def tenant_slot(self, tenant: str) -> AbstractContextManager[None]:
        """One of the tenant's slots, held inside the block; 429 `too_many_adaptations` when none is free."""
        return self._slot(tenant, self.per_tenant, lambda held: TooManyAdaptations(
            f"this tenant has {held} adaptations in flight, its limit "
            f"(FEWSHOT_MAX_INFLIGHT_ADAPTATIONS_PER_TENANT={self.per_tenant}); retry in {RETRY_AFTER_S} s",
            retry_after=RETRY_AFTER_S,
        ))

    @contextmanager
    def _slot(self, holder: str | None, bound: int, refusal: Callable[[int], ApiError]) -> Iterator[None]:
        with self._lock:
            held = self._held[holder]
            if bound and held >= bound:
                raise refusal(held)
            self._held[holder] = held + 1
        try:
            yield
        finally:
            with self._lock:
                self._held[holder] -= 1
                if not self._held[holder]:
                    del self._held[holder]
