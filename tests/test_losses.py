"""Every loss against Keras 3's formula written out here, against Keras itself (3.15.1 on the
torch backend) for values, reductions and sample weights, and its hand-written gradient against
float64 finite differences, for every reduction, with and without sample weights, and through
the logits paths (a softmax head for the categorical cross-entropies, a sigmoid head for the
binary one)."""

import numpy as np
import pytest
from gradcheck import check, numerical_gradient
from referee import keras_referee

import minicnn
from minicnn import losses
from minicnn.layers import Dense, Input
from minicnn.models import Sequential

EPS = 1e-7


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


# -- Keras's formulas, written from keras/src/losses/losses.py and backend/numpy/nn.py ---------


def ref_bce(t, p):
    c = np.clip(p, EPS, 1 - EPS)
    return -(t * np.log(c) + (1 - t) * np.log(1 - c))


def ref_cce(t, p):
    q = np.clip(p / p.sum(-1, keepdims=True), EPS, 1 - EPS)
    return -(t * np.log(q)).sum(-1)


def ref_normalize(x):
    return x * np.minimum(1 / np.sqrt((x * x).sum(-1, keepdims=True)), 1 / EPS)


def ref_signed(t):
    return 2 * t - 1 if np.all((t == 0) | (t == 1)) else t


def ref_focal(t, p, gamma=2.0, alpha=0.25, balance=False):
    pt = t * p + (1 - t) * (1 - p)
    v = (1 - pt) ** gamma * ref_bce(t, p)
    return (v * (t * alpha + (1 - t) * (1 - alpha)) if balance else v).mean(-1)


REFERENCE = {  # name: (make, targets, predictions, Keras's per-sample values)
    "mse": (
        lambda: losses.MeanSquaredError(),
        "real",
        "real",
        lambda t, p: ((p - t) ** 2).mean(-1),
    ),  # fmt: skip
    "mae": (
        lambda: losses.MeanAbsoluteError(),
        "real",
        "real",
        lambda t, p: np.abs(p - t).mean(-1),
    ),  # fmt: skip
    "mape": (
        lambda: losses.MeanAbsolutePercentageError(),
        "real",
        "real",
        lambda t, p: 100 * (np.abs(t - p) / np.maximum(np.abs(t), EPS)).mean(-1),
    ),  # fmt: skip
    "msle": (
        lambda: losses.MeanSquaredLogarithmicError(),
        "positive",
        "positive",
        lambda t, p: ((np.log(np.maximum(p, EPS) + 1) - np.log(np.maximum(t, EPS) + 1)) ** 2).mean(
            -1
        ),
    ),  # fmt: skip
    "huber": (
        lambda: losses.Huber(delta=0.7),
        "real",
        "real",
        lambda t, p: np.where(
            np.abs(p - t) <= 0.7, 0.5 * (p - t) ** 2, 0.7 * np.abs(p - t) - 0.5 * 0.49
        ).mean(-1),
    ),  # fmt: skip
    "log_cosh": (
        lambda: losses.LogCosh(),
        "real",
        "real",
        lambda t, p: np.log(np.cosh(p - t)).mean(-1),
    ),  # fmt: skip
    "cosine": (
        lambda: losses.CosineSimilarity(),
        "real",
        "real",
        lambda t, p: -(ref_normalize(t) * ref_normalize(p)).sum(-1),
    ),  # fmt: skip
    "kld": (
        lambda: losses.KLDivergence(),
        "simplex",
        "simplex",
        lambda t, p: (np.clip(t, EPS, 1) * np.log(np.clip(t, EPS, 1) / np.clip(p, EPS, 1))).sum(-1),
    ),  # fmt: skip
    "poisson": (
        lambda: losses.Poisson(),
        "counts",
        "positive",
        lambda t, p: (p - t * np.log(p + EPS)).mean(-1),
    ),  # fmt: skip
    "hinge": (
        lambda: losses.Hinge(),
        "binary",
        "real",
        lambda t, p: np.maximum(1 - ref_signed(t) * p, 0).mean(-1),
    ),  # fmt: skip
    "squared_hinge": (
        lambda: losses.SquaredHinge(),
        "signs",
        "real",
        lambda t, p: (np.maximum(1 - t * p, 0) ** 2).mean(-1),
    ),  # fmt: skip
    "categorical_hinge": (
        lambda: losses.CategoricalHinge(),
        "onehot",
        "real",
        lambda t, p: np.maximum(((1 - t) * p).max(-1) - (t * p).sum(-1) + 1, 0),
    ),  # fmt: skip
    "cce": (lambda: losses.CategoricalCrossentropy(), "onehot", "simplex", ref_cce),
    "cce_smooth": (
        lambda: losses.CategoricalCrossentropy(label_smoothing=0.2),
        "onehot",
        "simplex",
        lambda t, p: ref_cce(t * 0.8 + 0.2 / t.shape[-1], p),
    ),  # fmt: skip
    "cce_logits": (
        lambda: losses.CategoricalCrossentropy(from_logits=True),
        "onehot",
        "real",
        lambda t, z: -(t * np.log(softmax(z))).sum(-1),
    ),  # fmt: skip
    "scce": (
        lambda: losses.SparseCategoricalCrossentropy(),
        "labels",
        "simplex",
        lambda y, p: ref_cce(np.eye(p.shape[-1])[y.astype(int)], p),
    ),  # fmt: skip
    "bce": (
        lambda: losses.BinaryCrossentropy(),
        "binary",
        "prob",
        lambda t, p: ref_bce(t, p).mean(-1),
    ),  # fmt: skip
    "bce_smooth": (
        lambda: losses.BinaryCrossentropy(label_smoothing=0.1),
        "binary",
        "prob",
        lambda t, p: ref_bce(t * 0.9 + 0.05, p).mean(-1),
    ),  # fmt: skip
    "bce_logits": (
        lambda: losses.BinaryCrossentropy(from_logits=True),
        "binary",
        "real",
        lambda t, z: (np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))).mean(-1),
    ),  # fmt: skip
    "focal": (
        lambda: losses.BinaryFocalCrossentropy(gamma=1.5),
        "binary",
        "prob",
        lambda t, p: ref_focal(t, p, 1.5),
    ),  # fmt: skip
    "focal_balanced_logits": (
        lambda: losses.BinaryFocalCrossentropy(
            apply_class_balancing=True, alpha=0.3, from_logits=True
        ),
        "binary",
        "real",
        lambda t, z: ref_focal(t, sigmoid(z), 2.0, 0.3, True),
    ),  # fmt: skip
}


