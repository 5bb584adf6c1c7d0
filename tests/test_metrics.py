"""Every metric against Keras 3.15.1 itself (torch backend) batch by batch, with and without
sample weights; the confusion metrics and AUC against a naive reference written here; metric
state reset per epoch and evaluation; Metric subclasses as the Keras guides write them (their
update_state here uses NumPy, which is what they receive on the NumPy backend); the resolution of
"accuracy" and the names every metric is logged under."""

import os

import numpy as np
import pytest
from referee import need

import minicnn
from minicnn import layers, metrics
from minicnn.models import Model, Sequential
from minicnn.optimizers import SGD


def keras_referee():
    os.environ["KERAS_BACKEND"] = "torch"
    keras = need("keras")
    assert keras.backend.backend() == "torch"
    return keras


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def data(kind, n, rng, k=4):
    if kind == "labels":
        return rng.integers(0, k, n)
    if kind == "labels1":
        return rng.integers(0, k, (n, 1))
    if kind == "onehot":
        return np.eye(k)[rng.integers(0, k, n)]
    if kind == "binary":
        return rng.integers(0, 2, (n, k)).astype(float)
    if kind == "binary1":
        return rng.integers(0, 2, (n, 1)).astype(float)
    if kind == "simplex":
        return softmax(rng.standard_normal((n, k)) * 2)
    if kind == "prob":
        return rng.random((n, k))
    if kind == "prob1":
        return rng.random((n, 1))
    if kind == "real":
        return rng.standard_normal((n, k))
    if kind == "positive":
        return rng.random((n, k)) + 0.1
    if kind == "ints":
        return rng.integers(0, 2, (n, k)).astype(float)
    raise ValueError(kind)


