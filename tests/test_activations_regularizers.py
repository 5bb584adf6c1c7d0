"""The activation functions by name, the activation layers (LeakyReLU, ELU, PReLU), and weight
regularizers and constraints: forward against NumPy formulas and PyTorch, every backward by
float64 finite differences (as an Activation layer, inside Dense, and inside a Conv2D as the
plan's fused step runs it), the penalties in the loss fit and evaluate report and in the
gradients, and the constraints holding after every step."""

import math
import os

import numpy as np
import pytest
from gradcheck import build, check, model_gradients, model_loss, numerical_gradient
from referee import need
from test_gradients import gradcheck_layer

import minicnn
from minicnn import Sequential, activations, backend, constraints, kernels, maths, regularizers
from minicnn.layers import ELU, Activation, Conv2D, Dense, Flatten, LeakyReLU, PReLU
from minicnn.training import TrainStep
from minicnn.utils import set_random_seed

# name -> (NumPy formula, PyTorch function name or None)
SELU_A, SELU_S = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
ERF = np.vectorize(math.erf)
FORMULAS = {
    "linear": (lambda x: x, None),
    "relu": (lambda x: np.maximum(x, 0), "relu"),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), "sigmoid"),
    "tanh": (np.tanh, "tanh"),
    "elu": (lambda x: np.where(x >= 0, x, np.expm1(x)), "elu"),
    "selu": (lambda x: SELU_S * np.where(x >= 0, x, SELU_A * np.expm1(x)), "selu"),
    "gelu": (lambda x: 0.5 * x * (1 + ERF(x / np.sqrt(2))), "gelu"),
    "silu": (lambda x: x / (1 + np.exp(-x)), "silu"),
    "swish": (lambda x: x / (1 + np.exp(-x)), "silu"),
    "softplus": (lambda x: np.log1p(np.exp(x)), "softplus"),
    "softsign": (lambda x: x / (1 + np.abs(x)), "softsign"),
    "hard_sigmoid": (lambda x: np.clip(x / 6 + 0.5, 0, 1), "hardsigmoid"),
    "exponential": (np.exp, "exp"),
    "leaky_relu": (lambda x: np.where(x >= 0, x, 0.2 * x), None),
    "relu6": (lambda x: np.clip(x, 0, 6), "relu6"),
}
SMOOTH = [n for n in FORMULAS if n not in ("relu",)]


def away_from_kinks(x):
    """No entry within 0.01 of a kink (0, +-3, 6), so a finite difference sees one side."""
    for kink in (0.0, 3.0, -3.0, 6.0):
        near = np.abs(x - kink) < 0.01
        x[near] += 0.02
    return x


@pytest.fixture
def f64():
    minicnn.set_floatx("float64")
    yield
    minicnn.set_floatx("float32")


@pytest.mark.parametrize("name", FORMULAS)
def test_activation_forward_matches_its_formula(rng, name):
    x = rng.standard_normal((5, 7)) * 4
    formula, _ = FORMULAS[name]
    for dtype, tol in (("float64", 1e-13), ("float32", 2e-6)):
        xd = x.astype(dtype)
        y = activations.get(name).forward(xd.copy())
        assert y.dtype == dtype, f"{name} gives {y.dtype} for {dtype}"
        np.testing.assert_allclose(y, formula(x), rtol=tol, atol=tol)
        np.testing.assert_allclose(
            getattr(activations, name)(xd), y, rtol=0, atol=0
        )  # the function


@pytest.mark.parametrize("name", FORMULAS)
def test_activation_gradients(backend_name, rng, f64, name):
    x = away_from_kinks(rng.standard_normal((3, 4, 5, 2)) * 3)
    gradcheck_layer(Activation(name), x, backend_name, rng)