def make(kind, shape, rng):
    """Targets or predictions of ``kind`` and ``shape`` (last axis: classes or values)."""
    k = shape[-1]
    if kind == "real":
        return rng.standard_normal(shape)
    if kind == "positive":
        return rng.random(shape) * 2 + 0.1
    if kind == "counts":
        return rng.integers(0, 5, shape).astype(float)
    if kind == "prob":
        return rng.random(shape) * 0.9 + 0.05
    if kind == "simplex":
        return softmax(rng.standard_normal(shape))
    if kind == "binary":
        return rng.integers(0, 2, shape).astype(float)
    if kind == "signs":
        return rng.choice([-1.0, 1.0], shape)
    if kind == "onehot":
        return np.eye(k)[rng.integers(0, k, shape[:-1])]
    if kind == "labels":
        return rng.integers(0, k, shape[:-1])
    raise ValueError(kind)


SHAPES = [(6, 4), (3, 2, 2, 5)]


@pytest.mark.parametrize("shape", SHAPES, ids=["rows", "images"])
@pytest.mark.parametrize("case", sorted(REFERENCE))
def test_values_match_kerass_formula(case, shape, rng):
    new, tk, pk, formula = REFERENCE[case]
    t, p = make(tk, shape, rng), make(pk, shape, rng)
    loss = new()
    values = loss.forward(t, p, None)[0]
    assert values.shape == shape[:-1]
    np.testing.assert_allclose(values, formula(t, p), rtol=1e-10, atol=1e-12)
    w = rng.random(shape[:-1])  # every reduction of Keras's loss.py, by hand
    total = (formula(t, p) * w).sum()
    for reduction, expected in [("sum_over_batch_size", total / w.size), ("mean", total / w.size), ("sum", total), ("mean_with_sample_weight", total / w.sum())]:  # fmt: skip
        loss.reduction = reduction
        got = loss.forward_backward(p, t, None, w)[0]
        assert got == pytest.approx(expected, rel=1e-10), reduction


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("case", sorted(REFERENCE))
def test_gradient_by_finite_differences(case, reduction, weighted, rng):
    new, tk, pk, _ = REFERENCE[case]
    shape = (5, 3) if tk != "labels" else (5, 4)
    t, p = make(tk, shape, rng), make(pk, shape, rng)
    if case.startswith("cosine"):  # keep away from the norm's eps cap
        p = p + np.sign(p) * 0.1
    loss = new()
    loss.reduction = reduction
    w = rng.random(shape[0]) + 0.1 if weighted else None
    value, g = loss.forward_backward(p, t, None, w)
    num = numerical_gradient(lambda: float(loss.forward_backward(p, t, None, w)[0]), p, h=1e-6)
    assert g.shape == p.shape and g.dtype == p.dtype
    check(f"{case} {reduction} {'w' if weighted else ''}", g, num, tol=1e-6)


