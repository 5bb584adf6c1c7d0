"""A Keras-style progress bar:

    Epoch 1/3
    1875/1875 ━━━━━━━━━━━━━━━━━━━━ 12s 6ms/step - 5,012 img/s - accuracy: 0.9512 - loss: 0.1600

Redrawn at most every ``interval`` seconds. Values come from a callable, read only when the bar is
drawn: on a GPU reading the running loss forces a sync, which must not happen every step. The first
step (warm-up, compiling) is left out of the per-step and images/s figures. When the stream is not
a terminal (a log file, CI) only the final line of each bar is written.
"""

from __future__ import annotations

import sys
import time


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    if seconds >= 60:
        return f"{seconds // 60}:{seconds % 60:02d}"
    return f"{seconds}s"


def format_value(v: float) -> str:
    return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.4e}"


class Progbar:
    def __init__(
        self,
        target: int,
        unit: str = "step",
        width: int = 20,
        interval: float = 0.05,
        stream=None,
        items_per_step: int | None = None,
        item_name: str = "img",
        delay: float = 0.0,
        count_format=None,
        verbose: int = 1,
    ):
        self.target = target  # None: not known (a generator), "N/Unknown" until the end
        self.verbose = verbose  # 2: the final line alone, without the bar (Keras's verbose=2)
        self.unit = unit
        self.width = width
        self.interval = interval
        self.stream = stream or sys.stdout
        self.items_per_step = items_per_step
        self.item_name = item_name
        self.delay = delay  # draw nothing for work that ends sooner than this
        self.count_format = count_format or (lambda c, t: f"{c:>{len(str(t))}}/{t}")
        self.drawn = False
        self.clock_end: float | None = None
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()
        self.first_done: float | None = None  # when step 1 ended: timing starts there
        self.last_draw = 0.0
        self.items = 0
        self.finished = False

    def update(self, current: int, values=None, items: int | None = None, finalize=None):
        """Progress to ``current`` of ``target``. ``values``: a dict, or a callable returning one.
        ``finalize``: whether this is the last line (None: when ``current`` reaches ``target``)."""
        now = time.perf_counter()
        if items is not None:
            self.items = items
        if current >= 1 and self.first_done is None:
            self.first_done, self.first_items = now, self.items
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        done = finalize
        live = self.live and self.verbose == 1
        if self.finished or (not done and (not live or now - self.last_draw < self.interval)):
            return
        if now - self.start < self.delay and not self.drawn:
            self.finished = done
            return
        self.last_draw, self.drawn = now, True
        vals = values() if callable(values) else (values or {})
        line = self._line(current, now, vals, done)
        if self.live:
            self.stream.write("\r" + line + "\x1b[K")
        else:
            self.stream.write(line)
        if done:
            self.stream.write("\n")
            self.finished = True
        self.stream.flush()

    def newline(self) -> None:
        """End a half-drawn line, so a message printed after an early stop starts clean."""
        if self.live and self.drawn and not self.finished:
            self.stream.write("\n")
            self.stream.flush()
        self.finished = True

    def stop_clock(self) -> None:
        """Freeze the per-step and items/s figures here (work after this, e.g. validation,
        still counts in the total time)."""
        self.clock_end = time.perf_counter()

    def _line(self, current, now, vals, done) -> str:
        if self.target is None:
            parts = [f"{current:7d}/Unknown"]
        elif self.verbose == 2:
            parts = [f"{self.count_format(current, self.target)} -"]
        else:
            parts = [f"{self.count_format(current, self.target)} {self._bar(current, done)}"]
        steps = current - 1
        end = self.clock_end or now
        timed = end - self.first_done if self.first_done is not None else 0.0
        per_step = timed / steps if steps > 0 and timed > 0 else None
        if done:
            parts.append(format_duration(now - self.start))
            if per_step is not None:
                parts.append(
                    f"{per_step * 1e3:.0f}ms/{self.unit}"
                    if per_step >= 1e-3
                    else f"{per_step * 1e6:.0f}us/{self.unit}"
                )
        elif per_step is not None and self.target is not None:
            parts.append(f"ETA {format_duration(per_step * (self.target - current))}")
        text = " ".join(parts)
        if per_step is not None and self.items and timed > 0:
            text += f" - {(self.items - self.first_items) / timed:,.0f} {self.item_name}/s"
        for k, v in vals.items():
            text += f" - {k}: {format_value(float(v))}"
        return text

    def _bar(self, current, done) -> str:
        frac = min(current / self.target, 1.0) if self.target else 1.0
        filled = int(self.width * frac)
        bar = "━" * filled + ("╸" if filled < self.width else "") + "━" * max(self.width - filled - 1, 0)  # fmt: skip
        if self.live and not done:
            bar = f"\x1b[1m{bar[:filled]}\x1b[0m\x1b[2m{bar[filled:]}\x1b[0m"
        return bar
