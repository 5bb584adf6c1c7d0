"""ONNX export checked by ONNX Runtime: the same outputs as ``model.predict`` to 1e-5 (float32)
for every exportable layer at batch 1, 7 and 64, and for a trained seed model on MNIST.
Skipped without onnx and onnxruntime (CI installs both)."""

import numpy as np
import pytest
from referee import need

import minicnn
from minicnn import Sequential
from minicnn.export import ExportError
from minicnn.layers import (
    Activation,
    AveragePooling2D,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    Layer,
    MaxPooling2D,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
    ReLU,
    Rescaling,
    Reshape,
    Softmax,
)
from minicnn.utils import set_random_seed

onnx = need("onnx")
ort = need("onnxruntime")

WORST = []


def _shake_batchnorm(model, rng):
    """Moving statistics away from 0 and 1, so that exporting them matters."""
    for layer in model.layers:
        if isinstance(layer, BatchNormalization):
            c = layer.state["moving_mean"].shape[0]
            layer.state["moving_mean"][...] = rng.standard_normal(c)
            layer.state["moving_variance"][...] = rng.uniform(0.5, 2, c)
            for k in layer.params:
                layer.params[k][...] = rng.uniform(0.5, 1.5, c)


def roundtrip(model, tmp_path, rng, batches=(1, 7, 64), x=None):
    path = tmp_path / "model.onnx"
    model.export(path, format="onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for n in batches:
        xb = x[:n] if x is not None else rng.random((n, *model.input_shape[1:]), dtype=np.float32)
        ours = model.predict(xb, verbose=0)
        theirs = session.run(None, {"input": xb})[0]
        assert theirs.shape == ours.shape and theirs.dtype == np.float32
        worst = max(worst, float(np.abs(theirs - ours).max()))
    WORST.append(worst)
    assert worst <= 1e-5, f"ONNX Runtime differs from predict by {worst:.2e}"
    return path, worst


CASES = {
    "conv-same-stride2-5x5-nobias": lambda: [
        Conv2D(4, 5, strides=2, padding="same", use_bias=False, activation="relu")
    ],  # fmt: skip
    "conv-valid-4x4-tanh": lambda: [Conv2D(3, 4, activation="tanh")],
    "conv-3x3-sigmoid": lambda: [
        Conv2D(5, (3, 2), strides=(1, 2), padding="same", activation="sigmoid")
    ],  # fmt: skip
    "maxpool-same": lambda: [Conv2D(3, 3), MaxPooling2D(3, strides=2, padding="same")],
    "avgpool-same": lambda: [Conv2D(3, 3), AveragePooling2D(3, strides=2, padding="same")],
    "avgpool-valid": lambda: [AveragePooling2D(2)],
    "global-avg": lambda: [Conv2D(6, 3), GlobalAveragePooling2D()],
    "global-max": lambda: [Conv2D(6, 3), GlobalMaxPooling2D()],
    "global-avg-keepdims": lambda: [
        Conv2D(6, 3),
        GlobalAveragePooling2D(keepdims=True),
        Flatten(),
    ],  # fmt: skip
    "batchnorm-after-conv": lambda: [Conv2D(4, 3, use_bias=False), BatchNormalization(), ReLU()],
    "batchnorm-after-dense": lambda: [
        Flatten(),
        Dense(6),
        BatchNormalization(center=False),
        Activation("relu"),
    ],  # fmt: skip
    "rescaling": lambda: [Rescaling(1 / 255, offset=-0.5), Conv2D(2, 3)],
    "reshape": lambda: [Conv2D(4, 3), Reshape((-1, 4)), Reshape((5, 8, 4)), Conv2D(2, 3)],
    "augmentation-and-dropout-vanish": lambda: [
        RandomRotation(0.1),
        RandomTranslation(0.1, 0.1),
        RandomZoom(0.1),
        Conv2D(3, 3),
        Dropout(0.5),
    ],  # fmt: skip
    "softmax-layer": lambda: [Flatten(), Dense(5), Softmax()],
}


@pytest.mark.parametrize("case", CASES)
def test_each_layer_matches_onnx_runtime(tmp_path, rng, case):
    set_random_seed(0)
    layers = CASES[case]()
    shape = (11, 10, 3) if case != "reshape" else (7, 10, 3)
    model = Sequential([minicnn.Input(shape=shape), *layers])
    if not isinstance(model.layers[-1], Softmax):  # a probability head, as models end
        if len(model.output_shape) != 2:
            model.add(Flatten())
        model.add(Dense(7, activation="softmax"))
    _shake_batchnorm(model, rng)
    roundtrip(model, tmp_path, rng)


def test_graph_is_checked_with_metadata_and_a_dynamic_batch(tmp_path, rng):
    model = Sequential([Conv2D(2, 3, input_shape=(8, 8, 1)), Flatten(), Dense(3, activation="softmax")])  # fmt: skip
    path, _ = roundtrip(model, tmp_path, rng)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version >= 17
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["minicnn_version"] == minicnn.__version__ and "(N, H, W, C)" in props["input"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [8, 8, 1]


def test_unexportable_layer_is_named_and_nothing_is_written(tmp_path):
    class Mystery(Layer):
        pass

    model = Sequential([Conv2D(2, 3, input_shape=(6, 6, 1)), Mystery(name="mystery"), Flatten(), Dense(2, activation="softmax")])  # fmt: skip
    path = tmp_path / "x.onnx"
    with pytest.raises(ExportError, match=r'layer "mystery" \(Mystery\) has no ONNX export'):
        model.export(path)
    assert not path.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match='format="onnx" only'):
        model.export(path, format="tf_saved_model")


def test_command_line_export(tmp_path, seed_model_file, capsys):
    from minicnn.cli import main

    out = tmp_path / "seed.onnx"
    assert main(["export", str(seed_model_file), str(out)]) == 0
    assert "ONNX opset 17" in capsys.readouterr().out
    model = minicnn.load_model(seed_model_file)
    x = np.random.default_rng(0).random((5, 28, 28, 1), dtype=np.float32)
    theirs = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]  # fmt: skip
    assert np.abs(theirs - model.predict(x, verbose=0)).max() <= 1e-5
    assert main(["export", str(tmp_path / "missing.minicnn"), str(out)]) == 1