@pytest.mark.parametrize("case", ["cce", "scce", "bce", "bce_smooth", "cce_smooth"])
def test_logits_of_a_head_give_the_heads_values_and_gradient(case, rng):
    """A softmax (sigmoid) head whose activation the plan left to its loss: the values are
    Keras's on the head's probabilities, and the gradient is theirs with respect to the logits.
    (A softmax head works from log-sum-exp: where Keras clips a probability below 1e-7, minicnn
    goes on; a sigmoid head keeps Keras's clip, values and zero gradient alike.)"""
    new, tk, _, formula = REFERENCE[case]
    z = rng.standard_normal((6, 4)) * 2
    t = make(tk, z.shape, rng)
    loss = new()
    act = loss.logits_of
    if act == "sigmoid":
        z[0, 0] = 30.0  # a probability Keras clips
    probs = softmax(z) if act == "softmax" else sigmoid(z)
    values = loss.forward(t, z, act)[0]
    np.testing.assert_allclose(values, formula(t, probs), rtol=1e-9)
    zc = z.copy()
    zc[0, 0] = 1.0  # finite differences away from the clip's edge
    g = loss.forward_backward(zc, t, act)[1]
    num = numerical_gradient(lambda: float(loss.forward_backward(zc, t, act)[0]), zc, h=1e-6)
    check(f"{case} through {act}", g, num, tol=1e-6)


def test_a_sigmoid_head_trains_on_its_logits_with_kerass_values(rng):
    minicnn.set_floatx("float64")
    model = Sequential([Input((3,)), Dense(2, activation="sigmoid")])
    model.compile("sgd", "binary_crossentropy")
    plan = model.plan(8, True)
    assert plan.logits == ("sigmoid",) and "logits" in plan.steps[-1].fused
    x = rng.standard_normal((8, 3))
    t = rng.integers(0, 2, (8, 2)).astype(float)
    kernel, bias = model.layers[0].get_weights()
    p = model.predict(x, verbose=0)
    np.testing.assert_allclose(p, sigmoid(x @ kernel + bias), rtol=1e-12)  # predict: probabilities
    assert model.evaluate(x, t, verbose=0) == pytest.approx(ref_bce(t, p).mean(), rel=1e-10)
    from gradcheck import model_gradients

    layer = model.layers[0]
    _, grads = model_gradients(model, [x], [t])

    def f():
        return float(model.objectives.forward_backward(model.plan(8, True).forward([x], True)[0], [t], plan.logits)[0])  # fmt: skip

    check("sigmoid head kernel", grads[(layer, "kernel")], numerical_gradient(f, layer.params["kernel"]))  # fmt: skip