@pytest.mark.parametrize("name", ["gelu", "silu", "elu", "softplus", "hard_sigmoid", "tanh"])
def test_activations_inside_dense_and_conv2d(backend_name, rng, f64, name):
    """Dense keeps what the activation asks for; a Conv2D's activation runs inside the plan's
    fused ConvStep, whose gradients must be those of the layer."""
    gradcheck_layer(Dense(4, activation=name), rng.standard_normal((3, 5)), backend_name, rng)
    gradcheck_layer(Conv2D(3, 3, activation=name), rng.standard_normal((2, 6, 5, 2)), backend_name, rng)  # fmt: skip
    model = Sequential(
        [minicnn.Input((6, 5, 2)), Conv2D(3, 3, activation=name), Flatten(), Dense(2)]
    )
    model.compile("sgd", "categorical_crossentropy")
    be = model.backend
    x = be.asarray(rng.standard_normal((4, 6, 5, 2)))
    t = be.asarray(np.eye(2)[[0, 1, 1, 0]])
    _, grads = model_gradients(model, [x], [t])
    kernel = model.layers[0].params["kernel"]
    k_host = be.to_numpy(kernel).copy()

    def f():
        kernel[...] = be.asarray(k_host)
        return model_loss(model, [x], [t])

    idx = rng.choice(k_host.size, 20, replace=False)
    numeric = numerical_gradient(f, k_host, indices=idx)
    f()
    check(f"ConvStep {name} dkernel", be.to_numpy(grads[(model.layers[0], "kernel")]), numeric, indices=idx)  # fmt: skip


@pytest.mark.parametrize("name", [n for n, (_, t) in FORMULAS.items() if t])
def test_activations_against_pytorch(rng, name):
    torch = need("torch")
    x = away_from_kinks(rng.standard_normal((4, 9)) * 3)
    xt = torch.tensor(x, requires_grad=True)
    fn = getattr(torch.nn.functional, FORMULAS[name][1], None) or getattr(torch, FORMULAS[name][1])
    yt = fn(xt)
    g = rng.standard_normal(x.shape)
    yt.backward(torch.tensor(g))
    act = activations.get(name)
    y, kept = act.apply(x.copy())
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-13)
    rtol = 1e-7 if name == "hard_sigmoid" else 1e-11  # torch's backward takes 1/6 as a float32
    np.testing.assert_allclose(act.backward(g, kept), xt.grad.numpy(), rtol=rtol, atol=1e-12)


def test_gelu_approximate_and_leaky_relu_against_pytorch(rng):
    torch = need("torch")
    F = torch.nn.functional
    x = rng.standard_normal((3, 8)) * 3
    g = rng.standard_normal(x.shape)
    for act, ref in (
        (activations.GELU(approximate=True), lambda t: F.gelu(t, approximate="tanh")),
        (activations.LeakyReLU(0.3), lambda t: F.leaky_relu(t, 0.3)),
        (activations.ELU(0.7), lambda t: F.elu(t, 0.7)),
    ):
        xt = torch.tensor(x, requires_grad=True)
        ref(xt).backward(torch.tensor(g))
        y, kept = act.apply(x.copy())
        np.testing.assert_allclose(y, ref(torch.tensor(x)).numpy(), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(act.backward(g, kept), xt.grad.numpy(), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_erf_kernel_and_array_code_against_libm(monkeypatch, rng, dtype):
    x = np.concatenate([rng.standard_normal(2001) * 3, np.linspace(-7, 7, 999), [0.0, 3.5, -3.5]])
    x = x.astype(dtype)
    want = ERF(x.astype(np.float64))
    tol = 2e-15 if dtype == "float64" else 3e-7
    if kernels.lookup("erf", np, np.dtype(dtype)) is not None:
        np.testing.assert_allclose(maths.erf(x), want, rtol=0, atol=tol)
    monkeypatch.setenv("MINICNN_KERNELS", "numpy")
    y = maths.erf(x)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, want, rtol=0, atol=tol)


def test_activation_names_and_functions():
    assert activations.get("swish").name == "silu" and activations.get(None).name == "linear"
    assert activations.get(activations.gelu).name == "gelu"
    assert not activations.get("gelu").approximate  # Keras's keras.activations.gelu default
    assert Dense(3, activation=activations.softplus).get_config()["activation"] == "softplus"
    np.testing.assert_allclose(activations.get("elu")(np.array([-1.0, 2.0])), [math.expm1(-1), 2.0])
    assert activations.get("hard_swish").name == "hard_silu"  # Keras's alias
    with pytest.raises(ValueError, match="Unknown activation.*'sparsemax'"):
        Dense(3, activation="sparsemax")
    with pytest.raises(ValueError, match="Unknown activation"):
        Dense(3, activation=lambda x: x)


# -- the activation layers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer",
    [lambda: LeakyReLU(), lambda: LeakyReLU(negative_slope=0.05), lambda: ELU(), lambda: ELU(0.5),
     lambda: PReLU(), lambda: PReLU(shared_axes=[1, 2]), lambda: PReLU(shared_axes=2)],
    ids=["leaky", "leaky-0.05", "elu", "elu-0.5", "prelu", "prelu-per-channel", "prelu-axis2"],
)  # fmt: skip
def test_activation_layer_gradients(backend_name, rng, f64, layer):
    layer = layer()
    x = away_from_kinks(rng.standard_normal((3, 4, 5, 2)))
    if isinstance(layer, PReLU):
        build(layer, x.shape, backend.get_backend(backend_name))
        alpha = layer.params["alpha"]
        alpha[...] = layer.xp.asarray(rng.uniform(-0.5, 0.8, alpha.shape))  # away from 0
    gradcheck_layer(layer, x, backend_name, rng)