CASES = {  # name: (class, kwargs, y_true kind, y_pred kind)
    "accuracy": ("Accuracy", {}, "ints", "ints"),
    "binary_accuracy": ("BinaryAccuracy", {"threshold": 0.3}, "binary", "prob"),
    "categorical_accuracy": ("CategoricalAccuracy", {}, "onehot", "simplex"),
    "sparse_categorical_accuracy": ("SparseCategoricalAccuracy", {}, "labels", "simplex"),
    "sparse_categorical_accuracy_n1": ("SparseCategoricalAccuracy", {}, "labels1", "simplex"),
    "top_k": ("TopKCategoricalAccuracy", {"k": 2}, "onehot", "simplex"),
    "sparse_top_k": ("SparseTopKCategoricalAccuracy", {"k": 2}, "labels", "simplex"),
    "mse": ("MeanSquaredError", {}, "real", "real"),
    "mae": ("MeanAbsoluteError", {}, "real", "real"),
    "rmse": ("RootMeanSquaredError", {}, "real", "real"),
    "mape": ("MeanAbsolutePercentageError", {}, "real", "real"),
    "msle": ("MeanSquaredLogarithmicError", {}, "positive", "positive"),
    "logcosh": ("LogCoshError", {}, "real", "real"),
    "cosine": ("CosineSimilarity", {}, "real", "real"),
    "bce": ("BinaryCrossentropy", {}, "binary", "prob"),
    "bce_logits": (
        "BinaryCrossentropy",
        {"from_logits": True, "label_smoothing": 0.1},
        "binary",
        "real",
    ),  # fmt: skip
    "cce": ("CategoricalCrossentropy", {"label_smoothing": 0.1}, "onehot", "simplex"),
    "scce": ("SparseCategoricalCrossentropy", {}, "labels", "simplex"),
    "kld": ("KLDivergence", {}, "simplex", "simplex"),
    "poisson": ("Poisson", {}, "positive", "positive"),
    "hinge": ("Hinge", {}, "binary", "real"),
    "squared_hinge": ("SquaredHinge", {}, "binary", "real"),
    "categorical_hinge": ("CategoricalHinge", {}, "onehot", "real"),
    "precision": ("Precision", {}, "binary", "prob"),
    "precision_thresholds": ("Precision", {"thresholds": [0.2, 0.5, 0.7]}, "binary", "prob"),
    "precision_top_k": ("Precision", {"top_k": 2}, "binary", "prob"),
    "precision_class_id": ("Precision", {"class_id": 1, "thresholds": 0.4}, "binary", "prob"),
    "recall": ("Recall", {}, "binary", "prob"),
    "recall_top_k_class": ("Recall", {"top_k": 2, "class_id": 3}, "binary", "prob"),
    "true_positives": ("TruePositives", {"thresholds": [0.3, 0.6]}, "binary", "prob"),
    "false_positives": ("FalsePositives", {}, "binary", "prob"),
    "true_negatives": ("TrueNegatives", {}, "binary", "prob"),
    "false_negatives": ("FalseNegatives", {"thresholds": 0.8}, "binary", "prob"),
    "auc": ("AUC", {}, "binary", "prob"),
    "auc_one_unit": ("AUC", {}, "binary1", "prob1"),
    "auc_pr": ("AUC", {"curve": "PR"}, "binary", "prob"),
    "auc_pr_minoring": (
        "AUC",
        {"curve": "PR", "summation_method": "minoring", "num_thresholds": 37},
        "binary",
        "prob",
    ),  # fmt: skip
    "auc_roc_majoring": (
        "AUC",
        {"summation_method": "majoring", "num_thresholds": 11},
        "binary",
        "prob",
    ),  # fmt: skip
    "auc_thresholds": ("AUC", {"thresholds": [0.1, 0.35, 0.5, 0.9]}, "binary", "prob"),
    "auc_multi_label": ("AUC", {"multi_label": True}, "binary", "prob"),
    "auc_multi_label_weights": (
        "AUC",
        {"multi_label": True, "num_labels": 4, "label_weights": [1.0, 2.0, 0.5, 0.0]},
        "binary",
        "prob",
    ),  # fmt: skip
    "auc_label_weights": ("AUC", {"label_weights": [1.0, 2.0, 0.5, 0.0]}, "binary", "prob"),
    "auc_logits": ("AUC", {"from_logits": True, "curve": "PR"}, "binary", "real"),
    "auc_prgain": ("AUC", {"curve": "PRGAIN", "summation_method": "minoring"}, "binary", "prob"),
}


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_against_keras(case, weighted, rng):
    keras = keras_referee()
    cls, kwargs, tk, pk = CASES[case]
    ours, theirs = getattr(metrics, cls)(**kwargs), getattr(keras.metrics, cls)(**kwargs)
    for n in (7, 12, 5):
        t, p = data(tk, n, rng).astype(np.float32), data(pk, n, rng).astype(np.float32)
        w = (rng.random(n) * 2).astype(np.float32) if weighted else None
        ours.update_state(t, p, sample_weight=w)
        theirs.update_state(t, p, sample_weight=w)
        expected = keras.ops.convert_to_numpy(theirs.result())
        np.testing.assert_allclose(np.asarray(ours.result()), expected, rtol=2e-5, atol=2e-6, err_msg=case)  # fmt: skip
    ours.reset_state()
    assert np.all(np.asarray(ours.result()) == 0)
    mine = ours.get_config()
    for k, v in theirs.get_config().items():  # each setting Keras saves, with the same value
        v = v if v is None or isinstance(v, (str, bool, int, float, list)) else np.asarray(v).tolist()  # fmt: skip
        assert k in mine and mine[k] == v, (k, mine.get(k), v)


def reference_confusion(t, p, thresholds, w):
    """tp, fp, tn, fn at each threshold, one loop per threshold: positive when p > threshold."""
    t, p, w = t.reshape(-1) != 0, p.reshape(-1), np.broadcast_to(w[:, None], p.shape).reshape(-1)  # fmt: skip
    out = {k: [] for k in ("tp", "fp", "tn", "fn")}
    for th in thresholds:
        pos = p > th
        out["tp"].append(w[pos & t].sum())
        out["fp"].append(w[pos & ~t].sum())
        out["tn"].append(w[~pos & ~t].sum())
        out["fn"].append(w[~pos & t].sum())
    return {k: np.array(v) for k, v in out.items()}


