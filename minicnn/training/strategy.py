"""Where training runs: the questions ``fit`` asks about the processes it shares the work with.

``Local`` is the answer for one process, and what ``fit`` uses unless told otherwise;
``minicnn.distributed.DataParallel`` answers the same questions for processes joined by MPI. The
loop never asks which one it has, so a single process runs exactly the code it always ran.
"""

from __future__ import annotations

from minicnn import data
from minicnn.training.step import TrainStep


class Local:
    """One process does everything."""

    rank, size = 0, 1
    is_chief = True  # the process that logs and writes files

    def setup(self, model) -> None:
        """Before the first step: make every process hold the same weights and optimizer state."""

    def source(self, xs, targets, batch_size: int, shuffle: bool, backend, weights=None):
        """The batches this process trains on each epoch (``weights``: sample weights)."""
        return data.ArrayData(xs, targets, batch_size, shuffle, backend, ws=weights)

    def shard(self, n: int) -> tuple[int, int]:
        """The rows [lo, hi) of an n-sample set this process evaluates."""
        return 0, n

    def make_step(self, model, check_finite: bool) -> TrainStep:
        return TrainStep(model, check_finite)

    def reduce_totals(self, totals) -> None:
        """Make ``totals`` (its sums and seen count) the sums over every process, in place."""

    def agree(self, flag: bool) -> bool:
        """True on every process if ``flag`` is true on any (Ctrl-C reaches each at its own time)."""
        return flag

    def end_epoch(self, model) -> None:
        """Make what is not trained (moving statistics) the same on every process."""

    def keep_callback(self, callback) -> bool:
        """Callbacks that write files run on the chief process only."""
        return True