def test_activation_layers_against_pytorch(rng):
    torch = need("torch")
    F = torch.nn.functional
    x = rng.standard_normal((2, 5, 4, 3))
    g = rng.standard_normal(x.shape)
    minicnn.set_floatx("float64")
    try:
        alpha = rng.uniform(0.1, 0.5, 3)
        cases = [
            (LeakyReLU(), lambda t: F.leaky_relu(t, 0.3), None),
            (ELU(alpha=0.8), lambda t: F.elu(t, 0.8), None),
            (PReLU(shared_axes=[1, 2]), None, alpha),
        ]
        for layer, ref, a in cases:
            layer.maybe_build((None, *x.shape[1:]))
            xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
            if a is not None:
                layer.params["alpha"][...] = a.reshape(1, 1, 3)
                at = torch.tensor(a, requires_grad=True)
                yt = F.prelu(xt, at)
            else:
                yt = ref(xt)
            yt.backward(torch.tensor(g.transpose(0, 3, 1, 2)))
            y, ctx = layer.forward(x, training=True)
            gx, grads = layer.backward(g, ctx)
            np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), atol=1e-13)
            np.testing.assert_allclose(gx, xt.grad.numpy().transpose(0, 2, 3, 1), atol=1e-12)
            if a is not None:
                np.testing.assert_allclose(grads["alpha"].ravel(), at.grad.numpy(), atol=1e-11)
    finally:
        minicnn.set_floatx("float32")


def test_activation_layers_keras_defaults_and_errors():
    assert LeakyReLU().negative_slope == 0.3 and ELU().alpha == 1.0
    assert LeakyReLU(alpha=0.1).negative_slope == 0.1  # Keras's deprecated name
    assert PReLU().name.startswith("p_re_lu") and LeakyReLU().name.startswith("leaky_re_lu")
    p = PReLU(shared_axes=[1, 2])
    p.maybe_build((None, 6, 5, 4))
    assert p.params["alpha"].shape == (1, 1, 4) and not p.params["alpha"].any()  # zeros
    with pytest.raises(ValueError, match="negative_slope"):
        LeakyReLU(-0.1)
    with pytest.raises(ValueError, match="shared_axes must be ints >= 1"):
        PReLU(shared_axes=[0])
    with pytest.raises(ValueError, match="was built for inputs of shape"):
        p.compute_output_shape((None, 6, 5, 3))
    assert p.compute_output_shape((None, 9, 9, 4)) == (None, 9, 9, 4)  # shared axes: any size


# -- regularizers --------------------------------------------------------------------------------


