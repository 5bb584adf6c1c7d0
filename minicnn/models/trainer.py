"""The Keras methods a model is driven by: ``compile``, ``fit``, ``evaluate``, ``predict`` and
their one-batch forms, and its weights as arrays. The loops themselves live in
``minicnn.training``; these methods check what they are given and hand the work there."""

from __future__ import annotations

import numpy as np

from minicnn import data, optimizers
from minicnn.backend import floatx
from minicnn.models.compile import Objectives


def _no_samples(tensor):
    """An output of no samples: (0, *the tensor's shape past the batch axis), floats in floatx
    as a batch's outputs are. Refused for an output whose first axis is not the batch's (a sum
    over the samples) or whose other sizes are not known: only running the model tells."""
    shape = tuple(tensor.shape)
    if not shape or shape[0] is not None or None in shape[1:]:
        raise ValueError(f"predict_on_batch() of no samples cannot tell this output's shape without samples: {shape} (the batch axis first, the other sizes known, is what it can give)")  # fmt: skip
    dtype = np.dtype(tensor.dtype or floatx())
    return np.empty((0, *shape[1:]), dtype=floatx() if dtype.kind == "f" else dtype)


def _outputs_in(loss) -> int:
    """How many outputs a loss argument is written for (to check it before the model is built)."""
    return len(loss) if isinstance(loss, (list, tuple, dict)) else 1


