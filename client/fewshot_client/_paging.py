"""Lists that page by themselves: iterate a Page for every item; the next page is fetched with `after`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

FetchPage = Callable[[Any], dict[str, Any]]  # after (None for the first page) -> the API's list object


class Page(Generic[T]):
    """The first page of a list (`data`, `has_more`); iterating it goes on through the following pages.

    `limit` given to a list call is the page size, not a cap: stop iterating (or use itertools.islice)
    to take fewer."""

    def __init__(self, fetch: FetchPage, parse: Callable[[dict[str, Any]], T], cursor: Callable[[T], Any],
                 after: Any = None) -> None:
        self._fetch, self._parse, self._cursor = fetch, parse, cursor
        body = fetch(after)
        self.data: list[T] = [parse(item) for item in body["data"]]
        self.has_more: bool = bool(body["has_more"])

    def __iter__(self) -> Iterator[T]:
        for page in self.iter_pages():
            yield from page.data

    def iter_pages(self) -> Iterator[Page[T]]:
        page: Page[T] = self
        while True:
            yield page
            if not page.has_more or not page.data:
                return
            page = Page(self._fetch, self._parse, self._cursor, after=self._cursor(page.data[-1]))

    def __repr__(self) -> str:
        return f"Page(data={self.data!r}, has_more={self.has_more})"
