"""The callbacks that report a run: ``ProgbarLogger`` (fit's own progress bar), ``CSVLogger``,
``TensorBoard`` and ``LambdaCallback`` (hooks from plain functions)."""

from __future__ import annotations

import csv
import io
import json
import os
import time

from minicnn.callbacks.base import Callback
from minicnn.fileio import atomic_write
from minicnn.progbar import Progbar

HOOKS = tuple(n for n in vars(Callback) if n.startswith("on_"))


class ProgbarLogger(Callback):
    """The progress bar fit, evaluate and predict draw (Keras adds one when ``verbose != 0``):
    ``verbose=1`` a bar redrawn as it goes, ``verbose=2`` one line per epoch. Inside fit the
    validation pass is silent. The bar reads the running values only when it redraws (reading
    them syncs a GPU), so it takes the loop's reader itself rather than a dict every batch."""

    lazy_logs = True

    def __init__(self):
        super().__init__()
        self.seen, self.progbar, self.target = 0, None, None
        self.verbose, self.epochs = 1, 1
        self._called_in_fit = False

    def set_params(self, params):
        super().set_params(params)
        verbose = params.get("verbose", 1)
        self.verbose = 1 if verbose == "auto" else verbose
        self.epochs, self.target = params.get("epochs", 1), params.get("steps")

    def on_train_begin(self, logs=None):
        self._called_in_fit = True  # validation inside fit is silent

    def on_test_begin(self, logs=None):
        if not self._called_in_fit:
            self._reset()

    def on_predict_begin(self, logs=None):
        self._reset()

    def on_epoch_begin(self, epoch, logs=None):
        self._reset()
        if self.verbose and self.epochs > 1:
            print(f"Epoch {epoch + 1}/{self.epochs}", flush=True)

    def on_train_batch_end(self, batch, logs=None):
        self._update(batch, logs)
        if self.progbar is not None and self.seen == self.target:
            self.progbar.stop_clock()  # the epoch's steps are done; validation is not a step

    def on_test_batch_end(self, batch, logs=None):
        if not self._called_in_fit:
            self._update(batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._update(batch, logs, values=False)  # the outputs are not shown

    def on_epoch_end(self, epoch, logs=None):
        self._finalize(logs)

    def on_test_end(self, logs=None):
        if not self._called_in_fit:
            self._finalize(logs)

    def on_predict_end(self, logs=None):
        self._finalize(None)

    def _reset(self):
        self.seen = 0
        self.progbar = None
        if self.verbose:
            interval = 0.05 if self.model is None or self.model.backend.name == "numpy" else 0.25
            self.progbar = Progbar(self.target, interval=interval, verbose=self.verbose)

    def _update(self, batch, logs, values=True):
        self.seen = batch + 1
        if self.progbar is None or self.verbose != 1:
            return
        items = getattr(logs, "samples", None)  # the loop's reader counts the samples so far
        self.progbar.update(self.seen, logs if values else None, items=items, finalize=False)

    def _finalize(self, logs):
        if self.progbar is None:
            return
        if self.target is None:
            self.progbar.target = self.seen
        self.progbar.update(self.seen if self.target is None else self.target, logs or {}, finalize=True)  # fmt: skip

    def newline(self) -> None:
        """End a half-drawn line before fit prints why it stopped."""
        if self.progbar is not None:
            self.progbar.newline()


class LambdaCallback(Callback):
    """A callback from plain functions: ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``,
    with Keras's arguments (on_epoch_begin/end, on_train_begin/end, on_train_batch_begin/end)
    and, as keyword arguments, any other hook (``on_test_end=...``)."""

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None, on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None, **kwargs):  # fmt: skip
        super().__init__()
        typos = sorted(k for k in kwargs if k.startswith("on_") and k not in HOOKS)
        if typos:
            raise ValueError(f"LambdaCallback: {typos} are not callback hooks. Expected some of {list(HOOKS)}")  # fmt: skip
        named = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end, on_train_begin=on_train_begin, on_train_end=on_train_end, on_train_batch_begin=on_train_batch_begin, on_train_batch_end=on_train_batch_end)  # fmt: skip
        self.__dict__.update(kwargs)
        for hook, fn in named.items():
            if fn is not None:
                setattr(self, hook, fn)


class CSVLogger(Callback):
    """One CSV row per epoch (``epoch`` then the logs in sorted order), the file rewritten
    whole and atomically each epoch; with ``append``, rows already in the file are kept."""

    writes_files = True

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename, self.separator, self.append = os.fspath(filename), separator, append
        self.rows: list[list[str]] = []

    def on_train_begin(self, logs=None):
        self.rows = []
        if self.append and os.path.isfile(self.filename):
            with open(self.filename, newline="") as f:
                self.rows = list(csv.reader(f, delimiter=self.separator))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        keys = sorted(logs)
        if not self.rows:
            self.rows.append(["epoch", *keys])
        self.rows.append([str(epoch), *(repr(float(logs[k])) for k in keys)])
        text = io.StringIO()
        csv.writer(text, delimiter=self.separator, lineterminator="\n").writerows(self.rows)
        atomic_write(self.filename, lambda f: f.write(text.getvalue().encode()))