def test_auc_against_a_naive_reference(rng):
    """ROC by trapezoids and PR by Davis & Goadrich's interpolation, over Keras's thresholds."""
    t = rng.integers(0, 2, (50, 3)).astype(float)
    p = np.clip(t * 0.3 + rng.random((50, 3)) * 0.7, 0, 1)
    w = rng.random(50)
    thresholds = [-1e-7] + [(i + 1) / 199 for i in range(198)] + [1 + 1e-7]
    c = reference_confusion(t, p, thresholds, w)
    tpr = c["tp"] / (c["tp"] + c["fn"])
    fpr = c["fp"] / (c["fp"] + c["tn"])
    roc = sum((fpr[i] - fpr[i + 1]) * (tpr[i] + tpr[i + 1]) / 2 for i in range(199))
    auc = metrics.AUC()
    auc.update_state(t, p, sample_weight=w)
    assert float(auc.result()) == pytest.approx(roc, rel=1e-5)
    pr = 0.0  # Davis & Goadrich: precision interpolated along each step of true positives
    for i in range(199):
        tp0, tp1 = c["tp"][i], c["tp"][i + 1]
        p0, p1 = tp0 + c["fp"][i], tp1 + c["fp"][i + 1]
        if p0 - p1 <= 0:
            continue
        slope = (tp0 - tp1) / (p0 - p1)
        ratio = p0 / p1 if p0 > 0 and p1 > 0 else 1.0
        pr += slope * ((tp0 - tp1) + (tp1 - slope * p1) * np.log(ratio)) / (tp1 + c["fn"][i + 1])
    auc_pr = metrics.AUC(curve="PR")
    auc_pr.update_state(t, p, sample_weight=w)
    assert float(auc_pr.result()) == pytest.approx(pr, rel=1e-4)
    precision = metrics.Precision(thresholds=[0.25, 0.5])
    precision.update_state(t, p, sample_weight=w)
    c = reference_confusion(t, p, [0.25, 0.5], w)
    np.testing.assert_allclose(precision.result(), c["tp"] / (c["tp"] + c["fp"]), rtol=1e-5)


def test_mean_and_sum_as_kerass(rng):
    keras = keras_referee()
    for cls in ("Mean", "Sum"):
        ours, theirs = getattr(metrics, cls)(), getattr(keras.metrics, cls)()
        for values, w in [(rng.random(5), None), (rng.random((4, 3)), rng.random(4)), (rng.random(3), rng.random(3))]:  # fmt: skip
            ours.update_state(values, sample_weight=w)
            theirs.update_state(values, sample_weight=w)
        assert float(ours.result()) == pytest.approx(float(theirs.result()), rel=1e-5)


