"""Progress for the terminal: rich bars and log lines when a console is attached, silence otherwise (tests,
--quiet, the Python API)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator


class Progress:
    def __init__(self, console=None):
        self.console = console

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """A bar for `total` steps; yields the function that advances it."""
        if self.console is None:
            yield lambda n=1: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bars, TextColumn, TimeElapsedColumn

        with Bars(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=self.console, transient=False) as bars:
            t = bars.add_task(description, total=total)
            yield lambda n=1: bars.advance(t, n)

    def log(self, message: str) -> None:
        if self.console is not None:
            self.console.print(f"[cyan]›[/cyan] {message}")
