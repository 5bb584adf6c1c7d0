"""Sequential: a stack of layers trained with Keras's API.

The training step is the whole engine in five lines (``_train_step``): forward through the layers,
loss and its gradient, backward through the layers in reverse, then one optimiser update of every
parameter. Everything else here checks inputs and moves batches.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading

import numpy as np

from minicnn import losses, ops, optimizers
from minicnn.backend import floatx, get_array_module, get_backend, rng
from minicnn.callbacks import CallbackList, History, TerminateOnNaN
from minicnn.layers import InputLayer, Layer, deserialize
from minicnn.layers.base import ActivationMixin
from minicnn.progbar import Progbar


class NonFiniteError(ArithmeticError):
    """A training step produced NaN or inf; raised before the step changed any weight."""


_ACCURACY_NAMES = ("accuracy", "acc", "categorical_accuracy", "sparse_categorical_accuracy")


class Sequential:
    """``Sequential(layers=None, backend=None)``: backend "numpy" or "cupy" (default: the one set
    by ``minicnn.set_backend`` or MINICNN_BACKEND, else "numpy")."""

    def __init__(self, layers=None, backend=None, name: str = "sequential"):
        self.backend = get_backend(backend)
        self.name = name
        self.layers: list[Layer] = []
        self.input_shape: tuple | None = None  # without the batch axis
        self.optimizer = None
        self.loss = None
        self.metrics: list[str] = []
        self.stop_training = False
        self.history: History | None = None
        self._resume: dict | None = None  # set by load_checkpoint for the next fit
        self._undo: list = []  # copies of weights and optimizer slots for _apply_or_undo
        self.resumed_from: dict | None = None  # during fit: the checkpoint's training state
        for layer in layers or []:
            self.add(layer)

    # -- building ------------------------------------------------------------------------------

    @property
    def built(self) -> bool:
        return self.input_shape is not None and all(layer.built for layer in self.layers)

    def add(self, layer: Layer) -> None:
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a minicnn layer. Received: {layer!r}")
        if any(layer.name == other.name for other in self.layers):
            raise ValueError(
                f'Layer names must be unique in a model. Received a second "{layer.name}"'
            )
        if isinstance(layer, InputLayer):
            if self.layers or self.input_shape is not None:
                raise ValueError("Input(...) must be the first thing added to a Sequential model")
            self.input_shape = layer.input_shape_hint
            return
        if not self.layers and self.input_shape is None and layer.input_shape_hint is not None:
            self.input_shape = layer.input_shape_hint
        if self.input_shape is not None:
            # Build at once, as Keras does, so a misfit layer is refused here and summary() works
            layer.build(self.output_shape, self.backend)
            layer.needs_input_grad = bool(self.layers)
        self.layers.append(layer)

    @property
    def output_shape(self) -> tuple:
        if self.input_shape is None:
            raise ValueError("The model has no input shape yet: give input_shape= or call build()")
        shape = self.input_shape
        for layer in self.layers:
            shape = layer.compute_output_shape(shape)
        return shape

    def build(self, input_shape) -> None:
        """Make every layer's weights for inputs of ``input_shape`` ((None, H, W, C) or (H, W, C))."""
        input_shape = tuple(input_shape)
        if input_shape and input_shape[0] is None:
            input_shape = input_shape[1:]
        shape = self.input_shape = input_shape
        for i, layer in enumerate(self.layers):
            if not layer.built:
                layer.build(shape, self.backend)
            layer.needs_input_grad = i > 0
            shape = layer.compute_output_shape(shape)

    def compile(self, optimizer="adam", loss=None, metrics=None) -> None:
        if loss is None:
            raise ValueError(f"compile() needs a loss: one of {sorted(losses._ALL)}")
        self.optimizer = optimizers.get(optimizer)
        self.loss = losses.get(loss)
        metrics = list(metrics or [])
        for m in metrics:
            if m not in _ACCURACY_NAMES:
                raise ValueError(
                    f"Unknown metric: expected one of {_ACCURACY_NAMES}. Received: {m!r}"
                )
        self.metrics = ["accuracy"] if metrics else []

    def _prepare_head(self) -> bool:
        """Mark the last layer to stop before its softmax when the loss can take the logits
        instead; returns whether it does (then predict applies the softmax itself)."""
        head = self.layers[-1] if self.layers else None
        fused = (
            isinstance(head, ActivationMixin)
            and head.ends_in_softmax
            and self.loss is not None
            and not self.loss.from_logits
        )
        for layer in self.layers:
            if isinstance(layer, ActivationMixin):
                layer.emit_logits = fused and layer is head
        return fused

    # -- the engine ----------------------------------------------------------------------------

    def _forward(self, x, training: bool):
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x

    def _backward(self, g) -> None:
        for layer in reversed(self.layers):
            g = layer.backward(g)

    def trainable_layers(self) -> list[Layer]:
        return [layer for layer in self.layers if layer.trainable and layer.params]

    def trainable_params(self) -> list[tuple[Layer, str]]:
        """(layer, name) of every parameter the optimiser updates, in the order it keeps them."""
        return [(layer, k) for layer in self.trainable_layers() for k in layer.params]

    def _train_step(self, xb, tb, logits: bool, check_finite: bool = False):
        """One optimisation step on a batch. Returns (mean loss, number correct) as device scalars.
        With ``check_finite``, a non-finite loss or gradient raises NonFiniteError before any
        weight changes (one read of a flag per step, which syncs a GPU)."""
        out = self._forward(xb, training=True)
        loss, gout = self.loss.forward_backward(out, tb, logits=logits)
        self._backward(gout)
        which = self.trainable_params()
        params = [layer.params[k] for layer, k in which]
        grads = [layer.grads[k] for layer, k in which]
        if not check_finite:
            self.optimizer.apply(params, grads)
        elif not _all_finite([loss, *grads]):
            raise NonFiniteError(self._diagnose(xb, tb, logits, loss))
        else:
            self._apply_or_undo(params, grads)
        return loss, (out.argmax(axis=-1) == self.loss.labels(tb)).sum()

    def _apply_or_undo(self, params, grads) -> None:
        """The optimizer's update, undone if it made a weight or a slot non-finite: finite
        gradients of ~1e20 still overflow Adam's squared-gradient average. The undo copies weights
        and slots into buffers kept across steps (2.4 MB for the seed model, ~0.1 ms a step on
        the CPU)."""
        opt = self.optimizer
        iterations, slots = opt.iterations, opt.slots
        arrays = params + [a for s in slots or [] for a in s.values()]
        if [a.shape for a in self._undo] != [a.shape for a in arrays]:
            self._undo = [self.backend.xp.empty_like(a) for a in arrays]
        for saved, a in zip(self._undo, arrays):
            saved[...] = a
        opt.apply(params, grads)
        arrays = params + [a for s in opt.slots for a in s.values()]  # slots exist now
        if _all_finite(arrays):
            return
        xp = self.backend.xp
        names = [f'weight "{k}" of layer "{layer.name}"' for layer, k in self.trainable_params()]
        names += [f'the slot "{n}" of {names[i]}' for i, s in enumerate(opt.slots) for n in s]
        bad = next(name for name, a in zip(names, arrays) if not bool(xp.isfinite(a).all()))
        for saved, a in zip(self._undo, arrays):
            a[...] = saved
        opt.iterations, opt.slots = iterations, slots
        raise NonFiniteError(
            f"the {type(opt).__name__} update made {bad} not "
            "finite (its gradients were finite); the update was undone"
        )

    def _diagnose(self, xb, tb, logits, loss) -> str:
        """Which layer first gave a non-finite value on this batch, for the stop message.
        Runs only after a failure, so it costs nothing while training is healthy."""
        xp = self.backend.xp
        x = xb
        for layer in self.layers:
            x = layer.forward(x, training=False)  # no dropout: draws would move the generator
            if not bool(xp.isfinite(x).all()):
                return f'the output of layer "{layer.name}" ({type(layer).__name__}) is not finite'
        if not bool(xp.isfinite(loss)):
            return f"the loss is {float(loss)} although every layer's output is finite"
        for layer, k in reversed(self.trainable_params()):
            if not bool(xp.isfinite(layer.grads[k]).all()):
                return (
                    f'the gradient of layer "{layer.name}" ({type(layer).__name__}) '
                    f'weight "{k}" is not finite'
                )
        return "a value is not finite"

    # -- input checks --------------------------------------------------------------------------

    def _check_x(self, x, what: str = "x"):
        """x as an array of the model's input shape, floats cast to floatx, checked for NaN/inf.
        Integer images (uint8) stay integer here and are cast batch by batch."""
        xp = self.backend.xp
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            x = np.asarray(x)
        if x.dtype == bool or not (
            np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
        ):
            raise ValueError(f"{what} must hold real numbers. Received: dtype {x.dtype}")
        if x.ndim == 0 or x.shape[0] == 0:
            raise ValueError(f"{what} is empty. Received: shape {x.shape}")
        if self.input_shape is None:
            self.build(x.shape[1:])
        if tuple(x.shape[1:]) != self.input_shape:
            first = self.layers[0] if self.layers else None
            hint = ""
            if tuple(x.shape[1:]) + (1,) == self.input_shape:
                hint = f"; add a channel axis: {what}[..., None]"
            raise ValueError(
                f'Input to layer "{first.name if first else self.name}" has the wrong shape: '
                f"expected {(None, *self.input_shape)}. Received: {what} shape {tuple(x.shape)}{hint}"
            )
        if np.issubdtype(x.dtype, np.floating):
            x = xp.asarray(x, dtype=floatx())
            # in slices: one flag per value of the whole set would be a copy as large as x/4
            size = max(1, math.prod(x.shape[1:]))
            step = max(1, (1 << 22) // size)
            for lo in range(0, x.shape[0], step):
                finite = xp.isfinite(x[lo : lo + step])
                if not bool(finite.all()):
                    bad = lo + int(xp.argmin(finite.reshape(-1))) // size
                    raise ValueError(f"{what} contains NaN or inf values (first in sample {bad})")
        return x

    def _check_y(self, y, n: int, what: str = "y"):
        y = np.asarray(y) if not hasattr(y, "shape") else y
        if y.shape[:1] != (n,):
            raise ValueError(
                f"x and {what} must have the same number of samples. Received: {n} inputs and "
                f"{y.shape[0] if y.ndim else 'a scalar'} targets"
            )
        self.loss.check_target(self.backend.to_numpy(y), self.output_shape[-1])
        return y

    def _require_compiled(self, method: str) -> None:
        if self.loss is None:
            raise RuntimeError(f"You must call compile() before {method}()")
        if not self.layers:
            raise ValueError("The model has no layers: add() some before training")

    def _batches(self, n: int, batch_size: int):
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(
                f"batch_size must be a positive int. Received: batch_size={batch_size!r}"
            )
        return [(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]

    def _as_batch(self, x, lo, hi):
        return self.backend.asarray(x[lo:hi]).astype(floatx(), copy=False)

    # -- Keras API -----------------------------------------------------------------------------

    def fit(
        self,
        x,
        y,
        batch_size: int = 32,
        epochs: int = 1,
        verbose: int = 1,
        callbacks=None,
        validation_split: float = 0.0,
        validation_data=None,
        shuffle: bool = True,
        initial_epoch: int = 0,
        terminate_on_nan: bool = True,
    ) -> History:
        """Train for ``epochs - initial_epoch`` epochs; returns the History of the epochs run.

        Training ends early, with the History so far, when a callback sets ``stop_training``,
        on Ctrl-C (at the end of the step under way; a second Ctrl-C interrupts at once) and,
        with ``terminate_on_nan``, at the first step whose loss or gradients are not finite: that
        step is not applied, so the model keeps its last finite weights. ``history.stopped`` then
        says why ("interrupted" or "non-finite") and ``history.message`` says where.
        """
        self._require_compiled("fit")
        x = self._check_x(x)
        y = self._check_y(y, x.shape[0])
        if not 0 <= validation_split < 1:
            raise ValueError(f"validation_split must be in [0, 1). Received: {validation_split!r}")
        if validation_split and validation_data is None:
            cut = int(x.shape[0] * (1 - validation_split))  # Keras takes the last samples
            validation_data, x, y = (x[cut:], y[cut:]), x[:cut], y[:cut]
        if validation_data is not None:
            if len(validation_data) != 2:
                raise ValueError("validation_data must be a tuple (x_val, y_val)")
            vx = self._check_x(validation_data[0], "validation x")
            vy = self._check_y(validation_data[1], vx.shape[0], "validation y")
        batches = self._batches(x.shape[0], batch_size)
        if not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"epochs must be a non-negative int. Received: epochs={epochs!r}")
        if not isinstance(initial_epoch, int) or not 0 <= initial_epoch <= epochs:
            raise ValueError(
                f"initial_epoch must be an int in [0, epochs={epochs}]. "
                f"Received: initial_epoch={initial_epoch!r}"
            )
        callbacks = list(callbacks or [])
        check_finite = terminate_on_nan or any(isinstance(c, TerminateOnNaN) for c in callbacks)
        history = History()
        params = {"epochs": epochs, "steps": len(batches), "verbose": verbose}
        cbs = CallbackList([history, *callbacks], self, params)  # checks each is a Callback

        # All checks passed: from here on, the model changes.
        xp, units, dtype = self.backend.xp, self.output_shape[-1], floatx()
        logits = self._prepare_head()
        x_dev = self.backend.asarray(x)  # the whole set moves to the device once
        t_dev = self.loss.target(self.backend.to_numpy(y), units, xp, dtype)
        self.history = history
        resumed, self._resume = self._resume, None
        self.resumed_from = resumed if resumed and resumed["epoch"] == initial_epoch else None
        if self.resumed_from:  # continuing a checkpoint's run: its History goes on from there
            self.history.epoch = list(range(initial_epoch))
            self.history.history = {k: list(v) for k, v in resumed["history"].items()}
        self.stop_training = False
        cbs.on_train_begin()
        with _deferred_interrupt() as interrupted:
            for epoch in range(initial_epoch, epochs):
                cbs.on_epoch_begin(epoch)
                # Each batch gathers its rows through the permutation: a copy of the whole
                # shuffled set per epoch would cost as much memory as the data (188 MB for MNIST)
                order = self.backend.asarray(rng().permutation(x.shape[0])) if shuffle else None
                bar = self._progbar(len(batches), verbose, epoch, epochs, batch_size)
                total_loss = xp.zeros((), dtype=np.float64)
                total_correct = xp.zeros((), dtype=np.int64)
                seen = 0
                for step, (lo, hi) in enumerate(batches):
                    rows = slice(lo, hi) if order is None else order[lo:hi]
                    try:
                        loss, correct = self._train_step(
                            x_dev[rows].astype(dtype, copy=False), t_dev[rows], logits, check_finite
                        )
                    except NonFiniteError as e:
                        self._stop(
                            bar, "non-finite", f"step {step + 1} of epoch {epoch + 1}: {e}", cbs
                        )
                        return self.history
                    total_loss += loss * np.float64(hi - lo)  # float64: no overflow
                    total_correct += correct
                    seen = hi

                    def running(total_loss=total_loss, total_correct=total_correct, seen=seen):
                        logs = {"loss": float(total_loss) / seen}
                        if self.metrics:
                            logs = {"accuracy": float(total_correct) / seen, **logs}
                        return logs

                    if bar and step + 1 < len(batches):  # the last step's line waits for validation
                        bar.update(step + 1, running, items=seen)
                    cbs.on_train_batch_end(step, None)
                    # the last step goes on to validation and on_epoch_end: the epoch is done
                    if step + 1 < len(batches) and (interrupted() or self.stop_training):
                        why = "interrupted" if interrupted() else "stopped"
                        what = "interrupted" if interrupted() else "a callback stopped training"
                        where = f"step {step + 1}/{len(batches)} of epoch {epoch + 1}"
                        self._stop(bar, why, f"{what} after {where}", cbs)
                        return self.history
                logs = running()
                if bar:
                    bar.stop_clock()
                if validation_data is not None:
                    val = self.evaluate(vx, vy, batch_size=batch_size, verbose=0, return_dict=True)
                    logs.update({f"val_{k}": v for k, v in val.items()})
                if bar:
                    bar.update(len(batches), logs, items=seen, finalize=True)
                cbs.on_epoch_end(epoch, logs)
                if interrupted():
                    self._stop(None, "interrupted", f"interrupted after epoch {epoch + 1}", cbs)
                    return self.history
                if self.stop_training:
                    break
        cbs.on_train_end()
        return self.history

    def _stop(self, bar, why: str, message: str, cbs) -> None:
        """End fit early: say why on stderr, with where the last checkpoint is, and record it."""
        saved = [cb.last_saved for cb in cbs.callbacks if getattr(cb, "last_saved", None)]
        if why != "stopped":
            message += (
                f". The last checkpoint is {saved[-1]}" if saved else ". No checkpoint was written"
            )
        if why == "non-finite":
            message += "; the model keeps its weights from before this step"
        self.history.stopped, self.history.message = why, message
        if bar:
            bar.newline()
        if why != "stopped":
            print(f"Training stopped: {message}", file=sys.stderr, flush=True)
        cbs.on_train_end()

    def _progbar(self, steps, verbose, epoch, epochs, batch_size):
        if not verbose:
            return None
        print(f"Epoch {epoch + 1}/{epochs}")
        interval = 0.05 if self.backend.name == "numpy" else 0.25  # reading values syncs a GPU
        return Progbar(steps, interval=interval, items_per_step=batch_size)

    def train_on_batch(self, x, y):
        """One step on one batch; returns [loss, accuracy] (or loss alone without metrics)."""
        self._require_compiled("train_on_batch")
        x = self._check_x(x)
        y = self._check_y(y, x.shape[0])
        t = self.loss.target(
            self.backend.to_numpy(y), self.output_shape[-1], self.backend.xp, floatx()
        )
        loss, correct = self._train_step(self._as_batch(x, 0, x.shape[0]), t, self._prepare_head())
        return self._result({"loss": float(loss), "accuracy": float(correct) / x.shape[0]})

    def _result(self, logs: dict, return_dict: bool = False):
        if return_dict:
            return logs if self.metrics else {"loss": logs["loss"]}
        return [logs["loss"], logs["accuracy"]] if self.metrics else logs["loss"]

    def evaluate(self, x, y, batch_size: int = 32, verbose: int = 1, return_dict: bool = False):
        """Mean loss and accuracy over (x, y), in batches; no weight changes."""
        self._require_compiled("evaluate")
        x = self._check_x(x)
        y = self._check_y(y, x.shape[0])
        batches = self._batches(x.shape[0], batch_size)
        logits = self._prepare_head()
        xp, units, dtype = self.backend.xp, self.output_shape[-1], floatx()
        bar = Progbar(len(batches), items_per_step=batch_size) if verbose else None
        # Sums stay on the device: reading them would sync a GPU every batch
        total_loss = xp.zeros((), dtype=np.float64)
        total_correct = xp.zeros((), dtype=np.int64)
        y_host = self.backend.to_numpy(y)
        for step, (lo, hi) in enumerate(batches):
            out = self._forward(self._as_batch(x, lo, hi), training=False)
            t = self.loss.target(y_host[lo:hi], units, xp, dtype)
            loss, _ = self.loss.forward_backward(out, t, logits=logits)
            total_loss += loss * (hi - lo)
            total_correct += (out.argmax(axis=-1) == self.loss.labels(t)).sum()
            if bar:
                bar.update(
                    step + 1,
                    lambda hi=hi, c=total_correct, l=total_loss: {
                        "accuracy": float(c) / hi,
                        "loss": float(l) / hi,
                    },
                    items=hi,
                )
        n = x.shape[0]
        return self._result(
            {"loss": float(total_loss) / n, "accuracy": float(total_correct) / n}, return_dict
        )

    def predict(self, x, batch_size: int = 32, verbose: int = 1) -> np.ndarray:
        """The model's outputs (class probabilities for a softmax head) as a NumPy array."""
        if not self.layers:
            raise ValueError("The model has no layers: add() some before predict()")
        x = self._check_x(x)
        batches = self._batches(x.shape[0], batch_size)
        logits = self._prepare_head()
        bar = Progbar(len(batches), items_per_step=batch_size) if verbose else None
        outs = []
        for step, (lo, hi) in enumerate(batches):
            yb = self._forward(self._as_batch(x, lo, hi), training=False)
            outs.append(ops.softmax(yb) if logits else yb)
            if bar:
                bar.update(step + 1, items=hi)
        return self.backend.to_numpy(self.backend.xp.concatenate(outs))  # one copy to the host

    def predict_on_batch(self, x) -> np.ndarray:
        return self.predict(x, batch_size=max(len(x), 1), verbose=0)

    # -- weights and description ---------------------------------------------------------------

    def get_weights(self) -> list[np.ndarray]:
        """Every layer's weights in Keras order and layouts, as NumPy arrays."""
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights) -> None:
        """The inverse of get_weights; all shapes are checked before any weight changes."""
        weights = list(weights)
        expected = [(layer, n) for layer in self.layers for n in layer.weight_names]
        if len(weights) != len(expected):
            raise ValueError(
                f"The model has {len(expected)} weight arrays. Received: {len(weights)}"
            )
        for (layer, n), w in zip(expected, weights):
            if tuple(np.shape(w)) != layer._weight(n).shape:
                raise ValueError(
                    f'Layer "{layer.name}": weight "{n}" must have shape {layer._weight(n).shape}. '
                    f"Received: shape {tuple(np.shape(w))}"
                )
        i = 0
        for layer in self.layers:
            k = len(layer.weight_names)
            layer.set_weights(weights[i : i + k])
            i += k

    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self.layers)

    def summary(self, print_fn=print) -> None:
        """A Keras-like table: each layer, its output shape and parameter count, then the totals."""
        rows, shape = [], self.input_shape
        for layer in self.layers:
            shape = layer.compute_output_shape(shape) if shape is not None else None
            out = str((None, *shape)) if shape is not None else "?"
            rows.append(
                (f"{layer.name} ({type(layer).__name__})", out, f"{layer.count_params():,}")
            )
        w = [
            max([len(h), *(len(r[i]) for r in rows)]) + 2
            for i, h in enumerate(("Layer (type)", "Output Shape", "Param #"))
        ]
        line = lambda a, b, c, fill="─": f"{a}{fill * w[0]}{b}{fill * w[1]}{b}{fill * w[2]}{c}"  # noqa: E731
        cell = lambda r: f"│ {r[0]:<{w[0] - 2}} │ {r[1]:<{w[1] - 2}} │ {r[2]:>{w[2] - 2}} │"  # noqa: E731
        total = self.count_params()
        trainable = sum(
            int(p.size) for layer in self.trainable_layers() for p in layer.params.values()
        )
        itemsize = np.dtype(floatx()).itemsize
        out = [
            f'Model: "{self.name}"',
            line("┌", "┬", "┐"),
            cell(("Layer (type)", "Output Shape", "Param #")),
            line("├", "┼", "┤"),
        ]
        out += [cell(r) for r in rows]
        out += [
            line("└", "┴", "┘"),
            f" Total params: {total:,} ({_bytes(total * itemsize)})",
            f" Trainable params: {trainable:,} ({_bytes(trainable * itemsize)})",
            f" Non-trainable params: {total - trainable:,} ({_bytes((total - trainable) * itemsize)})",
        ]
        print_fn("\n".join(out))

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "layers": [
                {"class_name": type(layer).__name__, "config": layer.get_config()}
                for layer in self.layers
            ],
        }

    @classmethod
    def from_config(cls, config: dict, backend=None) -> Sequential:
        model = cls(name=config.get("name", "sequential"), backend=backend)
        if config.get("input_shape") is not None:
            model.input_shape = tuple(config["input_shape"])
        for entry in config["layers"]:
            model.add(deserialize(entry))
        return model

    def save(self, path) -> None:
        """One file: architecture (JSON), weights, compile settings and a format version."""
        from minicnn.saving import save_model

        save_model(self, path)

    def __repr__(self) -> str:
        return f"<Sequential name={self.name!r} layers={len(self.layers)} backend={self.backend.name!r}>"


def _all_finite(arrays) -> bool:
    """True if no array holds NaN or inf; one read on the host (one sync on a GPU)."""
    xp = get_array_module(arrays[0])
    ok = xp.isfinite(arrays[0]).all()
    for a in arrays[1:]:
        ok = ok & xp.isfinite(a).all()
    return bool(ok)


@contextlib.contextmanager
def _deferred_interrupt():
    """While fit runs, Ctrl-C sets a flag that the loop reads after each step, so a step is
    never cut in half; the handler then steps aside, and a second Ctrl-C interrupts at once."""
    hit = []
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield lambda: False  # only the main thread may set handlers; None: not set by Python
        return

    def handler(signum, frame):
        hit.append(signum)
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(hit)
    finally:
        signal.signal(signal.SIGINT, previous)


def _bytes(n: int) -> str:
    units = ("B", "KB", "MB", "GB")
    k = 0
    while n >= 1024 and k < len(units) - 1:
        n, k = n / 1024, k + 1
    return f"{n:.2f} {units[k]}"