class CategoricalTruePositives(metrics.Metric):
    """keras.io's "Training & evaluation with the built-in methods" guide, NumPy for keras.ops."""

    def __init__(self, name="categorical_true_positives", **kwargs):
        super().__init__(name=name, **kwargs)
        self.true_positives = self.add_variable(shape=(), name="ctp", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = np.reshape(np.argmax(y_pred, axis=1), (-1, 1))
        values = np.asarray(y_true, "int32") == np.asarray(y_pred, "int32")
        values = values.astype("float32")
        if sample_weight is not None:
            values = np.multiply(values, np.asarray(sample_weight, "float32").reshape(-1, 1))
        self.true_positives.assign_add(np.sum(values))

    def result(self):
        return self.true_positives

    def reset_state(self):
        self.true_positives.assign(0.0)


class MeanAbsoluteDistance(metrics.Metric):
    """State by add_weight, and a Metric held inside another."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.total = self.add_weight(shape=(2,), initializer="zeros", name="total")
        self.inner = metrics.Mean()

    def update_state(self, y_true, y_pred, sample_weight=None):
        d = np.abs(np.asarray(y_pred) - np.asarray(y_true))
        self.total.assign(self.total + np.array([d.sum(), d.size], dtype="float32"))
        self.inner.update_state(d.mean(axis=-1))

    def result(self):
        return {"distance": self.total[0] / self.total[1], "inner_mean": self.inner.result()}


def classifier(units=3, activation="softmax"):
    return Sequential([layers.Input((4,)), layers.Dense(units, activation=activation)])


def test_metric_subclasses_as_the_guides_write_them(rng):
    x = rng.standard_normal((40, 4)).astype(np.float32)
    y = rng.integers(0, 3, (40, 1))
    model = classifier()
    ctp = CategoricalTruePositives()
    model.compile(SGD(1e-12), "sparse_categorical_crossentropy", metrics=[ctp, MeanAbsoluteDistance()])  # fmt: skip
    history = model.fit(x, y, batch_size=16, epochs=2, validation_data=(x, y), verbose=0).history
    p = model.predict(x, verbose=0)
    hits = float((p.argmax(1) == y[:, 0]).sum())
    # reset each epoch (two epochs give the same count), and for the validation pass
    assert history["categorical_true_positives"] == [hits, hits] == history["val_categorical_true_positives"]  # fmt: skip
    onehot = np.eye(3)[y[:, 0]]
    assert history["distance"][0] == pytest.approx(
        np.abs(p - y).mean(), rel=1e-5
    )  # y (N, 1) broadcasts
    assert history["inner_mean"][0] == pytest.approx(np.abs(p - y).mean(), rel=1e-5)
    assert model.evaluate(x, y, return_dict=True, verbose=0)["categorical_true_positives"] == hits
    assert onehot.shape == p.shape
    assert isinstance(ctp.true_positives.value, np.ndarray) and ctp.true_positives.shape == ()
    assert [v.name for v in MeanAbsoluteDistance().variables] == ["total", "total", "count"]


def test_a_metric_without_super_init_is_named():
    class Broken(metrics.Metric):
        def __init__(self):
            self.v = self.add_variable((), "zeros")

    with pytest.raises(RuntimeError, match=r"You forgot to call `super\(\).__init__\(\)`"):
        Broken()


@pytest.mark.parametrize(
    "units,activation,loss,y,expected",
    [
        (1, "sigmoid", "binary_crossentropy", "binary1", "BinaryAccuracy"),
        (3, "softmax", "sparse_categorical_crossentropy", "labels", "SparseCategoricalAccuracy"),
        (3, "softmax", "sparse_categorical_crossentropy", "labels1", "SparseCategoricalAccuracy"),
        (3, "softmax", "categorical_crossentropy", "onehot", "CategoricalAccuracy"),
        (3, "sigmoid", "binary_crossentropy", "binary", "CategoricalAccuracy"),  # Keras: by shapes
        (1, None, "mse", "binary1", "BinaryAccuracy"),
    ],
)
def test_accuracy_resolves_as_kerass(units, activation, loss, y, expected, rng):
    """Keras's compile_utils.get_metric: by the shapes of the targets and the output."""
    keras = keras_referee()
    x = rng.standard_normal((24, 4)).astype(np.float32)
    yy = data(y, 24, rng, k=3 if units == 3 else 1).astype(np.float32)
    model = classifier(units, activation)
    model.compile("sgd", loss, metrics=["acc"])
    logs = model.evaluate(x, yy, return_dict=True, verbose=0)
    assert type(model.metrics[0]).__name__ == expected and model.metrics[0].name == "acc"
    km = keras.Sequential([keras.Input((4,)), keras.layers.Dense(units, activation=activation)])
    km.set_weights(model.get_weights())
    km.compile("sgd", loss, metrics=["acc"])
    theirs = km.evaluate(x, yy, return_dict=True, verbose=0)
    assert [type(m).__name__ for m in km._compile_metrics.metrics] == [expected]
    assert logs["acc"] == pytest.approx(theirs["acc"], abs=1e-6)
    assert logs["loss"] == pytest.approx(theirs["loss"], rel=1e-5)


def test_metrics_are_logged_under_the_names_given(rng):
    x = rng.standard_normal((32, 4)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    model = classifier()
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=[metrics.SparseCategoricalAccuracy(name="acc"), "acc", "sparse_top_k_categorical_accuracy", metrics.SparseTopKCategoricalAccuracy(k=1, name="top1")], weighted_metrics=["acc", metrics.SparseCategoricalAccuracy()])  # fmt: skip
    history = model.fit(x, y, epochs=1, validation_split=0.25, verbose=0, sample_weight=np.ones(32))
    # Keras's CompileMetrics.result: a repeated name gets _1, a weighted one that an
    # unweighted one has is weighted_<name>
    names = {"acc", "acc_1", "sparse_top_k_categorical_accuracy", "top1", "weighted_acc", "sparse_categorical_accuracy", "loss"}  # fmt: skip
    assert set(history.history) == names | {f"val_{k}" for k in names}
    assert history.history["acc"] == history.history["acc_1"] == history.history["top1"]
    assert history.history["weighted_acc"] == history.history["acc"]  # weights of 1


def test_several_outputs_prefix_their_metrics(rng):
    inputs = layers.Input((4,))
    a = layers.Dense(3, activation="softmax", name="digit")(inputs)
    b = layers.Dense(1, activation="sigmoid", name="odd")(inputs)
    model = Model(inputs, [a, b])
    model.compile("sgd", ["sparse_categorical_crossentropy", "binary_crossentropy"], metrics=[["acc"], ["acc", metrics.AUC(name="auc")]], weighted_metrics=[[], ["acc"]])  # fmt: skip
    x = rng.standard_normal((16, 4)).astype(np.float32)
    ys = [rng.integers(0, 3, 16), rng.integers(0, 2, (16, 1)).astype(np.float32)]
    logs = model.evaluate(x, ys, return_dict=True, verbose=0, sample_weight=np.ones(16))
    assert set(logs) == {"loss", "digit_loss", "odd_loss", "digit_acc", "odd_acc", "odd_auc", "odd_weighted_acc"}  # fmt: skip
    assert [type(m).__name__ for m in model.metrics] == ["SparseCategoricalAccuracy", "BinaryAccuracy", "AUC", "BinaryAccuracy"]  # fmt: skip


def test_metrics_of_a_logits_head_read_its_probabilities(rng):
    """A softmax head left to its loss hands the metrics the model's output, not its logits."""
    x = rng.standard_normal((40, 4)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    model = classifier()
    model.compile(SGD(1e-12), "sparse_categorical_crossentropy", metrics=["mse", "acc", metrics.AUC(multi_label=True, name="auc")])  # fmt: skip
    assert model.plan(8, True).logits == ("softmax",)
    y1 = y.reshape(-1, 1)  # labels (N, 1): mse broadcasts them against (N, 3), as in Keras
    logs = model.fit(x, y1, batch_size=8, verbose=0).history
    p = model.predict(x, verbose=0)
    assert logs["mse"][0] == pytest.approx(((p - y1) ** 2).mean(), rel=1e-5)
    assert logs["acc"][0] == pytest.approx((p.argmax(1) == y).mean())
    auc = metrics.AUC(multi_label=True)
    auc.update_state(y1, p)
    assert logs["auc"][0] == pytest.approx(float(auc.result()), rel=1e-5)


def test_a_metric_that_cannot_read_the_targets_fails_before_training(rng):
    model = classifier()
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["mae"])
    kernel = model.layers[0].get_weights()[0].copy()
    with pytest.raises(ValueError, match=r'Metric "mae" \(MeanAbsoluteError\) cannot read targets of shape \(8,\)'):  # fmt: skip
        model.fit(rng.random((8, 4), dtype=np.float32), np.zeros(8), verbose=0)
    assert np.array_equal(model.layers[0].get_weights()[0], kernel)
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["categorical_accuracy"])
    with pytest.raises(ValueError, match=r"expects one-hot targets of shape \(8, 3\)"):
        model.fit(rng.random((8, 4), dtype=np.float32), np.zeros(8), verbose=0)
    with pytest.raises(ValueError, match=r"Unknown metric: .*Received: metric='acuracy'"):
        model.compile("sgd", "mse", metrics=["acuracy"])