def test_regularizer_values_gradients_and_names(rng):
    w = rng.standard_normal((4, 3))
    cases = [
        (regularizers.L1(), 0.01 * np.abs(w).sum(), 0.01 * np.sign(w)),
        (regularizers.L2(0.5), 0.5 * (w * w).sum(), 1.0 * w),
        (
            regularizers.L1L2(l1=0.2, l2=0.3),
            0.2 * np.abs(w).sum() + 0.3 * (w * w).sum(),
            0.2 * np.sign(w) + 0.6 * w,
        ),  # fmt: skip
        (regularizers.get("l2"), 0.01 * (w * w).sum(), 0.02 * w),
        (regularizers.get("L1"), 0.01 * np.abs(w).sum(), 0.01 * np.sign(w)),
        (
            regularizers.get({"class_name": "L2", "config": {"l2": 0.1}}),
            0.1 * (w * w).sum(),
            0.2 * w,
        ),
    ]
    for reg, value, grad in cases:
        np.testing.assert_allclose(float(reg(w)), value, rtol=1e-13)
        np.testing.assert_allclose(reg.gradient(w), grad, rtol=1e-13)
        again = regularizers.get(regularizers.serialize(reg))
        assert type(again) is type(reg) and again.get_config() == reg.get_config()
    assert regularizers.get("l1l2").get_config() == {"l1": 0.0, "l2": 0.0}  # Keras 3's name
    assert regularizers.l1_l2 is regularizers.L1L2 and regularizers.l2 is regularizers.L2
    with pytest.raises(ValueError, match="Keras 3 does not know the name 'l1_l2'"):
        regularizers.get("l1_l2")
    with pytest.raises(ValueError, match="plain function has no gradient"):
        Dense(2, kernel_regularizer=lambda w: 0.01 * (w**2).sum())
    with pytest.raises(ValueError, match="finite float >= 0"):
        regularizers.L2(-1)
    with pytest.raises(ValueError, match="plain function has no gradient"):
        Conv2D(2, 3, activity_regularizer=lambda y: (y**2).sum())


def _regularized_model(*more):
    set_random_seed(3)
    model = Sequential([
        minicnn.Input((6, 6, 2)),
        Conv2D(3, 3, kernel_regularizer=regularizers.L1L2(l1=0.03, l2=0.05), bias_regularizer="l2"),
        PReLU(alpha_regularizer=regularizers.L1(0.2), shared_axes=[1, 2]),
        Flatten(),
        Dense(4, activation="softmax", kernel_regularizer=regularizers.L2(0.1)),
        *more,
    ])  # fmt: skip
    model.layers[1].params["alpha"][...] = 0.25
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


def _penalty(model) -> float:
    conv, prelu, _, dense = model.layers
    k, b = conv.get_weights()
    return float(
        0.03 * np.abs(k).sum() + 0.05 * (k**2).sum() + 0.01 * (b**2).sum()
        + 0.2 * np.abs(prelu.get_weights()[0]).sum() + 0.1 * (dense.get_weights()[0] ** 2).sum()
    )  # fmt: skip


def test_fit_and_evaluate_report_the_data_loss_plus_the_penalty(rng):
    model = _regularized_model()
    x = rng.standard_normal((10, 6, 6, 2)).astype(np.float32)
    y = np.arange(10) % 4
    p = model.predict(x, verbose=0)
    data_loss = float(-np.log(p[np.arange(10), y]).mean())
    penalty = _penalty(model)
    assert penalty > 0.1  # large enough to matter
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0), data_loss + penalty, rtol=1e-5)
    weights = model.get_weights()
    history = model.fit(x, y, batch_size=10, epochs=1, verbose=0, shuffle=False)
    model.set_weights(weights)
    np.testing.assert_allclose(history.history["loss"][0], data_loss + penalty, rtol=1e-5)
    model.set_weights(weights)
    np.testing.assert_allclose(model.train_on_batch(x, y), data_loss + penalty, rtol=1e-5)


def test_the_gradient_includes_the_penalty(rng, f64):
    """Finite differences of (data loss + penalty) through the whole model, against the
    gradients one TrainStep computes, for every weight."""
    model = _regularized_model()
    be = model.backend
    x = be.asarray(rng.standard_normal((5, 6, 6, 2)))
    t = be.asarray(np.array([0, 1, 2, 3, 1]))  # the labels, as the sparse loss reads them
    step = TrainStep(model)
    loss, _, grads = step.gradients([x], [t])

    def f():
        return float(step.gradients([x], [t])[0])

    assert abs(float(loss) - f()) < 1e-12
    for (layer, name), g in zip(step.params, grads):
        w = layer.params[name]
        w_host = be.to_numpy(w).copy()

        def fw(w=w, w_host=w_host):
            w[...] = be.asarray(w_host)
            return f()

        idx = None if w_host.size <= 40 else rng.choice(w_host.size, 40, replace=False)
        numeric = numerical_gradient(fw, w_host, indices=idx)
        fw()
        check(f"regularized {layer.name}.{name}", be.to_numpy(g), numeric, indices=idx)


