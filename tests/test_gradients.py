"""Finite-difference checks (float64, central differences) of every backward pass.

Each check projects the output on a fixed random tensor R, so the scalar f = sum(y * R) has
gradient ``backward(R)``; its numerical gradient must match to a relative error of 1e-6.
"""

import numpy as np
import pytest
from gradcheck import build, check, model_gradients, model_loss, numerical_gradient

from minicnn import Sequential, backend, maths
from minicnn.layers import (
    Activation,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPooling2D,
    ReLU,
    Softmax,
)
from minicnn.utils import set_random_seed, to_categorical

pytestmark = pytest.mark.usefixtures("float64")


def sample(size: int, k: int, rng) -> np.ndarray | None:
    """All positions of a small array, ``k`` random ones of a large one."""
    return None if size <= k else rng.choice(size, k, replace=False)


def gradcheck_layer(layer, x_host, backend_name, rng, seed=None, k=60):
    be = backend.get_backend(backend_name)
    xp = be.xp
    build(layer, x_host.shape, be)

    def run():
        if seed is not None:
            set_random_seed(seed)  # the same dropout mask on every call
        return layer.forward(xp.asarray(x_host), training=True)

    y, ctx = run()
    r_host = rng.standard_normal(y.shape)
    r = xp.asarray(r_host)
    gx, grads = layer.backward(r, ctx, True)
    f = lambda: float((run()[0] * r).sum())  # noqa: E731
    name = repr(layer)
    idx = sample(x_host.size, k, rng)
    check(f"{name} dx", be.to_numpy(gx), numerical_gradient(f, x_host, indices=idx), indices=idx)
    assert sorted(grads) == sorted(layer.params), f"{name}: gradients for {sorted(grads)}"
    for pname, p in layer.params.items():
        p_host = be.to_numpy(p).copy()
        analytic = be.to_numpy(grads[pname])

        def f_param(pname=pname, p_host=p_host):
            layer.params[pname][...] = xp.asarray(p_host)
            return f()

        idx = sample(p_host.size, k, rng)
        numeric = numerical_gradient(f_param, p_host, indices=idx)
        f_param()  # put the unperturbed value back before checking the next array
        check(f"{name} d{pname}", analytic, numeric, indices=idx)


@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize(
    "hw,kernel,cin,filters",
    [
        ((5, 5), 3, 1, 2),
        ((6, 7), 2, 3, 4),
        ((7, 6), (3, 2), 2, 3),
        ((8, 8), 4, 4, 5),
        ((9, 10), 5, 3, 2),
        ((6, 5), 3, 6, 1),  # few filters from more channels: "taps" unforced
    ],  # fmt: skip
)
@pytest.mark.parametrize("activation", [None, "relu"])
def test_conv2d(
    backend_name, conv_algorithm, rng, strides, padding, hw, kernel, cin, filters, activation
):
    layer = Conv2D(filters, kernel, strides=strides, padding=padding, activation=activation)
    # Values kept away from ReLU's kink: |pre-activation| rarely within h of 0 with these scales
    x = rng.standard_normal((2, *hw, cin))
    gradcheck_layer(layer, x, backend_name, rng)


def test_conv2d_without_bias(backend_name, conv_algorithm, rng):
    gradcheck_layer(
        Conv2D(3, 3, use_bias=False), rng.standard_normal((2, 5, 5, 2)), backend_name, rng
    )


@pytest.mark.parametrize("activation", [None, "relu", "sigmoid", "tanh", "softmax"])
def test_dense(backend_name, rng, activation):
    gradcheck_layer(Dense(4, activation=activation), rng.standard_normal((3, 5)), backend_name, rng)


@pytest.mark.parametrize("layer", [ReLU, Softmax, lambda: Activation("tanh"), Flatten])
def test_parameterless(backend_name, rng, layer):
    x = rng.standard_normal((3, 4, 5, 2))
    x += np.sign(x) * 0.01  # no entry within 0.01 of ReLU's kink
    gradcheck_layer(layer(), x, backend_name, rng)


@pytest.mark.parametrize(
    "pool,strides,padding",
    [(2, None, "valid"), (3, 2, "valid"), (2, 1, "valid"), (3, 2, "same"), ((2, 3), None, "same")],
)
def test_maxpool(backend_name, rng, pool, strides, padding):
    n = 2 * 7 * 6 * 3
    # Distinct values 0.1 apart, so no window has a near tie that a step of h could flip
    x = (rng.permutation(n) * 0.1).reshape(2, 7, 6, 3)
    gradcheck_layer(MaxPooling2D(pool, strides, padding), x, backend_name, rng)


def test_dropout_fixed_mask(backend_name, rng):
    gradcheck_layer(Dropout(0.4), rng.standard_normal((4, 6)), backend_name, rng, seed=7)


def test_softmax_cross_entropy(backend_name, rng):
    xp = backend.get_backend(backend_name).xp
    z_host = rng.standard_normal((5, 4)) * 3
    t = xp.asarray(to_categorical(rng.integers(0, 4, 5), 4, dtype="float64"))
    _, gz = maths.softmax_cross_entropy(xp.asarray(z_host), t)
    f = lambda: float(maths.softmax_cross_entropy(xp.asarray(z_host), t)[0])  # noqa: E731
    check(
        "softmax cross-entropy dz",
        backend.get_backend(backend_name).to_numpy(gz),
        numerical_gradient(f, z_host),
    )


@pytest.mark.parametrize("loss", ["categorical_crossentropy", "sparse_categorical_crossentropy"])
def test_seed_model_end_to_end(backend_name, rng, loss):
    """The whole seed model: Conv2D 64 -> Conv2D 32 -> Flatten -> Dense 10 softmax, its loss
    differentiated with respect to a sample of every weight array."""
    model = Sequential(
        [
            Conv2D(64, 3, activation="relu", input_shape=(28, 28, 1)),
            Conv2D(32, 3, activation="relu"),
            Flatten(),
            Dense(10, activation="softmax"),
        ],
        backend=backend_name,
    )
    model.compile("sgd", loss)
    be = model.backend
    x = be.asarray(rng.random((3, 28, 28, 1)))
    labels = rng.integers(0, 10, 3)
    y = labels if loss.startswith("sparse") else to_categorical(labels, 10, dtype="float64")
    t = model.loss.target(y, 10, be.xp, "float64")
    masks = []

    def watch(step, out):  # the ReLU masks of every step that applies one
        if "relu" in step.fused or getattr(step.layer, "activation", None) is not None and step.layer.activation.name == "relu":  # fmt: skip
            masks.append(be.to_numpy(out > 0))

    def f():
        masks.clear()
        return model_loss(model, [x], [t], watch)

    def relu_masks():
        return list(masks)

    _, grads = model_gradients(model, [x], [t])
    for layer in model.leaf_layers():
        for pname, p in layer.params.items():
            p_host = be.to_numpy(p).copy()
            analytic = be.to_numpy(grads[(layer, pname)])

            def f_param(layer=layer, pname=pname, p_host=p_host):
                layer.params[pname][...] = be.asarray(p_host)
                return f()

            idx = sample(p_host.size, 25, rng)
            numeric = numerical_gradient(f_param, p_host, h=1e-6, indices=idx, signature=relu_masks)
            f_param()  # put the unperturbed value back before checking the next array
            check(f"seed model {layer.name}.{pname}", analytic, numeric, indices=idx)
