"""Data adapters: where fit, evaluate and predict get their batches from, other than arrays
(``minicnn.data.ArrayData``), and how an epoch walks them, as Keras 3 does
(keras/src/trainers/epoch_iterator.py and data_adapters/, v3.15.1).

- ``GeneratorData``: a Python generator of ``(x, y)`` or ``(x, y, sample_weight)`` batches
  (``(x,)`` or ``x`` for predict). As in Keras, its first two batches are read ahead and each
  epoch starts a new pass with them, chained to the generator: an endless generator gives
  ``steps_per_epoch`` batches an epoch; a finite one runs out after its first epoch (the next
  ones then hold those two batches only), as Keras's does.
- ``PyDatasetData``: a ``PyDataset`` (``__len__`` and ``__getitem__(index) -> batch``): each
  epoch reads its batches in order, or in an order drawn from minicnn's generator with
  ``shuffle``, through ``workers`` threads when ``workers > 1``; ``on_epoch_begin`` and
  ``on_epoch_end`` are called around each epoch (and ``on_epoch_end`` once before the first,
  as Keras's iterator does when it is reset).
- ``Epochs``: Keras's EpochIterator: ``steps_per_epoch`` batches an epoch, the pass going on
  across epochs until the data runs out (an ``Your input ran out of data`` warning ends the
  epoch early), else one whole pass.

A source has ``num_batches`` (None when unknown) and ``epoch(index)``, an iterator of prepared
batches; ``prepare`` (given by the loop) turns one raw batch into what a step takes.

Bit-exact resume: a PyDataset, and arrays when each epoch is one whole pass, draw their order
from minicnn's generator at each epoch's start, so a resumed run draws what the unbroken one
would. A generator cannot be rewound: a run resumed from a checkpoint reads the batches the
new generator gives, and is bit-exact only if that generator yields what the broken run's would
have yielded next. So is a pass carried across epochs (``steps_per_epoch`` fewer than a pass).
"""

from __future__ import annotations

import collections
import itertools
import types
import warnings
from concurrent.futures import ThreadPoolExecutor

from minicnn.backend import rng

PEEK = 2  # Keras's NUM_BATCHES_FOR_TENSOR_SPEC: batches read ahead of a generator


class PyDataset:
    """Keras's ``keras.utils.PyDataset`` (also ``Sequence``): implement ``__len__`` (batches
    per epoch) and ``__getitem__(index)`` (one whole batch: ``(x, y)``, ``(x, y,
    sample_weight)``, or ``x`` for predict), and optionally ``on_epoch_begin``/``on_epoch_end``.

    ``workers``: how many threads read batches ahead of the step (up to ``max_queue_size``
    batches), in order; ``use_multiprocessing=True`` is not implemented (an error at fit)."""

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        self._workers = workers
        self._use_multiprocessing = use_multiprocessing
        self._max_queue_size = max_queue_size

    def _warn_if_super_not_called(self):
        missing = [k for k in ("_workers", "_use_multiprocessing", "_max_queue_size") if not hasattr(self, k)]  # fmt: skip
        if missing:
            self._workers, self._use_multiprocessing, self._max_queue_size = (
                getattr(self, "_workers", 1),
                getattr(self, "_use_multiprocessing", False),
                getattr(self, "_max_queue_size", 10),
            )
            warnings.warn("Your `PyDataset` class should call `super().__init__(**kwargs)` in its constructor. `**kwargs` can include `workers`, `use_multiprocessing`, `max_queue_size`. Do not pass these arguments to `fit()`, as they will be ignored.", stacklevel=3)  # fmt: skip

    @property
    def workers(self):
        self._warn_if_super_not_called()
        return self._workers

    @workers.setter
    def workers(self, value):
        self._workers = value

    @property
    def use_multiprocessing(self):
        self._warn_if_super_not_called()
        return self._use_multiprocessing

    @use_multiprocessing.setter
    def use_multiprocessing(self, value):
        self._use_multiprocessing = value

    @property
    def max_queue_size(self):
        self._warn_if_super_not_called()
        return self._max_queue_size

    @max_queue_size.setter
    def max_queue_size(self, value):
        self._max_queue_size = value

    def __getitem__(self, index):
        raise NotImplementedError

    @property
    def num_batches(self):
        """Batches per epoch (``len(self)``), or None for an endless dataset."""
        if hasattr(self, "__len__"):
            return len(self)
        raise NotImplementedError("You need to implement the `num_batches` property:\n\n@property\ndef num_batches(self):\n  return ...")  # fmt: skip

    def __iter__(self):
        n = self.num_batches
        for index in range(n) if n is not None else itertools.count():
            yield self[index]

    def on_epoch_begin(self):
        """Called at the start of every epoch."""

    def on_epoch_end(self):
        """Called at the end of every epoch."""


def is_generator(x) -> bool:
    return isinstance(x, types.GeneratorType)


def unpack(batch, what: str):
    """(x, y, sample_weight) of one batch, as Keras's ``unpack_x_y_sample_weight``."""
    if isinstance(batch, list):
        batch = tuple(batch)
    if not isinstance(batch, tuple):
        return batch, None, None
    if not 1 <= len(batch) <= 3:
        raise ValueError(f"{what} must give batches as `x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)`. Received: a tuple of {len(batch)}")  # fmt: skip
    return (*batch, *(None,) * (3 - len(batch)))