def test_regularizers_and_constraints_survive_save_and_load(tmp_path, rng):
    dense = Dense(
        2, kernel_constraint=constraints.MaxNorm(1.5, axis=[0]), bias_constraint="non_neg"
    )
    model = _regularized_model(dense)
    x = rng.standard_normal((6, 6, 6, 2)).astype(np.float32)
    before = model.evaluate(x, np.arange(6) % 2, verbose=0)
    model.save(tmp_path / "m.minicnn")
    again = minicnn.load_model(tmp_path / "m.minicnn")
    assert isinstance(again.layers[0].kernel_regularizer, regularizers.L1L2)
    assert again.layers[0].weight_regularizers["kernel"].get_config() == {"l1": 0.03, "l2": 0.05}
    assert again.layers[4].weight_constraints["kernel"].get_config() == {"max_value": 1.5, "axis": [0]}  # fmt: skip
    assert isinstance(again.layers[4].weight_constraints["bias"], constraints.NonNeg)
    np.testing.assert_allclose(again.evaluate(x, np.arange(6) % 2, verbose=0), before, rtol=1e-6)


# -- constraints ---------------------------------------------------------------------------------


def test_constraint_formulas(rng):
    w = rng.standard_normal((3, 3, 2, 4)) * 2
    n0 = np.sqrt((w * w).sum(axis=0, keepdims=True))
    n012 = np.sqrt((w * w).sum(axis=(0, 1, 2), keepdims=True))
    eps = 1e-7
    np.testing.assert_allclose(constraints.MaxNorm()(w), w * np.clip(n0, 0, 2) / (eps + n0))
    np.testing.assert_allclose(constraints.MaxNorm(1.0, axis=[0, 1, 2])(w), w * np.clip(n012, 0, 1) / (eps + n012))  # fmt: skip
    np.testing.assert_allclose(constraints.UnitNorm(axis=[0, 1, 2])(w), w / (eps + n012))
    np.testing.assert_allclose(constraints.get("non_neg")(w), np.maximum(w, 0))
    mm = constraints.MinMaxNorm(0.5, 1.5, rate=0.7, axis=0)
    np.testing.assert_allclose(mm(w), w * (0.7 * np.clip(n0, 0.5, 1.5) + 0.3 * n0) / (eps + n0))
    assert isinstance(constraints.get("MaxNorm"), constraints.MaxNorm)
    assert constraints.max_norm is constraints.MaxNorm
    with pytest.raises(ValueError, match="Unknown constraint"):
        Dense(2, kernel_constraint="positive")


