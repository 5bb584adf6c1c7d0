"""Sequential: what a model is. Its layers, how they are built, the forward pass and predict,
its weights, summary and config.

How a model is trained (fit, evaluate, the training step, callbacks) lives in
``minicnn.training``, and files in ``minicnn.saving``; ``fit`` and ``save`` here hand the work to
them, so this module imports neither.
"""

from __future__ import annotations

import numpy as np

from minicnn import data, losses, ops, optimizers
from minicnn import metrics as metrics_module
from minicnn.backend import floatx, get_backend
from minicnn.layers import InputLayer, Layer, deserialize
from minicnn.layers.base import ActivationMixin
from minicnn.layers.fusion import fused_steps
from minicnn.progbar import Progbar


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
        self.history = None  # the History of the last fit
        self._resume: dict | None = None  # set by load_checkpoint for the next fit
        self.resumed_from: dict | None = None  # during fit: the checkpoint's training state
        for layer in layers or []:
            self.add(layer)

    # -- building ------------------------------------------------------------------------------

    @property
    def built(self) -> bool:
        return self.input_shape is not None and all(layer.built for layer in self.layers)

    def add(self, layer: Layer) -> None:
        """Append a layer; a Sequential adds its layers in turn (as in Keras's
        ``data_augmentation = keras.Sequential([...])``, then ``model.add(data_augmentation)``)."""
        if isinstance(layer, Sequential):
            if layer.input_shape is not None and not self.layers and self.input_shape is None:
                self.input_shape = layer.input_shape
            for inner in layer.layers:
                self.add(inner)
            return
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
        self.layers.append(layer)
        self._mark_input_grads()

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
        for layer in self.layers:
            if not layer.built:
                layer.build(shape, self.backend)
            shape = layer.compute_output_shape(shape)
        self._mark_input_grads()

    def compile(
        self,
        optimizer="rmsprop",
        loss=None,
        loss_weights=None,
        metrics=None,
        weighted_metrics=None,
        run_eagerly=False,
        steps_per_execution=1,
        jit_compile="auto",
        auto_scale_loss=True,
    ) -> None:
        """Keras 3's signature and defaults: RMSprop; a loss by name or instance; metrics:
        accuracy or none. One output, so no loss_weights; run_eagerly, jit_compile and
        auto_scale_loss change nothing here (there is no graph to compile, no mixed precision)."""
        if loss is None:
            raise ValueError(f"compile() needs a loss: one of {sorted(losses._ALL)}")
        if loss_weights is not None:
            hint = (
                " (the third argument of compile() is loss_weights, as in Keras 3: "
                "pass metrics=[...] by name)"
                if isinstance(loss_weights, (list, tuple))
                and any(isinstance(w, str) for w in loss_weights)  # fmt: skip
                else ""
            )
            raise ValueError(f"loss_weights is for models with several outputs; a Sequential has one. Received: loss_weights={loss_weights!r}{hint}")  # fmt: skip
        if weighted_metrics:
            raise ValueError(f"weighted_metrics (sample weights) are not supported. Received: weighted_metrics={weighted_metrics!r}")  # fmt: skip
        if steps_per_execution != 1:
            raise ValueError(f"steps_per_execution must be 1: each step runs as it is called. Received: steps_per_execution={steps_per_execution!r}")  # fmt: skip
        names = [metrics_module.get(m) for m in list(metrics or [])]  # checked before any change
        self.optimizer = optimizers.get(optimizer)
        self.loss = losses.get(loss)
        self.metrics = ["accuracy"] if names else []

    def _mark_input_grads(self) -> None:
        """A layer computes its input gradient only if a trained layer comes before it: the
        augmentation layers and the first convolution of a model skip that work, and backward
        stops there."""
        need = False
        for layer in self.layers:
            layer.needs_input_grad = need
            need = need or (layer.trainable and bool(layer.params))

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
        self._mark_input_grads()  # trainable may have changed since the layers were added
        return fused

    # -- the forward and backward passes ----------------------------------------------------------------------------

    def _steps(self, training: bool = True) -> list[tuple[Layer, dict]]:
        """The layers as the passes run them: see ``minicnn.layers.fusion``."""
        return fused_steps(self.layers, training)

    def forward(self, x, training: bool = False):
        """Every layer in turn; ``training`` turns on Dropout and keeps what backward needs."""
        for layer, extra in self._steps(training):
            x = layer.forward(x, training=training, **extra)
        return x

    def backward(self, g) -> None:
        """The gradient of the output, ``g``, back through every layer; each fills its grads."""
        for layer, _ in reversed(self._steps()):
            g = layer.backward(g)
            if not layer.needs_input_grad:
                break  # no trained layer before this one: nothing below needs a gradient

    def trainable_layers(self) -> list[Layer]:
        return [layer for layer in self.layers if layer.trainable and layer.params]

    def trainable_params(self) -> list[tuple[Layer, str]]:
        """(layer, name) of every parameter the optimiser updates, in the order it keeps them."""
        return [(layer, k) for layer in self.trainable_layers() for k in layer.params]

    # -- input checks --------------------------------------------------------------------------

    def check_input(self, x, what: str = "x"):
        """x checked and cast for this model (built from x's shape if it is not yet)."""
        if self.input_shape is None:
            self.build(data.as_real_array(x, what).shape[1:])
        owner = self.layers[0].name if self.layers else self.name
        return data.check_features(x, self.input_shape, self.backend.xp, what, owner)

    def check_target(self, y, n: int, what: str = "y"):
        return data.check_targets(y, n, self.loss, self.output_shape[-1], self.backend, what)

    def require_compiled(self, method: str) -> None:
        if self.loss is None:
            raise RuntimeError(f"You must call compile() before {method}()")
        if not self.layers:
            raise ValueError("The model has no layers: add() some before training")

    def as_batch(self, x, lo: int, hi: int):
        return self.backend.asarray(x[lo:hi]).astype(floatx(), copy=False)

    # -- training, in minicnn.training ---------------------------------------------------------

    def fit(self, x, y, *args, **kwargs):
        """Train on (x, y): ``minicnn.training.fit``, Keras's arguments."""
        from minicnn import training

        return training.fit(self, x, y, *args, **kwargs)

    def evaluate(self, x, y, *args, **kwargs):
        """Mean loss and accuracy over (x, y): ``minicnn.training.evaluate``."""
        from minicnn import training

        return training.evaluate(self, x, y, *args, **kwargs)

    def train_on_batch(self, x, y):
        """One step on one batch: ``minicnn.training.train_on_batch``."""
        from minicnn import training

        return training.train_on_batch(self, x, y)

    def result(self, logs: dict, return_dict: bool = False):
        """Keras's return value for ``logs``: a dict, or [loss, accuracy], or the loss alone."""
        if return_dict:
            return logs if self.metrics else {"loss": logs["loss"]}
        return [logs["loss"], logs["accuracy"]] if self.metrics else logs["loss"]

    # -- inference -----------------------------------------------------------------------------

    def predict(self, x, batch_size: int = 32, verbose: int = 1) -> np.ndarray:
        """The model's outputs (class probabilities for a softmax head) as a NumPy array."""
        if not self.layers:
            raise ValueError("The model has no layers: add() some before predict()")
        x = self.check_input(x)
        batches = data.batch_ranges(x.shape[0], batch_size)
        logits = self._prepare_head()
        bar = Progbar(len(batches), items_per_step=batch_size) if verbose else None
        outs = []
        for step, (lo, hi) in enumerate(batches):
            yb = self.forward(self.as_batch(x, lo, hi), training=False)
            outs.append(ops.softmax(yb) if logits else yb)
            if bar:
                bar.update(step + 1, items=hi)
        return self.backend.to_numpy(self.backend.xp.concatenate(outs))  # one copy to the host

    def __call__(self, x, training: bool = False):
        """The layers applied to ``x`` (the augmentation layers act with ``training=True``);
        the model is built from x's shape if it is not yet."""
        x = self.check_input(x)
        return self.forward(self.as_batch(x, 0, x.shape[0]), training=training)

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

    def export(self, filepath, format: str = "onnx") -> None:  # noqa: A002  (Keras's name)
        """Write the model for inference elsewhere: ``format="onnx"`` (``minicnn.export``)."""
        if format != "onnx":
            raise ValueError(f'minicnn exports format="onnx" only. Received: format={format!r}')
        from minicnn.export import export_model

        export_model(self, filepath)

    def __repr__(self) -> str:
        return f"<Sequential name={self.name!r} layers={len(self.layers)} backend={self.backend.name!r}>"


def _bytes(n: int) -> str:
    units = ("B", "KB", "MB", "GB")
    k = 0
    while n >= 1024 and k < len(units) - 1:
        n, k = n / 1024, k + 1
    return f"{n:.2f} {units[k]}"


def load_model(path, backend=None, compile: bool = True) -> Sequential:
    """The model saved at ``path`` (Keras's ``keras.models.load_model``): ``minicnn.saving``."""
    from minicnn.saving import load_model as load

    return load(path, backend=backend, compile=compile)
