"""Progress bars (rich) that turn themselves off when not on a terminal or with ``--quiet``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_QUIET = False


def set_quiet(quiet: bool) -> None:
    global _QUIET
    _QUIET = quiet


def is_quiet() -> bool:
    return _QUIET


def enabled() -> bool:
    """Progress bars show only on an interactive terminal, not in CI logs or with --quiet."""
    if _QUIET or os.environ.get("AUDIT_NO_PROGRESS"):
        return False
    return sys.stderr.isatty()


def track(it: Iterable[T], *, total: int | None = None, description: str = "working") -> Iterator[T]:
    """Iterate with a progress bar when enabled, plainly otherwise."""
    if not enabled():
        yield from it
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if total is None:
        try:
            total = len(it)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as prog:
        task = prog.add_task(description, total=total)
        for x in it:
            yield x
            prog.advance(task)


class Bar:
    """A manually advanced progress bar: ``with Bar(total, "training") as b: b.advance(k)``."""

    def __init__(self, total: int | None, description: str):
        self.total = total
        self.description = description
        self._prog = None
        self._task = None

    def __enter__(self) -> Bar:
        if enabled():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._prog = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._prog.__enter__()
            self._task = self._prog.add_task(self.description, total=self.total, info="")
        return self

    def advance(self, n: int = 1, info: str | None = None) -> None:
        if self._prog is not None:
            kw = {"info": info} if info is not None else {}
            self._prog.update(self._task, advance=n, **kw)

    def set_description(self, text: str) -> None:
        if self._prog is not None:
            self._prog.update(self._task, description=text)

    def __exit__(self, *exc) -> None:
        if self._prog is not None:
            self._prog.__exit__(*exc)
