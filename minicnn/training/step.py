"""One optimisation step, the whole engine in four phases:

    forward -> loss and its gradient -> backward -> update

``TrainStep.__call__`` runs them on one batch, each phase a method, so later work plugs in where it
belongs: data-parallel training replaces ``reduce_gradients`` with an all-reduce over processes
(``minicnn.distributed``), and learning-rate schedules and weight averaging (EMA) belong to the
optimizer, which ``apply`` calls. Forward and backward run the model's plan for this batch
size (``model.plan``), the same one for both. With ``check_finite``, a step whose loss,
gradients or update is not finite changes nothing and raises ``NonFiniteError``.
"""

from __future__ import annotations

from minicnn import constraints, regularizers
from minicnn.backend import get_array_module


class NonFiniteError(ArithmeticError):
    """A training step produced NaN or inf; raised before the step changed any weight."""


class TrainStep:
    """``step(xbs, tbs, wbs) -> (loss, per-output losses)`` as device values, for ``model``;
    xbs, tbs and wbs are lists, one batch per input and per output (None where an output has
    no loss or no sample weights); the step also adds the batch to the compiled metrics.
    ``check_finite``: check the loss and gradients before the update, and the update after
    it (one read of a flag per step, which syncs a GPU)."""

    def __init__(self, model, check_finite: bool = False):
        self.model = model
        self.check_finite = check_finite
        self.params = model.trainable_params()  # (layer, name), the optimizer's order
        match_slots(model.optimizer, self.params)
        self._undo: list = []  # copies of weights and optimizer slots, kept across steps
        self.interrupt = lambda: False  # fit sets this to its Ctrl-C flag

    @property
    def interrupted(self) -> bool:
        """Whether training should stop after this step for Ctrl-C (on every process alike)."""
        return self.interrupt()

    def __call__(self, xbs, tbs, wbs=None):
        loss, parts, grads = self.gradients(xbs, tbs, wbs)
        loss, grads = self.reduce_gradients(grads, loss, xbs[0].shape[0])
        if self.check_finite and not all_finite([loss, *(g for g in grads if g is not None)]):
            raise NonFiniteError(self._diagnose(xbs, loss, grads))
        self.apply([layer.params[k] for layer, k in self.params], grads)
        return loss, parts

    def gradients(self, xbs, tbs, wbs=None):
        """Forward, loss (and the metrics' update), backward on this batch: (loss with the
        regularization penalties, per-output losses, gradients in the order of ``self.params``,
        None for a weight no loss reaches)."""
        model = self.model
        plan = model.plan(xbs[0].shape[0], True)
        outs, tape = plan.forward(xbs, True)
        n = plan.n_outputs
        loss, parts, gouts = model.objectives.forward_backward(outs[:n], tbs, plan.logits, wbs)
        loss, extra = added_losses(
            loss, outs[n:]
        )  # add_loss terms of traced calls, as Keras adds them
        model.objectives.update_metrics(outs[:n], tbs, plan.logits, wbs)
        grads = plan.backward(tape, gouts + extra)
        grads = [grads.get((id(layer), k)) for layer, k in self.params]
        # Keras's compute_loss: the weights' regularization penalties join the loss (not the
        # per-output parts), and their gradients the weights'
        weights = [layer.params[k] for layer, k in self.params]
        loss, grads = regularizers.penalties(self.params, weights, loss, grads)
        return loss, parts, grads

    def reduce_gradients(self, grads: list, loss, n: int):
        """The gradients and loss the update and the checks use: this process's own. Data-
        parallel training (``minicnn.distributed``) averages them over every process here,
        weighted by each one's ``n`` samples."""
        return loss, grads

    def apply(self, params: list, grads: list) -> None:
        """The optimizer's update, then the weights' constraints; undone (with ``check_finite``) if it made a weight or a slot
        non-finite: finite gradients of ~1e20 still overflow Adam's squared-gradient average.
        The undo copies weights and slots into buffers kept across steps (2.4 MB for the seed
        model, ~0.1 ms a step on the CPU)."""
        opt = self.model.optimizer
        if not self.check_finite:
            opt.apply(params, grads)
            constraints.apply(self.params, params, grads)  # after the update, as Keras does
            return
        iterations, slots = opt.iterations, opt.slots
        arrays = params + [a for s in slots or [] for a in s.values()]
        if [a.shape for a in self._undo] != [a.shape for a in arrays]:
            self._undo = [self.model.backend.xp.empty_like(a) for a in arrays]
        for saved, a in zip(self._undo, arrays):
            saved[...] = a
        opt.apply(params, grads)
        constraints.apply(self.params, params, grads)
        arrays = params + [a for s in opt.slots for a in s.values()]  # slots exist now
        if all_finite(arrays):
            return
        xp = self.model.backend.xp
        names = [f'weight "{k}" of layer "{layer.name}"' for layer, k in self.params]
        names += [f'the slot "{n}" of {names[i]}' for i, s in enumerate(opt.slots) for n in s]
        bad = next(name for name, a in zip(names, arrays) if not bool(xp.isfinite(a).all()))
        for saved, a in zip(self._undo, arrays):
            a[...] = saved
        opt.iterations, opt.slots = iterations, slots
        raise NonFiniteError(
            f"the {type(opt).__name__} update made {bad} not "
            "finite (its gradients were finite); the update was undone"
        )

    def _diagnose(self, xbs, loss, grads) -> str:
        """Which layer first gave a non-finite value on this batch, for the stop message.
        Runs only after a failure, so it costs nothing while training is healthy."""
        model = self.model
        xp = model.backend.xp

        def watch(step, y):
            if not bool(xp.isfinite(y).all()):
                layer = step.layers[0]
                raise _FoundError(f'the output of layer "{layer.name}" ({type(layer).__name__}) is not finite')  # fmt: skip

        if xbs[0].shape[0]:
            try:  # inference: no dropout draws, which would move the generator
                model.plan(xbs[0].shape[0], False).forward(xbs, False, watch)
            except _FoundError as e:
                return str(e)
        if not bool(xp.isfinite(loss)):
            return f"the loss is {float(loss)} although every layer's output is finite"
        for (layer, k), g in reversed(list(zip(self.params, grads))):
            if g is not None and not bool(xp.isfinite(g).all()):
                return f'the gradient of layer "{layer.name}" ({type(layer).__name__}) weight "{k}" is not finite'  # fmt: skip
        return "a value is not finite"