def test_constraints_hold_after_every_step(rng):
    set_random_seed(0)
    conv = Conv2D(4, 3, kernel_constraint=constraints.MaxNorm(0.3, axis=[0, 1, 2]), bias_constraint="non_neg")  # fmt: skip
    dense = Dense(3, activation="softmax", kernel_constraint=constraints.UnitNorm(axis=0))
    prelu = PReLU(alpha_constraint="non_neg", alpha_initializer="ones")
    model = Sequential([minicnn.Input((7, 7, 1)), conv, prelu, Flatten(), dense])
    model.compile(minicnn.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    x = rng.standard_normal((16, 7, 7, 1)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    for _ in range(6):
        model.train_on_batch(x, y)
        k, b = conv.get_weights()
        assert np.sqrt((k * k).sum(axis=(0, 1, 2))).max() <= 0.3 + 1e-6
        assert (b >= 0).all() and (prelu.get_weights()[0] >= 0).all()
        np.testing.assert_allclose(np.sqrt((dense.get_weights()[0] ** 2).sum(axis=0)), 1, rtol=1e-5)
    assert (b == 0).any() or (prelu.get_weights()[0] == 0).any()  # a constraint was active
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    k = conv.get_weights()[0]
    assert np.sqrt((k * k).sum(axis=(0, 1, 2))).max() <= 0.3 + 1e-6


def test_unsupported_conv_arguments_fail_naming_them():
    with pytest.raises(ValueError, match="channels-last.*data_format='channels_first'"):
        Conv2D(2, 3, data_format="channels_first")
    with pytest.raises(ValueError, match="dilation_rate other than 1.*dilation_rate=2"):
        Conv2D(2, 3, dilation_rate=2)
    with pytest.raises(ValueError, match="groups other than 1"):
        Conv2D(2, 3, groups=2)
    Conv2D(2, 3, data_format="channels_last", dilation_rate=(1, 1), groups=1)
    with pytest.raises(ValueError, match="lora_rank"):
        Dense(2, lora_rank=4)


def test_activation_settings_survive_save_and_load(tmp_path, rng):
    model = Sequential([
        minicnn.Input((5, 5, 1)),
        Conv2D(3, 3, activation=activations.GELU(approximate=True)),
        Activation(activations.ELU(alpha=0.5)),
        Flatten(),
        Dense(2, activation=activations.LeakyReLU(0.1)),
    ])  # fmt: skip
    assert model.layers[0].get_config()["activation"] == {"class_name": "gelu", "config": {"approximate": True}}  # fmt: skip
    assert Dense(2, activation="gelu").get_config()["activation"] == "gelu"  # defaults: the name
    x = rng.standard_normal((4, 5, 5, 1)).astype(np.float32)
    model.save(tmp_path / "acts.minicnn")
    again = minicnn.load_model(tmp_path / "acts.minicnn")
    assert again.layers[0].activation.approximate and again.layers[1].activation.alpha == 0.5
    assert again.layers[3].activation.negative_slope == 0.1
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


def _activity_model():
    """Every layer that takes activity_regularizer as an argument, a penalty on its output."""
    set_random_seed(4)
    model = Sequential([
        minicnn.Input((6, 6, 2)),
        Conv2D(3, 3, activation="relu", activity_regularizer=regularizers.L1L2(l1=0.02, l2=0.03)),
        Flatten(),
        Dense(5, activation="tanh", activity_regularizer="l2"),
        Dense(4, activation="softmax", activity_regularizer=regularizers.L1(0.05)),
    ])  # fmt: skip
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


def test_activity_regularizers_give_the_gradient_of_their_penalty(rng, f64):
    """Keras adds regularizer(output) / batch size with add_loss: finite differences of the
    whole loss against one TrainStep's gradients, for every weight."""
    model = _activity_model()
    be = model.backend
    x = be.asarray(rng.standard_normal((5, 6, 6, 2)))
    t = be.asarray(np.array([0, 1, 2, 3, 1]))
    step = TrainStep(model)
    loss, _, grads = step.gradients([x], [t])
    conv, _, d1, d2 = model.layers
    a = be.to_numpy(conv(x))
    h = be.to_numpy(d1(a.reshape(5, -1)))
    p = be.to_numpy(d2(h))
    want = -np.log(p[np.arange(5), [0, 1, 2, 3, 1]]).mean()
    want += (0.02 * np.abs(a).sum() + 0.03 * (a**2).sum() + 0.01 * (h**2).sum() + 0.05 * np.abs(p).sum()) / 5  # fmt: skip
    np.testing.assert_allclose(float(loss), want, rtol=1e-12)
    for (layer, name), g in zip(step.params, grads):
        w = layer.params[name]
        w_host = be.to_numpy(w).copy()

        def fw(w=w, w_host=w_host):
            w[...] = be.asarray(w_host)
            return float(step.gradients([x], [t])[0])

        numeric = numerical_gradient(fw, w_host)
        fw()
        check(f"activity-regularized {layer.name}.{name}", be.to_numpy(g), numeric)


def test_activity_regularizers_match_keras_and_travel(rng, tmp_path):
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    k = need("keras")
    L = k.layers
    ref = k.Sequential([
        k.Input((6, 6, 2)),
        L.Conv2D(3, 3, activation="relu", activity_regularizer=k.regularizers.L1L2(l1=0.02, l2=0.03)),
        L.Flatten(),
        L.Dense(5, activation="tanh", activity_regularizer="l2"),
        L.Dense(4, activation="softmax", activity_regularizer=k.regularizers.L1(0.05)),
    ])  # fmt: skip
    ref.compile("sgd", "sparse_categorical_crossentropy")
    model = _activity_model()
    model.set_weights(ref.get_weights())
    x = rng.standard_normal((10, 6, 6, 2)).astype(np.float32)
    y = np.arange(10) % 4
    want = float(ref.evaluate(x, y, batch_size=5, verbose=0))
    np.testing.assert_allclose(model.evaluate(x, y, batch_size=5, verbose=0), want, rtol=1e-5)
    model.save(tmp_path / "m.minicnn")
    again = minicnn.models.load_model(tmp_path / "m.minicnn")
    np.testing.assert_allclose(again.evaluate(x, y, batch_size=5, verbose=0), want, rtol=1e-5)
    assert again.layers[2].get_config()["activity_regularizer"] == regularizers.serialize(regularizers.L2(0.01))  # fmt: skip
    ort = need("onnxruntime")  # the penalties are loss terms: the exported graph leaves them out
    model.export(tmp_path / "m.onnx", format="onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x})[0]
    np.testing.assert_allclose(got, model.predict(x, verbose=0), atol=1e-6)


RELU_SETTINGS = [
    {"max_value": 6.0},
    {"max_value": 1.0, "threshold": 0.5},
    {"negative_slope": 0.1},
    {"negative_slope": 0.2, "threshold": 0.3},
    {"negative_slope": 0.3, "max_value": 2.0, "threshold": 0.4},
]


@pytest.mark.parametrize("settings", RELU_SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))  # fmt: skip
def test_relu_with_settings_is_kerass_and_exports(settings, backend_name, f64, rng, tmp_path):
    """ReLU(max_value=6.0) (MobileNet's) and the other settings: Keras 3.15.1's values, the
    gradient by finite differences (inputs kept off the kinks), ONNX Runtime's values."""
    from minicnn.layers import ReLU

    values = np.array([-3.0, -0.35, -0.1, 0.2, 0.45, 0.7, 1.5, 2.5, 7.0])
    x = rng.choice(values, size=(3, 4, 5, 2)) + rng.uniform(-0.02, 0.02, (3, 4, 5, 2))
    gradcheck_layer(ReLU(**settings), x, backend_name, rng)
    if backend_name != "numpy":
        return
    os.environ.setdefault("KERAS_BACKEND", "torch")
    k = need("keras")
    want = k.ops.convert_to_numpy(k.layers.ReLU(**settings)(x.astype(np.float32)))
    ours = Sequential([minicnn.Input((4, 5, 2)), ReLU(**settings)])
    np.testing.assert_allclose(ours.predict(x.astype(ours.dtype), verbose=0), want, rtol=1e-6, atol=1e-7)  # fmt: skip
    assert {key: ours.layers[0].get_config()[key] for key in settings} == settings
    ort = need("onnxruntime")
    ours.export(tmp_path / "r.onnx", format="onnx")
    session = ort.InferenceSession(str(tmp_path / "r.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.astype(np.float32)})[0]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="max_value of a ReLU layer cannot be a negative value"):
        ReLU(max_value=-1.0)
    with pytest.raises(ValueError, match="threshold of a ReLU layer cannot be None or a negative"):
        ReLU(threshold=-0.5)


@pytest.mark.parametrize("axis", [1, -2, (1, 2), (2, 3)])
def test_softmax_over_other_axes_is_kerass(axis, backend_name, f64, rng, tmp_path):
    """Softmax(axis=...) over any axes but the batch's: Keras 3.15.1's values, the gradient by
    finite differences; ONNX export refuses it by name rather than export another axis."""
    from minicnn.export import ExportError
    from minicnn.layers import Softmax

    x = rng.standard_normal((2, 3, 4, 5)) * 2
    gradcheck_layer(Softmax(axis=axis), x, backend_name, rng)
    if backend_name != "numpy":
        return
    os.environ.setdefault("KERAS_BACKEND", "torch")
    k = need("keras")
    want = k.ops.convert_to_numpy(k.layers.Softmax(axis=axis)(x.astype(np.float32)))
    model = Sequential([minicnn.Input((3, 4, 5)), Softmax(axis=axis)])
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-5, atol=1e-7)
    with pytest.raises(ExportError, match="softmax_over_axis"):
        model.export(tmp_path / "s.onnx", format="onnx")
    with pytest.raises(ValueError, match="other than the batch axis"):
        Sequential([minicnn.Input((3, 4, 5)), Softmax(axis=0)])


def test_dropout_noise_shape_shares_the_mask_as_keras_does(backend_name, f64, rng):
    """Dropout(noise_shape=(None, 1, 1, C)): one draw per image and channel, shared over the
    pixels (None takes the input's size), kept values scaled by 1 / (1 - rate); its gradient
    by finite differences with the same mask; inference the identity; a shape that does not
    fit the input is refused at build."""
    from minicnn.layers import Dropout

    be = backend.get_backend(backend_name)
    x = np.abs(rng.standard_normal((16, 5, 6, 8))) + 0.5
    layer = Dropout(0.25, noise_shape=(None, 1, 1, 8))
    y = be.to_numpy(layer(be.asarray(x), training=True))
    kept = y != 0
    assert (kept == kept[:, :1, :1, :]).all()  # whole channels of each image
    np.testing.assert_allclose(y[kept], x[kept] / 0.75, rtol=1e-12)
    drawn = kept[:, 0, 0, :]
    assert abs((1 - drawn.mean()) - 0.25) < 4 * np.sqrt(0.25 * 0.75 / drawn.size)
    np.testing.assert_array_equal(be.to_numpy(layer(be.asarray(x), training=False)), x)
    gradcheck_layer(Dropout(0.3, noise_shape=(None, 5, 1, 1)), x[:2], backend_name, rng, seed=5)
    assert Dropout(0.5, noise_shape=(None, 1, 1, 8)).get_config()["noise_shape"] == [None, 1, 1, 8]
    with pytest.raises(ValueError, match="noise_shape=.* must have one entry per axis"):
        Sequential([minicnn.Input((5, 6, 8)), Dropout(0.5, noise_shape=(None, 2, 1, 8))])
    with pytest.raises(ValueError, match="noise_shape must be a tuple of positive ints"):
        Dropout(0.5, noise_shape=(None, 0))


NEWER = ["celu", "hard_silu", "hard_swish", "hard_tanh", "log_sigmoid", "mish", "soft_shrink", "hard_shrink", "tanh_shrink", "squareplus", "sparse_plus", "sparse_sigmoid", "log_softmax"]  # fmt: skip


@pytest.mark.parametrize("name", NEWER)
def test_keras_3s_newer_activations(name, backend_name, f64, rng):
    """Each by name: Keras 3.15.1's values (the conformance sweep checks them too), the
    gradient by finite differences off the kinks (|x| = 0.5, 1, 3), inside a Dense as well."""
    x = rng.standard_normal((3, 4, 5, 2)) * 2.5
    for kink in (0.5, 1.0, 3.0):
        x = np.where(np.abs(np.abs(x) - kink) < 0.05, x + 0.1, x)
    gradcheck_layer(Activation(name), x, backend_name, rng)
    gradcheck_layer(Dense(4, activation=name), rng.standard_normal((3, 5)), backend_name, rng)
    if backend_name == "numpy":
        os.environ.setdefault("KERAS_BACKEND", "torch")
        k = need("keras")
        want = k.ops.convert_to_numpy(k.activations.get(name)(x.astype(np.float32)))
        np.testing.assert_allclose(getattr(activations, name)(x.astype(np.float32)), want, rtol=1e-5, atol=1e-6)  # fmt: skip


@pytest.mark.parametrize("name", ["mish", "log_sigmoid", "hard_tanh", "tanh_shrink", "hard_silu", "log_softmax"])  # fmt: skip
def test_newer_activations_export_to_onnx(name, tmp_path):
    ort = need("onnxruntime")
    x = np.random.default_rng(0).normal(size=(4, 3, 3, 2)).astype(np.float32) * 3
    model = Sequential([minicnn.Input((3, 3, 2)), Conv2D(4, 1, activation=name)])
    model.export(tmp_path / "a.onnx", format="onnx")
    session = ort.InferenceSession(str(tmp_path / "a.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": x})[0], model.predict(x, verbose=0), atol=2e-6)  # fmt: skip