def test_names_and_functions_resolve_as_kerass():
    keras = keras_referee()
    for name in ["mse", "MSE", "mae", "mape", "msle", "bce", "auc", "AUC", "precision", "recall", "binary_accuracy", "top_k_categorical_accuracy", "mean_squared_error", "kl_divergence", "log_cosh_error", "RootMeanSquaredError"]:  # fmt: skip
        assert type(metrics.get(name)).__name__ == type(keras.metrics.get(name)).__name__, name
    assert metrics.get(metrics.mean_squared_error).name == "mean_squared_error"
    fn = metrics.get(lambda t, p: np.abs(t - p))
    fn.update_state(np.zeros(3), np.ones(3))
    assert float(fn.result()) == 1.0
    assert metrics.Precision().name.startswith("precision")


def test_compiled_metrics_survive_save_and_load(tmp_path, rng):
    model = classifier(3, "sigmoid")
    model.compile("adam", "binary_crossentropy", metrics=["acc", metrics.Precision(thresholds=[0.3], name="p30"), metrics.TopKCategoricalAccuracy(k=2)], weighted_metrics=["acc"])  # fmt: skip
    x, y = rng.standard_normal((16, 4)).astype(np.float32), rng.integers(0, 2, (16, 3))
    model.fit(x, y, verbose=0)
    model.save(tmp_path / "m.minicnn")
    loaded = minicnn.load_model(tmp_path / "m.minicnn")
    assert [m.name for m in loaded.metrics] == ["acc", "p30", "top_k_categorical_accuracy", "acc"]  # fmt: skip
    assert loaded.metrics[1].thresholds == [0.3] and loaded.metrics[2].k == 2
    a = model.evaluate(x, y, return_dict=True, verbose=0, sample_weight=np.arange(16.0))
    b = loaded.evaluate(x, y, return_dict=True, verbose=0, sample_weight=np.arange(16.0))
    assert a == b and "weighted_acc" in a