def match_slots(opt, params: list) -> None:
    """Keep the optimizer's slots (kept by position) on the weights they were built for when
    layers were frozen or unfrozen since: a weight frozen now leaves its slots behind; a weight
    the optimizer never saw cannot join it, as in Keras, until compile() gives a new one."""
    keys = [(id(layer), k) for layer, k in params]
    known = getattr(opt, "param_keys", None)
    if opt.slots is not None and known is not None and known != keys:
        if not set(keys) <= set(known):
            new = [f'"{layer.name}" weight "{k}"' for layer, k in params if (id(layer), k) not in known]  # fmt: skip
            raise ValueError(f"The optimizer cannot recognize {', '.join(new)}: layers were made trainable after it was built. Call compile() again with a new optimizer for the change to take effect")  # fmt: skip
        opt.slots = [opt.slots[known.index(k)] for k in keys]
    opt.param_keys = keys


def added_losses(loss, terms: list):
    """The loss with the add_loss ``terms`` summed in, and each term's gradient (ones)."""
    grads = []
    for term in terms:
        loss = loss + term.sum()
        grads.append(get_array_module(term).ones_like(term))
    return loss, grads


class _FoundError(Exception):
    pass


def all_finite(arrays) -> bool:
    """True if no array holds NaN or inf; one read on the host (one sync on a GPU)."""
    if not arrays:  # a model frozen whole updates nothing
        return True
    xp = get_array_module(arrays[0])
    ok = xp.isfinite(arrays[0]).all()
    for a in arrays[1:]:
        ok = ok & xp.isfinite(a).all()
    return bool(ok)
