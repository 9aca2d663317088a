"""Progress of a benchmark run: a ``rich`` progress bar on a terminal when ``rich`` is
installed (the ``bench`` extra), otherwise one plain line per turn."""

from __future__ import annotations

import sys
from typing import Any, TextIO


class Progress:
    """Counts turns (a contender timing a shape for a round) out of ``total``; a context
    manager.

    ``step(label)`` starts the next turn, ``advance(n, label)`` counts ``n`` turns passed
    over (a contender that cannot run a shape), ``note(msg)`` prints a line above the bar;
    ``stream=None`` prints nothing."""

    def __init__(self, total: int, stream: TextIO | None = sys.stderr) -> None:
        self.total, self.done, self.stream = total, 0, stream
        self._bar: Any = None
        self._task: Any = None
        if stream is not None and stream.isatty():
            try:
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    TextColumn,
                    TimeElapsedColumn,
                )
                from rich.progress import Progress as RichProgress
            except ImportError:
                return
            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(),
                                     MofNCompleteColumn(), TimeElapsedColumn(),
                                     console=Console(file=stream), transient=False)

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task("benchmark", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance(self, cells: int, label: str) -> None:
        self.done += cells
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, description=label)

    def step(self, label: str) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done - 1, description=label)
        else:
            self.note(f"[{self.done}/{self.total}] {label} ...")

    def note(self, msg: str) -> None:
        if self._bar is not None:
            self._bar.console.print(msg, markup=False, highlight=False)
        elif self.stream is not None:
            print(msg, file=self.stream, flush=True)