KERAS_CLASSES = {
    "mse": ("MeanSquaredError", {}),
    "mae": ("MeanAbsoluteError", {}),
    "mape": ("MeanAbsolutePercentageError", {}),
    "msle": ("MeanSquaredLogarithmicError", {}),
    "huber": ("Huber", {"delta": 0.7}),
    "log_cosh": ("LogCosh", {}),
    "cosine": ("CosineSimilarity", {}),
    "kld": ("KLDivergence", {}),
    "poisson": ("Poisson", {}),
    "hinge": ("Hinge", {}),
    "squared_hinge": ("SquaredHinge", {}),
    "categorical_hinge": ("CategoricalHinge", {}),
    "cce": ("CategoricalCrossentropy", {}),
    "cce_smooth": ("CategoricalCrossentropy", {"label_smoothing": 0.2}),
    "cce_logits": ("CategoricalCrossentropy", {"from_logits": True}),
    "scce": ("SparseCategoricalCrossentropy", {}),
    "bce": ("BinaryCrossentropy", {}),
    "bce_smooth": ("BinaryCrossentropy", {"label_smoothing": 0.1}),
    "bce_logits": ("BinaryCrossentropy", {"from_logits": True}),
    "focal": ("BinaryFocalCrossentropy", {"gamma": 1.5}),
    "focal_balanced_logits": (
        "BinaryFocalCrossentropy",
        {"apply_class_balancing": True, "alpha": 0.3, "from_logits": True},
    ),  # fmt: skip
}


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", None])  # fmt: skip
@pytest.mark.parametrize("case", sorted(KERAS_CLASSES))
def test_against_keras(case, reduction, rng):
    keras = keras_referee()
    new, tk, pk, _ = REFERENCE[case]
    cls, kwargs = KERAS_CLASSES[case]
    t = make(tk, (6, 2, 3), rng).astype(np.float32)
    p = make(pk, (6, 2, 3), rng).astype(np.float32)
    w = (rng.random((6, 2)) * 2).astype(np.float32)
    ours = getattr(losses, cls)(**kwargs, reduction=reduction)
    theirs = getattr(keras.losses, cls)(**kwargs, reduction=reduction)
    assert theirs.get_config().items() <= ours.get_config().items()  # Keras's Huber drops delta
    for sw in (None, w):
        expected = keras.ops.convert_to_numpy(theirs(t, p, sample_weight=sw))
        got = ours(t, p, sample_weight=sw)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-6)


def test_functions_return_one_value_per_sample_as_kerass(rng):
    keras = keras_referee()
    t, p = rng.random((5, 3)), rng.random((5, 3))
    for name in ["mean_squared_error", "mean_absolute_error", "log_cosh", "kl_divergence", "poisson", "binary_crossentropy", "categorical_crossentropy", "hinge", "huber"]:  # fmt: skip
        got = getattr(losses, name)(t, p)
        expected = keras.ops.convert_to_numpy(getattr(keras.losses, name)(t, p))
        assert got.shape == (5,) and got.dtype == np.float64  # the input's float type
        np.testing.assert_allclose(got, expected, rtol=1e-6, err_msg=name)


def test_binary_crossentropy_of_clipped_probabilities_is_kerass(rng):
    """Saturated sigmoid heads: Keras clips p to [1e-7, 1 - 1e-7]; the logits path gives the
    clip's value too, and passes no gradient there."""
    keras = keras_referee()
    z = np.array([[40.0, -40.0, 16.5, -17.0, 0.3]], np.float32)
    t = np.array([[0.0, 1.0, 0.0, 1.0, 1.0]], np.float32)
    loss = losses.BinaryCrossentropy()
    probs = keras.ops.convert_to_numpy(keras.ops.sigmoid(z))
    expected = keras.ops.convert_to_numpy(keras.losses.binary_crossentropy(t, probs))
    got, ctx = loss.forward(t, z, "sigmoid")
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    g = loss.backward(ctx)
    assert g[0, 0] == 0 and g[0, 1] == 0 and g[0, 4] != 0


NAMES = {
    "mse": "MeanSquaredError", "MSE": "MeanSquaredError", "mean_squared_error": "MeanSquaredError",
    "mae": "MeanAbsoluteError", "MAE": "MeanAbsoluteError", "mean_absolute_error": "MeanAbsoluteError",
    "mape": "MeanAbsolutePercentageError", "msle": "MeanSquaredLogarithmicError",
    "huber": "Huber", "log_cosh": "LogCosh", "kld": "KLDivergence", "kl_divergence": "KLDivergence",
    "poisson": "Poisson", "bce": "BinaryCrossentropy", "binary_crossentropy": "BinaryCrossentropy",
    "categorical_hinge": "CategoricalHinge", "cosine_similarity": "CosineSimilarity",
    "binary_focal_crossentropy": "BinaryFocalCrossentropy", "Huber": "Huber",
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(NAMES))
def test_names_resolve_as_kerass(name):
    keras = keras_referee()
    function_of = {c.__name__: f.__name__ for f, c in losses.FUNCTIONS.items()}
    theirs = keras.losses.get(name)  # a Loss for a class name, else Keras's function
    theirs = type(theirs).__name__ if isinstance(theirs, keras.losses.Loss) else theirs.__name__
    ours = losses.get(name)
    assert type(ours).__name__ == NAMES[name]
    assert theirs in (NAMES[name], function_of[NAMES[name]])
    assert ours.name == (
        name if theirs != NAMES[name] else ours.name
    )  # Keras names a string's wrapper by it


