"""Progress reporting (rich), silent unless asked for."""

from __future__ import annotations

from typing import Iterable, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], *, desc: str = "", enabled: bool = True, total: int | None = None) -> Iterable[T]:
    """Iterate ``items`` with a rich progress bar on stderr when ``enabled``."""
    if not enabled:
        yield from items
        return
    from rich.progress import track

    yield from track(items, description=desc, total=total, transient=True)