class GeneratorData:
    """A Python generator of batches (see the module's docstring)."""

    def __init__(self, generator, prepare):
        self.first = list(itertools.islice(generator, PEEK))
        if not self.first:
            raise ValueError("When passing a Python generator to a minicnn model, the generator must yield at least one batch. Received an empty generator.")  # fmt: skip
        if not isinstance(self.first[0], tuple):
            raise ValueError(f"When passing a Python generator to a minicnn model, the generator must return a tuple, either (input,) or (inputs, targets) or (inputs, targets, sample_weights). Received: {type(self.first[0]).__name__}")  # fmt: skip
        self.generator, self.prepare = generator, prepare
        self.num_batches = None

    def iterator(self, epoch: int):
        return map(self.prepare, itertools.chain(self.first, self.generator))

    def on_epoch_begin(self):
        """A generator: nothing to do at an epoch's edges (it is read on, not restarted)."""

    def on_epoch_end(self):
        """A generator: nothing to do at an epoch's edges (it is read on, not restarted)."""


class PyDatasetData:
    """A PyDataset's batches (see the module's docstring)."""

    def __init__(self, dataset: PyDataset, prepare, shuffle):
        if dataset.use_multiprocessing:
            raise NotImplementedError("PyDataset(use_multiprocessing=True) is not implemented in minicnn: its workers are threads. Use use_multiprocessing=False (workers > 1 read batches in threads)")  # fmt: skip
        workers, queue = dataset.workers, dataset.max_queue_size
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError(f"PyDataset: workers must be a non-negative int. Received: workers={workers!r}")  # fmt: skip
        if isinstance(queue, bool) or not isinstance(queue, int) or queue < 1:
            raise ValueError(f"PyDataset: max_queue_size must be a positive int. Received: max_queue_size={queue!r}")  # fmt: skip
        self.dataset, self.prepare, self.workers, self.queue = dataset, prepare, workers, queue
        self.num_batches = dataset.num_batches
        if self.num_batches is None and shuffle:
            warnings.warn("`shuffle=True` was passed, but will be ignored since the data `x` was provided as an infinite PyDataset. The PyDataset is expected to already be shuffled.", stacklevel=4)  # fmt: skip
        self.shuffle = bool(shuffle) and self.num_batches is not None
        self.within_epoch = False

    def iterator(self, epoch: int):
        n = self.num_batches
        if n is None:
            indices = itertools.count()
        else:
            indices = rng().permutation(n).tolist() if self.shuffle else range(n)
        get = self.dataset.__getitem__
        batches = map(get, indices) if self.workers <= 1 else _ordered(get, indices, self.workers, self.queue)  # fmt: skip
        return map(self.prepare, batches)

    def on_epoch_begin(self):
        self.dataset.on_epoch_begin()

    def on_epoch_end(self):
        self.dataset.on_epoch_end()


def _ordered(get, indices, workers: int, queue: int):
    """``get(i)`` for each index in order, read ahead by ``workers`` threads (at most ``queue``
    batches waiting); the threads stop when the epoch stops reading."""
    indices = iter(indices)
    with ThreadPoolExecutor(workers, thread_name_prefix="PyDataset") as pool:
        pending = collections.deque(pool.submit(get, i) for i in itertools.islice(indices, queue))
        try:
            while pending:
                done = pending.popleft()
                for i in itertools.islice(indices, 1):
                    pending.append(pool.submit(get, i))
                yield done.result()
        finally:
            for f in pending:
                f.cancel()


class Epochs:
    """Keras's EpochIterator over a source with ``num_batches``, ``iterator(epoch)`` and the
    epoch hooks: ``len``-like ``num_batches`` (``steps_per_epoch`` when given) and
    ``epoch(index)``, an iterator of that epoch's batches."""

    def __init__(self, source, steps_per_epoch=None, reset: bool = True):
        self.source, self.steps_per_epoch = source, steps_per_epoch
        self.known, self.current, self.seen = source.num_batches, None, 0
        if reset:  # Keras's fit and evaluate reset their iterator; predict does not
            self.reset()

    def reset(self) -> None:
        """Start a new pass at the next epoch, as Keras does before fit and before each
        evaluation (fit's validation included), calling the source's ``on_epoch_end``."""
        self.known = self.source.num_batches  # None until a pass of an unsized source ends
        self.current, self.seen = None, 0
        self.source.on_epoch_end()

    @property
    def num_batches(self):
        return self.steps_per_epoch or self.known

    def __len__(self) -> int:
        return self.num_batches or 0

    def epoch(self, index: int = 0):
        self.source.on_epoch_begin()
        steps = self.steps_per_epoch or self.known
        if self.current is None or self.steps_per_epoch is None:
            self.current, self.seen = self.source.iterator(index), 0
        step = 0
        while steps is None or step < steps:
            if self.known and self.seen >= self.known:
                if self.steps_per_epoch:
                    _ran_out()
                break
            try:
                batch = next(self.current)
            except StopIteration:
                if self.known is None:
                    self.known = self.seen  # an unsized pass has ended: now its size is known
                if self.steps_per_epoch:
                    _ran_out()
                self.current = None
                break
            self.seen += 1
            step += 1
            yield batch
        if self.known and self.seen >= self.known:
            self.current = None  # the next epoch starts a new pass
        self.source.on_epoch_end()


def _ran_out():
    warnings.warn("Your input ran out of data; interrupting training. Make sure that your dataset or generator can generate at least `steps_per_epoch * epochs` batches.", stacklevel=3)  # fmt: skip