@pytest.mark.slow
def test_trained_seed_model_on_mnist_test_images(tmp_path, rng, capsys):
    from minicnn.cli import build_seed_model, load_mnist

    set_random_seed(0)
    (x, y), (xt, yt) = load_mnist(limit=5000)
    model = build_seed_model()
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    _, worst = roundtrip(model, tmp_path, rng, batches=(1, 7, 64, 1000), x=xt)
    with capsys.disabled():
        print(f"\nONNX Runtime vs predict, trained seed model, 1,000 MNIST test images: max |diff| {worst:.2e}")  # fmt: skip


def test_report_worst_difference(capsys):
    """Runs last in this file: the worst difference of every comparison above."""
    if WORST:
        with capsys.disabled():
            print(f"\nONNX export: {len(WORST)} models, worst |ORT - predict| {max(WORST):.2e}")


@pytest.mark.parametrize("name", ["residual", "branches", "two_in_two_out", "siamese"])
def test_graphs_match_onnx_runtime(tmp_path, rng, name):
    """Residual adds, concatenations (channels and features), several inputs and outputs, a
    shared layer: ONNX Runtime gives what predict gives."""
    import test_graph

    model = getattr(test_graph, name)()
    path = tmp_path / "graph.onnx"
    model.export(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    xs = [rng.random((5, *t.shape[1:]), dtype=np.float32) for t in model.inputs]
    names = [i.name for i in session.get_inputs()]
    theirs = session.run(None, dict(zip(names, xs)))
    ours = model.predict(xs, verbose=0)
    ours = ours if isinstance(ours, list) else [ours]
    assert len(theirs) == len(ours) == len(model.outputs)
    for a, b in zip(theirs, ours):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-6)


def test_keras_ops_nodes_are_refused_by_name(tmp_path):
    """ops.add records an Operation named like the Add layer: it must not export as one."""
    from minicnn import ops

    inputs = minicnn.Input((4,))
    model = minicnn.Model(inputs, Dense(2)(ops.add(inputs, 2.0)))
    with pytest.raises(ExportError, match=r"keras.ops.add has no ONNX export yet"):
        model.export(tmp_path / "ops.onnx")
    assert not (tmp_path / "ops.onnx").exists()