class Trainer:
    """Mixed into Model: what a user calls."""

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
        """Keras 3's signature and defaults: RMSprop; losses and metrics by name or object, one
        per output or by output name (``minicnn.models.compile``). run_eagerly, jit_compile and
        auto_scale_loss change nothing here (minicnn runs its own plan; no mixed precision)."""
        if loss is None:
            raise ValueError("compile() needs a loss: give loss=... (a name, a loss object, or one per output)")  # fmt: skip
        if (
            isinstance(loss_weights, (list, tuple))
            and any(isinstance(w, str) for w in loss_weights)  # fmt: skip
        ):
            raise ValueError(
                f"compile(): loss_weights must be numbers. Received: loss_weights={loss_weights!r} "
                "(the third argument of compile() is loss_weights, as in Keras 3: pass "
                "metrics=[...] by name)"
            )
        if steps_per_execution != 1:
            raise ValueError(f"steps_per_execution must be 1: each step runs as it is called. Received: steps_per_execution={steps_per_execution!r}")  # fmt: skip
        args = (loss, loss_weights, metrics, weighted_metrics)
        if self.graph is not None:  # every check first, nothing changed before
            objectives = Objectives(self.output_keys(), *args)
        else:  # a model not built yet: its outputs are named when it is (first fit or build)
            objectives = None
            # the metrics may name outputs: they are checked when the model is built
            Objectives(list(loss) if isinstance(loss, dict) else ["output"] * _outputs_in(loss), *args[:2])  # fmt: skip
        self.optimizer = optimizers.get(optimizer)
        self._compile_args, self.objectives = args, objectives
        self._metrics_built = False  # Keras builds its per-output loss trackers at the first fit
        self._plans.clear()

    # Keras's hooks for a custom loop: minicnn runs its own plan and cannot take them yet
    def train_step(self, data):
        raise NotImplementedError("minicnn runs its own training step; train_step cannot be called")  # fmt: skip

    def test_step(self, data):
        raise NotImplementedError("minicnn runs its own evaluation step; test_step cannot be called")  # fmt: skip

    def predict_step(self, data):
        raise NotImplementedError("minicnn runs its own prediction step; predict_step cannot be called")  # fmt: skip

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        raise NotImplementedError("minicnn computes the compiled loss itself; compute_loss cannot be called")  # fmt: skip

    def check_own_loop(self) -> None:
        """Refuse a model that overrides Keras's step hooks: their gradients would come from
        user code minicnn cannot differentiate (it has no autograd), so they would be ignored."""
        mine = [h for h in ("train_step", "test_step", "predict_step", "compute_loss") if getattr(type(self), h) is not getattr(Trainer, h)]  # fmt: skip
        if mine:
            raise NotImplementedError(
                f"{type(self).__name__} overrides {', '.join(mine)}: minicnn has no autograd to "
                "differentiate a custom training loop, so it runs its own plan instead; put the "
                "model's maths in call() (layers and keras.ops) and its loss in compile()"
            )

    @property
    def objectives(self):
        """What compile set, per output (``models.compile.Objectives``); made when the model
        is built if it was compiled before."""
        made = self.__dict__.get("_objectives")
        if made is None and self.__dict__.get("_compile_args") and self.graph is not None:
            made = self._objectives = Objectives(self.output_keys(), *self._compile_args)
        return made

    @objectives.setter
    def objectives(self, value) -> None:
        self._objectives = value

    @property
    def compiled(self) -> bool:
        return self.__dict__.get("_compile_args") is not None

    @property
    def metrics(self) -> list:
        """The metric objects compile made, every output's in order."""
        return [] if self.objectives is None else self.objectives.metrics

    @property
    def loss(self):
        """The loss of a one-output model (Keras's ``model.loss``); a list for several."""
        if self.objectives is None:
            return None
        ls = self.objectives.losses
        return ls[0] if len(ls) == 1 else ls

    # -- training and scoring, in minicnn.training ---------------------------------------------

    def fit(self, x=None, y=None, *args, **kwargs):
        """Train on (x, y): ``minicnn.training.fit``, Keras's arguments."""
        from minicnn import training

        return training.fit(self, x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """The loss and metrics over (x, y): ``minicnn.training.evaluate``."""
        from minicnn import training

        return training.evaluate(self, x, y, *args, **kwargs)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One step on one batch: ``minicnn.training.train_on_batch``."""
        from minicnn import training

        return training.train_on_batch(self, x, y, sample_weight, class_weight, return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict: bool = False):
        return self.evaluate(x, y, batch_size=max(len(data.first(x)), 1), verbose=0, sample_weight=sample_weight, return_dict=return_dict)  # fmt: skip

    def result(self, logs: dict, return_dict: bool = False):
        """Keras's value for ``logs``: the dict, or the loss alone, or [loss, the per-output
        losses, the metrics] in compile's order."""
        if return_dict:
            return dict(sorted(logs.items()))
        names = ["loss", *(n for _, n in self.objectives.loss_names())]
        names += self.objectives.metric_names()
        values = [logs[n] for n in names if n in logs]  # a dict result logs its own keys
        return values[0] if len(values) == 1 else values

    # -- inference -----------------------------------------------------------------------------

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """The outputs (probabilities for a softmax head) as NumPy arrays: one array, or a list
        or dict like the model's outputs: ``minicnn.training.predict``."""
        from minicnn import training

        self.check_own_loop()
        return training.predict(self, x, batch_size, verbose, steps, callbacks)

    def predict_on_batch(self, x):
        """The outputs for ``x`` as one batch, as NumPy arrays (new ones, as Keras gives):
        predict without its batching and callbacks, which at a few images cost as much as
        the model (Keras's predict_on_batch runs no callbacks either)."""
        from minicnn.training.inputs import is_stream

        self.check_own_loop()
        if is_stream(x):
            raise ValueError(f"predict_on_batch() takes arrays, as Keras's does; got a {type(x).__name__}: use predict() for a generator or PyDataset")  # fmt: skip
        xs = self.check_inputs(x, empty=True)  # predict's checks, but no samples is a batch
        n, be = xs[0].shape[0], self.backend
        if n == 0:  # as Keras's: outputs of no samples, of the shapes the model gives
            return self._restructure([_no_samples(t) for t in self.outputs], self._output_struct)
        outs = self.run([self.as_batch(a, 0, n) for a in xs], training=False)
        # new arrays, never a view of x or of a buffer (from a device, asnumpy is a copy)
        flat = [np.array(o) if isinstance(o, (np.ndarray, np.generic)) else be.to_numpy(o) for o in outs]  # fmt: skip
        return self._restructure(flat, self._output_struct)

    def as_batch(self, x, lo: int, hi: int):
        return self.backend.asarray(x[lo:hi]).astype(floatx(), copy=False)

    # -- weights -------------------------------------------------------------------------------

    def trainable_params(self) -> list:
        """(layer, name) of every weight the optimizer updates, in the order it keeps them: the
        trained weights of each trainable layer, none when the model itself is frozen."""
        if not self.trainable:
            return []
        return [(layer, k) for layer in self.leaf_layers() if layer.trainable for k in layer.params]

    @property
    def weights(self) -> list:
        """Keras's variables of every layer, in get_weights's order (views of the arrays)."""
        from minicnn.variables import weights_of

        return weights_of(self.leaf_layers())

    @property
    def trainable_weights(self) -> list:
        """What fit trains: the trained weights of trainable layers (none if the model is
        frozen). As in Keras, a layer set trainable inside a frozen nested model is included."""
        return [v for v in self.weights if v.trainable] if self.trainable else []

    @property
    def non_trainable_weights(self) -> list:
        return [v for v in self.weights if not v.trainable] if self.trainable else self.weights

    @property
    def metrics_names(self) -> list[str]:
        """Keras 3's: [] before compile; "loss", then "compile_metrics" when compile was given
        metrics; then, once fit or evaluate has run, each output's loss for several outputs."""
        args = self.__dict__.get("_compile_args")
        if args is None:
            return []
        names = ["loss"] + (["compile_metrics"] if args[2] is not None or args[3] is not None else [])  # fmt: skip
        if self.__dict__.get("_metrics_built") and self.objectives is not None:
            names += [n for _, n in self.objectives.loss_names()]
        return names

    def get_weights(self) -> list[np.ndarray]:
        """Every layer's weights in Keras's order and layouts, as NumPy arrays."""
        return [w for layer in self.leaf_layers() for w in layer.own_weights()]

    def set_weights(self, weights) -> None:
        """The inverse of get_weights; every shape is checked before any weight changes."""
        weights = list(weights)
        expected = [(layer, n) for layer in self.leaf_layers() for n in layer.weight_names]
        if len(weights) != len(expected):
            raise ValueError(f"The model has {len(expected)} weight arrays. Received: {len(weights)}")  # fmt: skip
        for (layer, n), w in zip(expected, weights):
            if tuple(np.shape(w)) != layer._weight(n).shape:
                raise ValueError(
                    f'Layer "{layer.name}": weight "{n}" must have shape {layer._weight(n).shape}. '
                    f"Received: shape {tuple(np.shape(w))}"
                )
        i = 0
        for layer in self.leaf_layers():
            k = len(layer.weight_names)
            layer.set_own_weights(weights[i : i + k])
            i += k

    def count_params(self) -> int:
        return sum(layer.count_own_params() for layer in self.leaf_layers())

    @property
    def weight_names(self) -> list[str]:
        """The weights the model holds itself: a subclassed model's own ``add_weight``s (the
        model is then the first of its leaf layers); its layers' are theirs."""
        return [*self.params, *self.state]

    # -- description and files -----------------------------------------------------------------

    def summary(self, print_fn=None, show_plan: bool = False, **kwargs) -> None:
        """Keras's table of layers, output shapes, parameter counts (and "Connected to" for a
        graph); ``show_plan``: also the plan (algorithm and fusion per step) the model runs."""
        from minicnn.models.summary import summary

        summary(self, print_fn or print, show_plan, **kwargs)

    def save(self, filepath, overwrite: bool = True, **kwargs) -> None:
        """One file: architecture, weights, compile settings and the optimizer's state; in
        Keras 3's format for ``x.keras``, else minicnn's (``minicnn.saving``)."""
        from minicnn.saving import save_model

        save_model(self, filepath, **kwargs)

    def save_weights(self, filepath, overwrite: bool = True, max_shard_size=None) -> None:
        """The weights (and the optimizer's variables) in Keras's ``.weights.h5`` layout."""
        if not str(filepath).endswith(".weights.h5"):
            raise ValueError(f"The filename must end in `.weights.h5`. Received: filepath={filepath}")  # fmt: skip
        if max_shard_size is not None:
            raise ValueError(f"save_weights: sharded weights are not supported. Received: max_shard_size={max_shard_size!r}")  # fmt: skip
        from minicnn.keras_format import archive

        archive.write_weights(self, filepath)

    def load_weights(self, filepath, skip_mismatch: bool = False) -> None:
        """Weights from a ``.weights.h5`` or ``.keras`` file in Keras's layout (Keras's or
        minicnn's): all are read and checked before any changes."""
        if skip_mismatch:
            raise ValueError("load_weights: skip_mismatch=True is not supported (every weight must match)")  # fmt: skip
        if not str(filepath).endswith((".weights.h5", ".keras")):
            raise ValueError(f"load_weights reads .weights.h5 and .keras files. Received: filepath={filepath}")  # fmt: skip
        from minicnn.keras_format import archive

        archive.read_weights(self, filepath)

    def get_compile_config(self) -> dict:
        """Keras's: compile's arguments as they were given, serialized as Keras writes them
        ({} when not compiled; ``minicnn.keras_format.compiled``)."""
        if not self.compiled:
            return {}
        from minicnn.keras_format.compiled import compile_to_keras

        return compile_to_keras(self.optimizer, *self._compile_args)

    def compile_from_config(self, config: dict) -> None:
        """Keras's: ``compile`` with what ``get_compile_config`` wrote (Keras's or minicnn's)."""
        from minicnn.keras_format.compiled import compile_from_keras

        compile_from_keras(self, config)

    def to_json(self, **kwargs) -> str:
        """The architecture and compile settings as Keras's JSON (``models.model_from_json``)."""
        from minicnn.keras_format import to_json

        return to_json(self, **kwargs)

    def export(self, filepath, format: str = "onnx") -> None:  # noqa: A002  (Keras's name)
        """Write the model for inference elsewhere: ``format="onnx"`` (``minicnn.export``)."""
        if format != "onnx":
            raise ValueError(f'minicnn exports format="onnx" only. Received: format={format!r}')
        from minicnn.export import export_model

        export_model(self, filepath)
