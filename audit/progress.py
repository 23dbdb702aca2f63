"""Progress that is never silent: rich bars on a terminal, plain throttled lines everywhere else.

The mode comes from ``--progress auto|bar|plain|none`` (:func:`set_mode`), else the ``AUDIT_PROGRESS``
environment variable, else ``auto``: a bar when stderr is a terminal, plain lines when it is not (CI logs,
``nohup``, ``| tee``, notebooks, cron). ``--quiet`` means ``none``, and so does ``AUDIT_NO_PROGRESS=1`` when neither
is given.

Plain mode prints one line when a step starts, when it ends, and at least every :func:`interval` seconds in
between (30 s; ``AUDIT_PROGRESS_INTERVAL`` changes it), from a heartbeat thread when the work itself reports
nothing for that long, e.g.::

    train  small_cnn holdout=phone seed 0  3/8 epoch  0.41 epoch/s  eta 12s  val 0.913

Bars nest (``profile`` over its checks, ``profile: scanning images`` inside): on a terminal the inner one is a
second row of the same display; in plain mode only the innermost live bar sends heartbeat lines, so a log gets
one line per interval, from the step that is running.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["MODES", "Bar", "track", "set_mode", "set_quiet", "is_quiet", "mode", "enabled", "format_eta", "message"]

T = TypeVar("T")
MODES = ("auto", "bar", "plain", "none")
_QUIET = False
_MODE: str | None = None
_ACTIVE: list[Bar] = []  # live bars (plain or rich), outermost first
_ACTIVE_LOCK = threading.Lock()  # a heartbeat decides and speaks under it, so a bar nested meanwhile silences it


def set_quiet(quiet: bool) -> None:
    global _QUIET
    _QUIET = quiet


def is_quiet() -> bool:
    return _QUIET


def set_mode(value: str | None) -> None:
    """Choose the progress mode (None: from the environment)."""
    global _MODE
    if value is not None and value not in MODES:
        raise ValueError(f"progress must be one of {', '.join(MODES)}, got {value!r}")
    _MODE = value


def mode() -> str:
    """The effective mode: ``bar``, ``plain`` or ``none``."""
    if _QUIET:
        return "none"
    env = os.environ.get("AUDIT_PROGRESS", "").strip().lower()
    m = _MODE or env or ("none" if os.environ.get("AUDIT_NO_PROGRESS") else "auto")
    if m not in MODES:
        m = "auto"
    if m == "auto":
        return "bar" if sys.stderr.isatty() else "plain"
    return m


def enabled() -> bool:
    """Whether a rich bar is shown (an interactive terminal, not --quiet)."""
    return mode() == "bar"


def interval() -> float:
    """Seconds between plain progress lines."""
    try:
        return max(0.05, float(os.environ.get("AUDIT_PROGRESS_INTERVAL", "30")))
    except ValueError:
        return 30.0


def format_eta(seconds: float) -> str:
    """``6m10s``, ``1h02m``, ``45s``.

    >>> format_eta(370), format_eta(3720), format_eta(4.2)
    ('6m10s', '1h02m', '4s')
    """
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def message(text: str) -> None:
    """One line on stderr (a plan, a resume notice): rich on a terminal, plain text elsewhere, nothing in mode ``none``
    (``--quiet``)."""
    m = mode()
    if m == "none":
        return
    if m == "bar":
        from rich.console import Console
        from rich.markup import escape

        Console(stderr=True).print(escape(text), highlight=False)
    else:
        print(text, file=sys.stderr, flush=True)


def track(it: Iterable[T], *, total: int | None = None, description: str = "working", unit: str = "it") -> Iterator[T]:
    """Iterate with progress (a bar, plain lines or nothing, see :func:`mode`)."""
    if total is None:
        try:
            total = len(it)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with Bar(total, description, unit=unit) as bar:
        for x in it:
            yield x
            bar.advance(1)


class Bar:
    """A manually advanced progress display: ``with Bar(total, "training", unit="epoch") as b: b.advance(k)``.

    ``total=None`` disables it (callers pass None when progress is off for them).
    """

    def __init__(self, total: int | None, description: str, *, unit: str = "it"):
        self.total = total
        self.description = description
        self.unit = unit
        self.done = 0
        self.info = ""
        self.custom: str | None = None  # a whole plain line set by :meth:`show` (replaces the generated one)
        self._prog = None
        self._task = None
        self._plain = False
        self._shared = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = self._last = 0.0
        self._r0 = (0.0, 0)  # (time, count) the rate is measured from: the start, or when the total became known

    # ------------------------------------------------------------------ plain lines
    def line(self) -> str:
        """The current plain progress line."""
        if self.custom is not None:
            return self.custom
        now = time.monotonic()
        el = now - self._t0
        parts = [self.description]
        if self.total:
            parts.append(f"{self.done}/{self.total} {self.unit}")
        elif self.done:
            parts.append(f"{self.done} {self.unit}")
        r_t, r_done = self._r0
        if self.done > r_done and now > r_t:
            rate = (self.done - r_done) / (now - r_t)
            parts.append(f"{rate:.3g} {self.unit}/s")
            if self.total:
                parts.append(f"eta {format_eta((self.total - self.done) / rate)}")
        else:
            parts.append(f"elapsed {format_eta(el)}")
        if self.info:
            parts.append(self.info)
        return "  ".join(parts)

    def _emit(self, text: str) -> None:
        self._last = time.monotonic()
        print(text, file=sys.stderr, flush=True)

    def _heartbeat(self) -> None:
        while not self._stop.wait(min(interval(), 1.0)):
            with _ACTIVE_LOCK:
                if _ACTIVE and _ACTIVE[-1] is not self:
                    continue  # a nested step is running: its own heartbeat speaks
                with self._lock:
                    if time.monotonic() - self._last >= interval():
                        self._emit(self.line())

    # ------------------------------------------------------------------ context
    def __enter__(self) -> Bar:
        m = mode() if self.total is not None else "none"
        self._t0 = self._last = time.monotonic()
        self._r0 = (self._t0, 0)
        if m in ("bar", "plain"):
            with _ACTIVE_LOCK:  # registered before its first line: from here on an outer heartbeat stays quiet
                _ACTIVE.append(self)
        outer = next((b for b in reversed(_ACTIVE) if b._prog is not None), None)
        if m == "bar" and outer is not None:  # a nested step: one more row of the live display
            self._prog, self._shared = outer._prog, True
            self._task = self._prog.add_task(self.description, total=self.total, info="")
        elif m == "bar":
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
        elif m == "plain":
            self._plain = True
            self._emit(f"{self.description}  start" + (f"  0/{self.total} {self.unit}" if self.total else ""))
            self._thread = threading.Thread(target=self._heartbeat, name="audit-progress", daemon=True)
            self._thread.start()
        return self

    def advance(self, n: int = 1, info: str | None = None) -> None:
        with self._lock:
            self.done += int(n)
            if info is not None:
                self.info = info
            if self._prog is not None:
                kw = {"info": info} if info is not None else {}
                self._prog.update(self._task, advance=n, **kw)
            elif self._plain and time.monotonic() - self._last >= interval():
                self._emit(self.line())

    def skip(self, n: int, info: str | None = None) -> None:
        """Advance by ``n`` items that cost nothing (reused from a cache): counted as done, not in the rate, so the
        ETA is that of the work left."""
        self.advance(n, info=info)
        with self._lock:
            self._r0 = (time.monotonic(), self.done)

    def update(self, done: int, *, total: int | None = None, info: str | None = None) -> None:
        """Set the count (and the total, once a step knows it: ``Bar(0, ...)`` starts without one)."""
        with self._lock:
            if total is not None and not self.total:  # the work before the total was known is not in the rate
                self._r0 = (time.monotonic(), self.done)
            if total is not None:
                self.total = int(total)
            if info is not None:
                self.info = info
            self.done = int(done)
            if self._prog is not None:
                kw = {"info": info} if info is not None else {}
                self._prog.update(self._task, completed=self.done, total=self.total or None, **kw)
            elif self._plain and time.monotonic() - self._last >= interval():
                self._emit(self.line())

    def show(self, text: str) -> None:
        """Replace the plain line with ``text`` (e.g. ``train  fold holdout=x  epoch 3/8  batch 120/310  41 img/s
        eta 6m10s``), printed when the interval has passed; on a bar it is the info column."""
        with self._lock:
            self.custom = text
            if self._prog is not None:
                self._prog.update(self._task, info=text)
            elif self._plain and time.monotonic() - self._last >= interval():
                self._emit(text)

    def say(self, text: str) -> None:
        """One line now (a resume notice), above the bar on a terminal; nothing in mode ``none``."""
        if self._prog is not None:
            from rich.markup import escape

            with self._lock:
                self._prog.console.print(escape(text), highlight=False)
        elif self._plain:
            with self._lock:
                self._emit(text)
        else:
            message(text)

    def warn(self, text: str) -> None:
        """A warning line on stderr now, whatever the mode (``--quiet`` silences it; run.json keeps it anyway)."""
        if is_quiet():
            return
        with self._lock:
            if self._prog is not None:
                from rich.markup import escape

                self._prog.console.print(f"[yellow]warning:[/] {escape(text)}", markup=True, highlight=False)
            else:
                self._emit(f"warning: {text}")

    def set_description(self, text: str) -> None:
        with self._lock:
            self.description = text
            if self._prog is not None:
                self._prog.update(self._task, description=text)

    def __exit__(self, *exc) -> None:
        if self._prog is not None and self._shared:
            self._prog.remove_task(self._task)
        elif self._prog is not None:
            self._prog.__exit__(*exc)
        if self._plain:
            self._stop.set()
            if self._thread is not None:
                self._thread.join(timeout=2)
            el = format_eta(time.monotonic() - self._t0)
            end = "stopped" if exc and exc[0] is not None else "done"
            count = f"{self.done}/{self.total} {self.unit}" if self.total else f"{self.done} {self.unit}"
            with self._lock:
                self._emit(f"{self.description}  {end}  {count} in {el}")
        with _ACTIVE_LOCK:  # only after its last line: an outer heartbeat never lands between its lines
            if self in _ACTIVE:
                _ACTIVE.remove(self)
