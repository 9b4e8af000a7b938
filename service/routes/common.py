"""What every route declares: the error responses, and list paging."""

from __future__ import annotations

from typing import Any

from service.schemas import ErrorBody


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI declarations of error statuses, all with the one error schema."""
    return {status: {"model": ErrorBody} for status in statuses}
