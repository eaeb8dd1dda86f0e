"""Progress lines for long work: rewritten in place on a terminal, a line per step in logs."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, total: int | None = None, stream=None, every_s: float = 1.0):
        self.label, self.total, self.every_s = label, total, every_s
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = self.last = time.monotonic()
        self.done = 0

    def _line(self) -> str:
        rate = self.done / max(time.monotonic() - self.start, 1e-9)
        of = f" / {self.total:,} ({100 * self.done / self.total:.0f}%)" if self.total else ""
        return f"  {self.label}: {self.done:,}{of}  {rate:,.0f}/s"

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self.stream.write(("\r" + self._line()) if self.tty else self._line() + "\n")
            self.stream.flush()

    def finish(self) -> float:
        elapsed = time.monotonic() - self.start
        self.stream.write(("\r" if self.tty else "") + self._line() + f"  done in {elapsed:.1f}s\n")
        self.stream.flush()
        return elapsed


def step(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)