def test_functions_and_classes_resolve():
    assert losses.get(losses.mean_squared_error).name == "mean_squared_error"
    assert type(losses.get(losses.Huber)).__name__ == "Huber"
    assert losses.get({"class_name": "Huber", "config": {"delta": 2.0}}).delta == 2.0


@pytest.mark.parametrize("case", sorted(KERAS_CLASSES))
def test_config_round_trip(case):
    cls, kwargs = KERAS_CLASSES[case]
    loss = getattr(losses, cls)(**kwargs, reduction="sum", name="mine")
    again = losses.deserialize(losses.serialize(loss))
    assert type(again) is type(loss) and again.get_config() == loss.get_config()
    assert again.name == "mine" and again.reduction == "sum"


def test_minicnns_first_format_still_loads():
    loss = losses.deserialize({"name": "categorical_crossentropy", "from_logits": False, "label_smoothing": 0.1})  # fmt: skip
    assert isinstance(loss, losses.CategoricalCrossentropy) and loss.label_smoothing == 0.1


def model():
    return Sequential([Input((4,)), Dense(3)])


def test_compile_refuses_what_it_cannot_train():
    class CustomMSE(losses.Loss):
        def call(self, y_true, y_pred):
            return ((y_true - y_pred) ** 2).mean(axis=-1) * 1000

    m = model()  # a call written with NumPy's methods, not keras.ops: refused at fit, by name
    m.compile("sgd", CustomMSE())
    with pytest.raises(TypeError, match=r'Loss "custom_mse(_\d+)?" \(CustomMSE\): its call\(y_true, y_pred\) could not be traced.*no attribute .mean'):  # fmt: skip
        m.fit(np.ones((4, 4), np.float32), np.ones((4, 3), np.float32), verbose=0)
    # used directly on arrays it is Keras's: call() gives the values, then the reduction
    t, p = np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)
    assert CustomMSE()(t, p) == pytest.approx(1000)
    with pytest.raises(ValueError, match=r"reduction=None\) leaves one value per sample"):
        model().compile("sgd", losses.MeanSquaredError(reduction=None))
    with pytest.raises(ValueError, match=r"Invalid value for argument `reduction`"):
        losses.MeanSquaredError(reduction="avg")
    with pytest.raises(ValueError, match=r"A loss class must subclass minicnn.losses.Loss"):
        model().compile("sgd", dict)
    with pytest.raises(ValueError, match=r'loss="crossentropy" lets Keras pick'):
        model().compile("sgd", "crossentropy")
    with pytest.raises(ValueError, match=r"ignore_class .* is not supported"):
        losses.SparseCategoricalCrossentropy(ignore_class=0)
    with pytest.raises(ValueError, match=r"axis=-1"):
        losses.CategoricalCrossentropy(axis=1)


def test_targets_must_have_the_outputs_shape(rng):
    m = model()
    m.compile("sgd", "mse")
    x = rng.random((6, 4), dtype=np.float32)
    with pytest.raises(ValueError, match=r"mse expects targets of the output's shape \(N, 3\)\. Received: y shape \(6, 2\)"):  # fmt: skip
        m.fit(x, np.zeros((6, 2)), verbose=0)
    with pytest.raises(ValueError, match=r"targets contain NaN or inf"):
        m.fit(x, np.full((6, 3), np.nan), verbose=0)
    one = Sequential([Input((4,)), Dense(1)])
    one.compile("sgd", "mse")
    assert np.isfinite(
        one.evaluate(x, np.arange(6.0), verbose=0)
    )  # (N,) for (N, 1): Keras's squeeze
    m.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"integer labels of shape \(N,\)"):
        m.fit(x, np.zeros((6, 3)), verbose=0)


@pytest.mark.parametrize("loss", ["mse", "mae", "huber", "log_cosh"])
def test_regression_losses_train(loss, rng):
    x = rng.standard_normal((256, 4)).astype(np.float32)
    y = x @ rng.standard_normal((4, 2)).astype(np.float32) + 0.5
    m = Sequential([Input((4,)), Dense(2)])
    m.compile(minicnn.optimizers.Adam(0.05), loss)
    history = m.fit(x, y, epochs=15, batch_size=32, verbose=0).history["loss"]
    assert history[-1] < 0.1 * history[0]
