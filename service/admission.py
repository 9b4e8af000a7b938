"""Admission control for adaptations: a bounded number in flight per API process and per tenant.

An adaptation is in flight from the moment its POST is admitted until it is answered (a
`"wait": false` request only until its message is sent). Over the tenant's bound the answer
is 429 `too_many_adaptations`, over the process's bound 503 `overloaded`, both with
`Retry-After` and both before the request touches the database.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from service.errors import TooManyRequests, Unavailable

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
        self.in_flight = 0
        self.by_tenant: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def process_slot(self) -> Iterator[None]:
        """One of the process's slots, held inside the block; 503 `overloaded` when none is free."""
        with self._lock:
            if self.per_process and self.in_flight >= self.per_process:
                raise Overloaded(
                    f"this API process has {self.in_flight} adaptations in flight, its limit "
                    f"(FEWSHOT_MAX_INFLIGHT_ADAPTATIONS={self.per_process}); retry in {RETRY_AFTER_S} s",
                    retry_after=RETRY_AFTER_S,
                )
            self.in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1

    @contextmanager
    def tenant_slot(self, tenant: str) -> Iterator[None]:
        """One of the tenant's slots, held inside the block; 429 `too_many_adaptations` when none is free."""
        with self._lock:
            count = self.by_tenant.get(tenant, 0)
            if self.per_tenant and count >= self.per_tenant:
                raise TooManyAdaptations(
                    f"this tenant has {count} adaptations in flight, its limit "
                    f"(FEWSHOT_MAX_INFLIGHT_ADAPTATIONS_PER_TENANT={self.per_tenant}); "
                    f"retry in {RETRY_AFTER_S} s",
                    retry_after=RETRY_AFTER_S,
                )
            self.by_tenant[tenant] = count + 1
        try:
            yield
        finally:
            with self._lock:
                left = self.by_tenant[tenant] - 1
                if left:
                    self.by_tenant[tenant] = left
                else:
                    del self.by_tenant[tenant]