def _writer_package() -> str:
    """Which package writes the event files: tensorboardX, else tensorboard; neither is an
    ImportError naming both."""
    import importlib.util

    for name in ("tensorboardX", "tensorboard"):
        if importlib.util.find_spec(name) is not None:
            return name
    raise ImportError("The TensorBoard callback needs the tensorboard or the tensorboardX package to write event files; neither is installed: pip install tensorboard")  # fmt: skip


def _event_writer(logdir: str):
    """A writer of TensorBoard event files in ``logdir``."""
    if _writer_package() == "tensorboardX":
        from tensorboardX import SummaryWriter

        return _TensorboardX(SummaryWriter(logdir))
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    return _Tensorboard(EventFileWriter(logdir), event_pb2, summary_pb2)


class _TensorboardX:
    def __init__(self, writer):
        self.writer = writer

    def scalar(self, tag, value, step):
        self.writer.add_scalar(tag, float(value), int(step))

    def text(self, tag, value, step):
        self.writer.add_text(tag, value, int(step))

    def close(self):
        self.writer.close()


class _Tensorboard:
    def __init__(self, writer, event_pb2, summary_pb2):
        self.writer, self.event_pb2, self.summary_pb2 = writer, event_pb2, summary_pb2

    def scalar(self, tag, value, step):
        s = self.summary_pb2
        summary = s.Summary(value=[s.Summary.Value(tag=tag, simple_value=float(value))])
        self.writer.add_event(self.event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))  # fmt: skip

    def text(self, tag, value, step):
        from tensorboard.plugins.text.summary import text_pb

        self.writer.add_event(self.event_pb2.Event(wall_time=time.time(), step=int(step), summary=text_pb(tag, value)))  # fmt: skip

    def close(self):
        self.writer.close()


class TensorBoard(Callback):
    """Event files for TensorBoard in ``log_dir``/train and ``log_dir``/validation, as Keras
    writes them: ``epoch_<name>`` per epoch (the learning rate too; ``steps_per_second`` with
    ``write_steps_per_second``), ``batch_<name>`` every ``update_freq`` batches when it is an
    int ("batch": every batch), ``evaluation_<name>_vs_iterations`` after each validation, and
    with ``write_graph`` the model's config as the text summary "keras". Needs the tensorboard or
    tensorboardX package (checked here, before fit). Weight histograms, images, embeddings and
    profiling are not implemented: asking for them is an error."""

    writes_files = True

    def __init__(self, log_dir="logs", histogram_freq=0, write_graph=True, write_images=False, write_steps_per_second=False, update_freq="epoch", profile_batch=0, embeddings_freq=0, embeddings_metadata=None):  # fmt: skip
        super().__init__()
        refused = {"histogram_freq": histogram_freq, "write_images": write_images, "profile_batch": profile_batch, "embeddings_freq": embeddings_freq, "embeddings_metadata": embeddings_metadata}  # fmt: skip
        for name, value in refused.items():
            if value:
                raise NotImplementedError(f"TensorBoard: {name} is not implemented in minicnn (scalars and the model's config only). Received: {name}={value!r}")  # fmt: skip
        update_freq = 1 if update_freq == "batch" else update_freq
        if update_freq != "epoch" and (isinstance(update_freq, bool) or not isinstance(update_freq, int) or update_freq < 1):  # fmt: skip
            raise ValueError(f'TensorBoard: update_freq must be "epoch", "batch" or a positive int. Received: update_freq={update_freq!r}')  # fmt: skip
        _writer_package()  # refused here, before fit, when neither is installed
        self.log_dir = os.fspath(log_dir)
        self.write_graph, self.write_steps_per_second = write_graph, write_steps_per_second
        self.update_freq = update_freq
        self._writers: dict = {}
        self._batch, self._epoch_start, self._epoch_iterations = 0, 0.0, 0

    def _writer(self, which: str):
        if which not in self._writers:
            self._writers[which] = _event_writer(os.path.join(self.log_dir, which))
        return self._writers[which]

    def needs_batch_logs(self, hook: str) -> bool:
        return hook == "on_train_batch_end" and self.update_freq != "epoch"

    def on_train_begin(self, logs=None):
        self._batch = 0
        if self.write_graph:
            config = {"class_name": type(self.model).__name__, "config": self.model.get_config()}
            self._writer("train").text("keras", json.dumps(config), 0)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start, self._epoch_iterations = time.time(), self.model.optimizer.iterations

    def on_train_batch_end(self, batch, logs=None):
        self._batch += 1
        if self.update_freq != "epoch" and self._batch % self.update_freq == 0:
            for name, value in (logs or {}).items():
                self._writer("train").scalar(f"batch_{name}", value, self._batch)

    def on_test_end(self, logs=None):
        step = self.model.optimizer.iterations if self.model.optimizer is not None else 0
        for name, value in (logs or {}).items():
            self._writer("validation").scalar(f"evaluation_{name}_vs_iterations", value, step)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        train["learning_rate"] = self.model.optimizer.learning_rate
        if self.write_steps_per_second:
            steps = self.model.optimizer.iterations - self._epoch_iterations
            train["steps_per_second"] = steps / max(time.time() - self._epoch_start, 1e-9)
        for name, value in train.items():
            self._writer("train").scalar(f"epoch_{name}", value, epoch)
        for name, value in logs.items():
            if name.startswith("val_"):
                self._writer("validation").scalar(f"epoch_{name[4:]}", value, epoch)

    def on_train_end(self, logs=None):
        for w in self._writers.values():
            w.close()
        self._writers = {}
