"""Models as graphs (keras.Model(inputs, outputs)) against the same layers run by hand: forward,
every gradient by float64 finite differences, one Adam step, save/load; a small residual CNN's
gradients against PyTorch autograd; a Sequential and the same chain written functionally train
to identical weights."""

import numpy as np
import pytest
from gradcheck import check, model_gradients, model_loss, numerical_gradient
from referee import need

import minicnn as keras
from minicnn import kernels, layers, maths
from minicnn.utils import set_random_seed, to_categorical

f64 = pytest.mark.usefixtures("float64")


def residual():
    inputs = keras.Input(shape=(6, 5, 2))
    x = layers.Conv2D(3, 3, padding="same", name="stem")(inputs)
    h = layers.BatchNormalization(name="bn")(x)
    h = layers.ReLU(name="relu")(h)
    h = layers.Conv2D(3, 3, padding="same", activation="tanh", name="body")(h)
    x = layers.add([x, h], name="skip")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, layers.Dense(4, activation="softmax", name="head")(x))


def residual_by_hand(model, x, training):
    """The residual model's maths, each layer called on its own."""
    get = model.get_layer
    s = get("stem")(x)
    h = get("body")(get("relu")(get("bn")(s, training=training)))
    return get("head")(get("pool")(get("skip")([s, h])))


def branches():
    inputs = keras.Input(shape=(7, 7, 1))
    a = layers.Conv2D(2, 3, activation="relu", name="a")(inputs)
    b = layers.Conv2D(3, 3, activation="sigmoid", name="b")(inputs)
    x = layers.Concatenate(name="cat")([a, b])
    x = layers.Flatten()(x)
    return keras.Model(inputs, layers.Dense(3, activation="softmax", name="out")(x))


def two_in_two_out():
    image = keras.Input(shape=(6, 6, 1), name="image")
    meta = keras.Input(shape=(4,), name="meta")
    x = layers.Flatten()(layers.Conv2D(2, 3, activation="relu", name="conv")(image))
    m = layers.Dense(5, activation="tanh", name="meta_dense")(meta)
    joint = layers.concatenate([x, m], name="joint")
    digit = layers.Dense(3, activation="softmax", name="digit")(joint)
    parity = layers.Dense(2, activation="softmax", name="parity")(layers.multiply([m, m]))
    return keras.Model({"image": image, "meta": meta}, [digit, parity])


def siamese():
    a, b = keras.Input(shape=(5,), name="left"), keras.Input(shape=(5,), name="right")
    tower = layers.Dense(4, activation="tanh", name="tower")  # one layer, called twice
    d = layers.subtract([tower(a), tower(b)])
    return keras.Model([a, b], layers.Dense(2, activation="softmax", name="same")(layers.multiply([d, d])))  # fmt: skip


def data(model, n, rng):
    xs = [rng.standard_normal((n, *t.shape[1:])) for t in model.inputs]
    ys = [rng.integers(0, t.shape[-1], n) for t in model.outputs]
    return xs, ys


def targets(model, ys):
    be = model.backend
    return model.objectives.targets(ys, [t.shape[-1] for t in model.outputs], be.xp, keras.floatx())  # fmt: skip


@f64
@pytest.mark.parametrize("make", [residual, branches, two_in_two_out, siamese])
def test_every_gradient_of_a_graph_against_finite_differences(make, rng):
    set_random_seed(0)
    model = make()
    model.compile("adam", ["sparse_categorical_crossentropy"] * len(model.outputs))
    for layer in model.leaf_layers():  # a BatchNorm away from its initial 1 and 0
        for k in getattr(layer, "params", {}):
            if k in ("gamma", "beta"):
                layer.params[k][...] = rng.uniform(0.5, 1.5, layer.params[k].shape)
    xs, ys = data(model, 5, rng)
    ts = targets(model, ys)
    _, grads = model_gradients(model, xs, ts)
    assert sorted((lay.name, k) for lay, k in grads) == sorted((lay.name, k) for lay, k in model.trainable_params())  # fmt: skip
    for (layer, k), g in grads.items():
        p = layer.params[k]
        host = p.copy()

        def f(layer=layer, k=k, host=host):
            layer.params[k][...] = host
            return model_loss(model, xs, ts)

        idx = None if host.size <= 40 else rng.choice(host.size, 40, replace=False)
        numeric = numerical_gradient(f, host, indices=idx)
        f()
        check(f"{make.__name__} {layer.name}.{k}", g, numeric, indices=idx)


@pytest.mark.parametrize("training", [False, True])
def test_residual_forward_is_the_layers_run_by_hand(rng, training):
    model = residual()
    x = rng.standard_normal((4, 6, 5, 2)).astype(np.float32)
    model.get_layer("bn").state["moving_mean"][...] = rng.standard_normal(3)
    (y,) = model.run([x], training)  # the plan: fused steps, the softmax head
    np.testing.assert_allclose(y, residual_by_hand(model, x, training), rtol=1e-5, atol=1e-6)


def test_one_adam_step_is_the_rule_on_the_graphs_gradients(rng):
    model = siamese()
    model.compile(keras.optimizers.Adam(learning_rate=0.01), "sparse_categorical_crossentropy")
    xs, ys = data(model, 8, rng)
    xs = [x.astype(np.float32) for x in xs]
    before = {(lay.name, k): lay.params[k].copy() for lay, k in model.trainable_params()}
    _, grads = model_gradients(model, xs, targets(model, ys))
    model.train_on_batch(xs, ys[0])
    b1, b2, eps, lr = 0.9, 0.999, 1e-7, 0.01
    for (layer, k), g in grads.items():
        m, v = (1 - b1) * g, (1 - b2) * g * g
        step = lr * np.sqrt(1 - b2) / (1 - b1) * m / (np.sqrt(v) + eps)
        np.testing.assert_allclose(layer.params[k], before[(layer.name, k)] - step, rtol=1e-4, atol=1e-6)  # fmt: skip


@pytest.mark.parametrize("make", [residual, branches, two_in_two_out, siamese])
def test_save_load_round_trip(make, rng, tmp_path):
    model = make()
    model.compile("adam", ["sparse_categorical_crossentropy"] * len(model.outputs), metrics=[["accuracy"]] * len(model.outputs))  # fmt: skip
    xs, ys = data(model, 16, rng)
    xs = [x.astype(np.float32) for x in xs]
    x = dict(zip(model.input_keys(), xs)) if make is two_in_two_out else xs
    model.fit(x, ys if len(ys) > 1 else ys[0], epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / "m.minicnn")
    again = keras.models.load_model(tmp_path / "m.minicnn")
    assert type(again) is type(model) and [lay.name for lay in again.layers] == [lay.name for lay in model.layers]  # fmt: skip
    for a, b in zip(again.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    ours, theirs = model.predict(x, verbose=0), again.predict(x, verbose=0)
    for a, b in zip(ours if isinstance(ours, list) else [ours], theirs if isinstance(theirs, list) else [theirs]):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    assert again.optimizer.iterations == model.optimizer.iterations == 2


def test_several_outputs_log_under_keras_names(rng):
    model = two_in_two_out()
    model.compile(
        "adam",
        loss={
            "digit": "sparse_categorical_crossentropy",
            "parity": keras.losses.SparseCategoricalCrossentropy(),
        },  # fmt: skip
        loss_weights=[1.0, 0.5],
        metrics={
            "digit": ["accuracy"],
            "parity": [keras.metrics.SparseCategoricalAccuracy(name="acc")],
        },  # fmt: skip
    )
    (image, meta), (yd, yp) = data(model, 20, rng)
    history = model.fit({"image": image, "meta": meta}, {"digit": yd, "parity": yp}, epochs=1, batch_size=10, validation_split=0.5, verbose=0)  # fmt: skip
    assert list(history.history) == sorted(history.history) == [
        "digit_accuracy", "digit_loss", "loss", "parity_acc", "parity_loss",
        "val_digit_accuracy", "val_digit_loss", "val_loss", "val_parity_acc", "val_parity_loss",
    ]  # fmt: skip
    h = {k: v[0] for k, v in history.history.items()}
    assert h["loss"] == pytest.approx(h["digit_loss"] + 0.5 * h["parity_loss"], rel=1e-5)
    values = model.evaluate([image, meta], [yd, yp], verbose=0)
    logs = model.evaluate([image, meta], [yd, yp], verbose=0, return_dict=True)
    assert values == [logs[k] for k in ("loss", "digit_loss", "parity_loss", "digit_accuracy", "parity_acc")]  # fmt: skip
    probs = model.predict({"image": image, "meta": meta}, verbose=0)
    assert isinstance(probs, list) and [p.shape for p in probs] == [(20, 3), (20, 2)]
    assert np.allclose(probs[0].sum(axis=1), 1, atol=1e-5)


def test_loss_for_some_outputs_only_and_keras_errors(rng):
    model = two_in_two_out()
    with pytest.raises(ValueError, match=r"Expected keys \['digit', 'parity'\] in loss dict"):
        model.compile("adam", loss={"digit": "sparse_categorical_crossentropy"})
    with pytest.raises(ValueError, match="Invalid `metrics`"):
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.compile("adam", loss={"digit": "sparse_categorical_crossentropy", "parity": None})
    (image, meta), (yd, _) = data(model, 12, rng)
    history = model.fit([image, meta], {"digit": yd}, epochs=1, verbose=0)
    assert list(history.history) == ["loss"]  # one loss: no per-output entries
    before = model.get_layer("parity").get_weights()
    model.fit([image, meta], [yd, None], epochs=1, verbose=0)
    for a, b in zip(before, model.get_layer("parity").get_weights()):  # no loss reaches it
        np.testing.assert_array_equal(a, b)


def test_shared_layer_and_feature_extractor_share_weights(rng):
    model = siamese()
    tower = model.get_layer("tower")
    assert len(tower.inbound_nodes) == 2 and tower.output is tower.inbound_nodes[0].outputs[0]
    assert [type(lay).__name__ for lay in model.layers] == ["InputLayer", "InputLayer", "Dense", "Subtract", "Multiply", "Dense"]  # fmt: skip
    extractor = keras.Model(model.inputs[0], tower.output)
    x = rng.standard_normal((3, 5)).astype(np.float32)
    np.testing.assert_allclose(extractor.predict(x, verbose=0), np.tanh(x @ tower.params["kernel"] + tower.params["bias"]), rtol=1e-5, atol=1e-6)  # fmt: skip
    model.compile("sgd", "sparse_categorical_crossentropy")
    before = extractor.predict(x, verbose=0)
    model.fit([x, x[::-1]], np.array([0, 1, 0]), epochs=2, verbose=0)
    assert not np.allclose(before, extractor.predict(x, verbose=0))  # the same weights moved


def test_a_model_called_as_a_layer_twice(rng):
    t_in = keras.Input(shape=(4,))
    tower = keras.Model(t_in, layers.Dense(3, activation="relu", name="t_dense")(t_in), name="tower")  # fmt: skip
    a, b = keras.Input(shape=(4,)), keras.Input(shape=(4,))
    out = layers.Dense(2, activation="softmax")(layers.concatenate([tower(a), tower(b, training=False)]))  # fmt: skip
    model = keras.Model([a, b], out)
    assert [type(lay).__name__ for lay in model.layers] == ["InputLayer", "InputLayer", "Functional", "Concatenate", "Dense"]  # fmt: skip
    assert model.count_params() == 4 * 3 + 3 + 6 * 2 + 2
    xa, xb = rng.standard_normal((2, 5, 4)).astype(np.float32)
    w = tower.get_layer("t_dense")
    h = lambda x: np.maximum(x @ w.params["kernel"] + w.params["bias"], 0)  # noqa: E731
    d = model.layers[-1]
    expected = keras.maths.softmax(np.concatenate([h(xa), h(xb)], axis=1) @ d.params["kernel"] + d.params["bias"])  # fmt: skip
    np.testing.assert_allclose(model.predict([xa, xb], verbose=0), expected, rtol=1e-5, atol=1e-6)
    text = []
    model.summary(print_fn=text.append)
    assert "Connected to" in text[0] and "tower[0][0]" in text[0] and "tower[1][0]" in text[0]


def test_sequential_and_the_same_chain_written_functionally_train_identically(rng):
    x = rng.random((48, 8, 8, 1), dtype=np.float32)
    y = rng.integers(0, 3, 48)

    def chain():
        return [layers.Conv2D(4, 3, activation="relu"), layers.BatchNormalization(), layers.Flatten(), layers.Dropout(0.2), layers.Dense(3, activation="softmax")]  # fmt: skip

    set_random_seed(5)
    seq = keras.Sequential([keras.Input((8, 8, 1)), *chain()])
    set_random_seed(5)
    inputs = keras.Input((8, 8, 1))
    h = inputs
    for layer in chain():
        h = layer(h)
    fun = keras.Model(inputs, h)
    for model in (seq, fun):
        set_random_seed(9)
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    for a, b in zip(seq.get_weights(), fun.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_small_residual_cnn_gradients_against_pytorch(rng):
    torch = need("torch")
    keras.set_floatx("float64")
    try:
        model = residual()
        model.compile("sgd", "categorical_crossentropy")
        x = rng.standard_normal((3, 6, 5, 2))
        y = to_categorical(rng.integers(0, 4, 3), 4, dtype="float64")
        loss, grads = model_gradients(model, [x], targets(model, [y]))
    finally:
        keras.set_floatx("float32")
    w = {(lay.name, k): torch.tensor(lay.params[k], requires_grad=True) for lay, k in model.trainable_params()}  # fmt: skip
    F = torch.nn.functional
    t = torch.tensor(x).permute(0, 3, 1, 2)

    def conv(h, n):
        return F.conv2d(F.pad(h, (1, 1, 1, 1)), w[(n, "kernel")].permute(3, 2, 0, 1), w[(n, "bias")])  # fmt: skip

    s = conv(t, "stem")
    h = F.relu(F.batch_norm(s, None, None, w[("bn", "gamma")], w[("bn", "beta")], training=True, eps=1e-3))  # fmt: skip
    h = torch.tanh(conv(h, "body"))
    z = (s + h).mean(dim=(2, 3)) @ w[("head", "kernel")] + w[("head", "bias")]
    theirs = -(torch.tensor(y) * torch.log_softmax(z, dim=1)).sum(dim=1).mean()
    theirs.backward()
    assert float(loss) == pytest.approx(float(theirs.detach()), rel=1e-12)
    for (layer, k), g in grads.items():
        np.testing.assert_allclose(g, w[(layer.name, k)].grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=f"{layer.name}.{k}")  # fmt: skip


@pytest.mark.parametrize("make", [residual, branches])
def test_a_resumed_graph_is_bit_exact(make, rng, tmp_path):
    model = make()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    xs, ys = data(model, 40, rng)
    x, y = xs[0].astype(np.float32), ys[0]
    set_random_seed(1)
    start = model.get_weights()
    model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    whole = model.get_weights()
    model = make()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.set_weights(start)
    set_random_seed(1)
    cb = keras.callbacks.ModelCheckpoint(tmp_path / "c.minicnn")
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[cb])
    ckpt = keras.load_checkpoint(tmp_path / "c.minicnn")
    history = ckpt.model.fit(x, y, batch_size=8, epochs=3, initial_epoch=ckpt.epoch, verbose=0)
    assert len(history.history["loss"]) == 3
    for a, b in zip(ckpt.model.get_weights(), whole):
        np.testing.assert_array_equal(a, b)


def test_graph_errors_name_what_is_wrong():
    a, b = keras.Input(shape=(4,)), keras.Input(shape=(4,))
    with pytest.raises(ValueError, match="Graph disconnected"):
        keras.Model(a, layers.add([a, b]))
    with pytest.raises(ValueError, match=r'The name "d" is used 2 times in the model'):
        keras.Model(a, layers.Dense(2, name="d")(layers.Dense(3, name="d")(a)))
    with pytest.raises(ValueError, match=r'"Subtract" layer should be called on exactly 2 inputs'):
        layers.subtract([a, b, a])
    with pytest.raises(ValueError, match="incompatible shapes"):
        layers.add([a, keras.Input(shape=(3,))])
    with pytest.raises(ValueError, match="matching shapes except for the concatenation axis"):
        layers.concatenate([keras.Input(shape=(2, 3)), keras.Input(shape=(4, 2))])
    with pytest.raises(ValueError, match=r'Layer "dense.*" \(Dense\) expects input of rank 2'):
        layers.Dense(2)(keras.Input(shape=(4, 4)))
    with pytest.raises(TypeError, match="symbolic"):
        np.asarray(a)
    assert (a + b).shape == (None, 4)  # keras.ops, as in Keras
    with pytest.raises(ValueError, match="No such layer: nope"):
        keras.Model(a, layers.Dense(2)(a)).get_layer("nope")
    with pytest.raises(ValueError, match="needs inputs and outputs"):
        keras.Model()


def test_summary_and_plan_of_a_graph():
    model = residual()
    model.compile("adam", "sparse_categorical_crossentropy")
    text = []
    model.summary(print_fn=text.append, show_plan=True)
    out = text[0]
    for expected in ("Connected to", "stem[0][0], body[0][0]", "(None, 6, 5, 3)", "Plan (training, batch 32)", "Plan (inference, batch 32)", "bn + relu"):  # fmt: skip
        assert expected in out, expected
    from minicnn.maths.conv import ALGORITHMS
    from minicnn.plan.steps import CONV_KEEPS

    assert set(CONV_KEEPS) == set(ALGORITHMS)  # the plan can say what each algorithm keeps
    chain = keras.Sequential([keras.Input((4,)), layers.Dense(2)])
    lines = []
    chain.summary(print_fn=lines.append)
    assert "Connected to" not in lines[0] and "input_layer" not in lines[0]


def test_branches_and_two_outputs_forward_is_the_layers_run_by_hand(rng):
    model = branches()
    x = rng.standard_normal((3, 7, 7, 1)).astype(np.float32)
    get = model.get_layer
    flat = model.layers[-2]
    by_hand = get("out")(flat(get("cat")([get("a")(x), get("b")(x)])))
    np.testing.assert_allclose(model.predict(x, verbose=0), by_hand, rtol=1e-5, atol=1e-6)
    model = two_in_two_out()
    image, meta = rng.standard_normal((4, 6, 6, 1)).astype(np.float32), rng.standard_normal((4, 4)).astype(np.float32)  # fmt: skip
    get = model.get_layer
    m = get("meta_dense")(meta)
    joint = get("joint")([get("conv")(image).reshape(4, -1), m])  # Flatten is a reshape
    digit, parity = model.predict({"meta": meta, "image": image}, verbose=0)
    np.testing.assert_allclose(digit, get("digit")(joint), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(parity, get("parity")(m * m), rtol=1e-5, atol=1e-6)


def test_a_few_images_at_inference_run_the_array_code_and_agree_with_the_kernels(rng):
    """The plan for inference on at most SMALL_BATCH images asks for no kernel (their hand-offs
    and, cold, their compilation cost more than they save): a fresh process predicting one
    image never imports numba. Both paths give the same answers to float32 rounding."""
    import subprocess
    import sys

    from minicnn.plan.plan import SMALL_BATCH

    model = residual()
    assert not model.plan(1, False).kernels and model.plan(SMALL_BATCH + 1, False).kernels
    assert model.plan(1, True).kernels  # training always asks for them
    x = rng.random((SMALL_BATCH + 3, 6, 5, 2), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x, batch_size=1, verbose=0), model.predict(x, batch_size=len(x), verbose=0), rtol=2e-5, atol=2e-6)  # fmt: skip
    code = (
        "import sys, numpy as np, minicnn\n"
        "from minicnn.cli import build_seed_model\n"
        "m = build_seed_model()\n"
        "m.predict(np.zeros((1, 28, 28, 1), np.float32), verbose=0)\n"
        "print('numba' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_few_images_run_the_kernels_once_the_model_has_run_them(rng):
    """Once a plan of the model has run its kernels (compiled now), inference on a few images
    runs them too, on every core (numba's thread count left as it was). Winograd's fused kernel
    takes a 3x3 convolution over a batch of at least _FUSED_MIN_PIXELS output pixels, the
    register-blocked direct kernel one over fewer, and a layer of more filters than that
    kernel holds stays Winograd. Same answers to float32 rounding."""
    numba = pytest.importorskip("numba")
    from minicnn import kernels
    from minicnn.maths import conv

    set_random_seed(0)
    wide = kernels.BLOCKED_MAX_FILTERS + 8
    assert 12 * 12 < conv._FUSED_MIN_PIXELS <= 28 * 28 and 6 * 12 * 12 >= conv._FUSED_MIN_PIXELS
    model = keras.Sequential([keras.Input((32, 32, 1)), layers.Conv2D(24, 3, activation="relu"),
        layers.Conv2D(24, 3, activation="relu"), layers.MaxPooling2D(2),  # 28x28, pooled
        layers.Conv2D(24, 3, activation="relu"), layers.Conv2D(wide, 3, activation="relu"),  # 12x12, 10x10
        layers.Flatten(), layers.Dense(3, activation="softmax")])  # fmt: skip
    x = rng.random((6, 32, 32, 1), dtype=np.float32)
    cold = [model.predict_on_batch(x[i : i + 1]) for i in range(len(x))]
    assert not model.plan(1, False).kernels
    whole = model.predict_on_batch(x)  # a kernel plan runs
    threads = numba.get_num_threads()
    warm = [model.predict_on_batch(x[i : i + 1]) for i in range(len(x))]
    assert numba.get_num_threads() == threads
    plan = model.plan(1, False)
    assert plan.kernels
    algorithms = [s.algorithm() for s in plan.steps if s.algorithm()]
    assert algorithms == ["direct", "winograd", "direct", "winograd"], algorithms
    assert [s.algorithm() for s in model.plan(6, False).steps if s.algorithm()] == ["direct", "winograd", "winograd", "winograd"]  # fmt: skip
    for a, b, c in zip(cold, warm, whole):
        np.testing.assert_allclose(b, a, rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(b[0], c, rtol=2e-5, atol=2e-6)
    assert any(not np.array_equal(a, b) for a, b in zip(cold, warm))  # another path ran


def _set_batchnorm_far_from_identity(layer, rng):
    """Statistics and weights far from 0 and 1, so a fold that drops any of them shows."""
    c = layer.get_weights()[0].shape[0]
    layer.set_weights([rng.uniform(0.5, 2, c), rng.normal(0, 1, c), rng.normal(0, 1, c), rng.uniform(0.2, 3, c)])  # fmt: skip


def _assert_predict_is_layers_one_by_one(model, x, dtype):
    """A chain model's predict (its fused inference plan) against its layers run one by one."""
    h = x
    for layer in model.layers[1:]:
        h, _ = layer.forward(h, False)
    got = model.predict(x, batch_size=x.shape[0], verbose=0)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, h, rtol={"float32": 2e-5, "float64": 1e-12}[dtype], atol=1e-7)  # fmt: skip


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batchnorm_folds_into_the_valid_convolution_after_it(rng, dtype):
    """At inference a BatchNormalization after a ReLU, and the Dropouts after it, go into the
    next convolution's kernel and bias when it reads no padding (conv(x * s + t) =
    conv_{k*s}(x) + sum k*t); before a "same" convolution, or where the batch is smaller than
    the kernel (the fold remakes the kernel each call), it maps the output of the convolution
    and ReLU before it in their step; in training it stays a step. The fused plan against the
    layers run one by one."""
    keras.set_floatx(dtype)
    try:
        inputs = keras.Input(shape=(12, 11, 2))
        x = layers.Conv2D(4, 3, activation="relu", name="c1")(inputs)
        x = layers.BatchNormalization(name="bn1")(x)
        x = layers.Dropout(0.3, name="drop")(x)
        x = layers.Conv2D(40, 3, activation="relu", name="c2")(x)  # valid: bn1 folds into it
        x = layers.BatchNormalization(name="bn2")(x)
        x = layers.Conv2D(3, 3, padding="same", name="c3")(x)  # same: bn2 stays
        out = layers.Dense(3, activation="softmax")(layers.Flatten()(x))
        model = keras.Model(inputs, out)
        for name in ("bn1", "bn2"):
            _set_batchnorm_far_from_identity(model.get_layer(name), rng)
        rows = {r[0]: r for r in model.plan(8, False).describe()}
        # bn1 into c2's kernel; bn2 (c3 reads padding) onto c2's output
        assert rows["bn1 + drop + c2 + bn2"][3] == "batchnorm before, relu, batchnorm after"
        assert "c1" in rows
        assert {"bn1", "bn2"} <= {r[0] for r in model.plan(8, True).describe()}  # training
        # one image: 10 x 9 x 4 inputs against a 3 x 3 x 4 x 40 kernel, so no fold: onto c1's
        rows = {r[0]: r for r in model.plan(1, False).describe()}
        assert rows["c1 + bn1"][3] == "relu, batchnorm after" and {"drop", "c2 + bn2"} <= set(rows)
        for n in (8, 1):
            _assert_predict_is_layers_one_by_one(model, rng.standard_normal((n, 12, 11, 2)).astype(dtype), dtype)  # fmt: skip
    finally:
        keras.set_floatx("float32")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batchnorm_after_the_relu_maps_the_convolutions_output(rng, dtype):
    """At inference a BatchNormalization after a convolution's ReLU (its own activation or a
    ReLU layer) that cannot fold into the next convolution is applied in the convolution's
    step; nothing fuses after it: a MaxPooling2D (it does not commute with a negative scale)
    and a ReLU stay steps. Against the layers run one by one, its scales negative somewhere."""
    keras.set_floatx(dtype)
    try:
        inputs = keras.Input(shape=(14, 14, 3))
        x = layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inputs)
        x = layers.BatchNormalization(name="bn1")(x)
        x = layers.MaxPooling2D(name="p1")(x)  # after the map: its own step
        x = layers.Conv2D(12, 3, padding="same", name="c2")(x)
        x = layers.ReLU(name="r2")(x)
        x = layers.BatchNormalization(name="bn2")(x)
        x = layers.ReLU(name="r3")(x)  # after the map: its own step
        x = layers.Conv2D(6, 3, padding="same", activation="relu", name="c3")(x)
        out = layers.Dense(3, activation="softmax")(layers.Flatten()(layers.BatchNormalization(name="bn3")(x)))  # fmt: skip
        model = keras.Model(inputs, out)
        for name in ("bn1", "bn2", "bn3"):
            bn = model.get_layer(name)
            _set_batchnorm_far_from_identity(bn, rng)
            gamma, *rest = bn.get_weights()
            bn.set_weights([gamma * np.where(np.arange(gamma.size) % 2, -1, 1), *rest])
        for n in (1, 5):
            rows = {r[0]: r for r in model.plan(n, False).describe()}
            assert rows["c1 + bn1"][3] == "relu, batchnorm after" and "p1" in rows
            assert rows["c2 + r2 + bn2"][3] == "relu, batchnorm after" and "r3" in rows
            assert rows["c3 + bn3"][3] == "relu, batchnorm after"
            assert {"bn1", "bn2 + r3", "bn3"} <= {r[0] for r in model.plan(n, True).describe()}
            _assert_predict_is_layers_one_by_one(model, rng.standard_normal((n, 14, 14, 3)).astype(dtype), dtype)  # fmt: skip
    finally:
        keras.set_floatx("float32")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("width", [12, 72])
def test_max_pooling_fuses_into_the_convolution_before_it(rng, dtype, width):
    """At inference on the CPU, a 2x2 stride-2 MaxPooling2D after a Conv2D (its ReLU, or none,
    and a BatchNormalization + ReLU between them) runs in the convolution's output pass: the
    direct first layer (27x27 out: a row and column the pooling drops), and the second layer's
    direct kernel (12 channels) or Winograd's (72 x 72: 13x13 tiles cut at the edge). Not with
    another activation, another pool, or in training. The fused plan against the layers run
    one by one."""
    keras.set_floatx(dtype)
    try:
        inputs = keras.Input(shape=(29, 29, 1))
        x = layers.Conv2D(width, 3, activation="relu", name="c1")(inputs)  # direct
        x = layers.MaxPooling2D(name="p1")(x)  # 13x13
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, name="c2")(x)
        x = layers.BatchNormalization(name="bn")(x)
        x = layers.ReLU(name="r")(x)
        x = layers.MaxPooling2D(name="p2")(x)  # 6x6
        x = layers.Conv2D(18, 3, padding="same", activation="tanh", name="c3")(x)
        x = layers.MaxPooling2D(name="p3")(x)  # after tanh: stays a step
        x = layers.Conv2D(17, 3, padding="same", name="c4")(x)
        x = layers.MaxPooling2D(3, name="p4")(x)  # 3x3 windows: stays a step
        out = layers.Dense(3, activation="softmax")(layers.Flatten()(x))
        model = keras.Model(inputs, out)
        _set_batchnorm_far_from_identity(model.get_layer("bn"), rng)
        plan = model.plan(7, False)
        rows = {r[0]: r for r in plan.describe()}
        if kernels.lookup("winograd_input", np, np.dtype(dtype)) is not None:
            assert rows["c1 + p1"][2] == "direct" and "max_pooling" in rows["c1 + p1"][3]
            assert rows["c2 + bn + r + p2"][2] == ("direct" if width == 12 else "winograd")
            assert {"p3", "p4"} <= set(rows)
        assert "p1" in {r[0] for r in model.plan(7, True).describe()}  # training: no fusion
        _assert_predict_is_layers_one_by_one(model, rng.standard_normal((7, 29, 29, 1)).astype(dtype), dtype)  # fmt: skip
    finally:
        keras.set_floatx("float32")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_inference_takes_the_blocked_direct_kernel_where_gemms_would_run(rng, dtype):
    """At inference on the CPU, layers that im2col would run (a strided 3x3 on few channels)
    take the register-blocked direct kernel, and so do small layers that shifted GEMMs would
    (a 5x5 at stride 1), max-pooling in its pass; in training im2col and shifted stay (the
    forward of shifted is the blocked kernel's there). Predict
    against the layers run one by one on the array code (im2col and GEMMs), an independent
    path."""
    keras.set_floatx(dtype)
    try:
        inputs = keras.Input(shape=(15, 14, 8))
        x = layers.Conv2D(24, 3, strides=2, padding="same", activation="relu", name="c1")(inputs)
        x = layers.Conv2D(20, 5, padding="same", name="c2")(x)  # 24 channels, 5x5: shifted
        x = layers.Conv2D(12, (2, 3), activation="relu", name="c3")(x)
        x = layers.MaxPooling2D(name="p")(x)  # into c3's pass at inference: 7x5 -> 3x2
        model = keras.Model(inputs, layers.Dense(3, activation="softmax")(layers.Flatten()(x)))
        want = "direct" if kernels.lookup("conv_direct", np, np.dtype(dtype)) is not None else None
        algos = {r[0]: r[2] for r in model.plan(7, False).describe()}
        assert [algos[c] for c in ("c1", "c2", "c3 + p")] == [want or "im2col", want or "shifted", want or "shifted"]  # fmt: skip
        algos = {r[0]: r[2] for r in model.plan(7, True).describe()}
        assert [algos[c] for c in ("c1", "c2", "c3")] == ["im2col", "shifted", "shifted"]
        xb = rng.standard_normal((7, 15, 14, 8)).astype(dtype)
        got = model.predict(xb, batch_size=7, verbose=0)
        with maths.dispatch.array_code():
            h = xb
            for layer in model.layers[1:]:
                h, _ = layer.forward(h, False)
        assert got.dtype == dtype
        tol = {"float32": 2e-5, "float64": 1e-12}[dtype]
        np.testing.assert_allclose(got, h, rtol=tol, atol=1e-7)
        plan = model.plan(7, True)  # training: shifted's forward is the blocked kernel's too
        outs, _ = plan.forward([xb], True)
        trained = model.probabilities(outs[: plan.n_outputs], plan.logits)[0]
        np.testing.assert_allclose(trained, h, rtol=tol, atol=1e-7)
    finally:
        keras.set_floatx("float32")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("width", [12, 72])
def test_residual_add_fuses_into_the_convolution(rng, dtype, width):
    """At inference on the CPU, a residual block's Add, and the ReLU after it, run in the step
    of the convolution that feeds it: the direct kernel's (12 channels) or in the output pass
    of Winograd's (72: 13x13 tiles cut at the edge). Not when the convolution has an
    activation of its own, when the Add's other input is made after the convolution, or in
    training. The fused plan against the layers run one by one."""
    keras.set_floatx(dtype)
    try:
        inputs = keras.Input(shape=(13, 13, width))
        a = layers.Conv2D(width, 3, padding="same", activation="relu", name="c1")(inputs)
        b = layers.Conv2D(width, 3, padding="same", name="c2")(a)
        s = layers.ReLU(name="r1")(layers.Add(name="add1")([inputs, b]))  # fuses into c2
        c = layers.Conv2D(width, 3, padding="same", activation="relu", name="c3")(s)
        t = layers.Add(name="add2")([c, s])  # c3 has its own ReLU: stays a step
        d = layers.Conv2D(width, 3, padding="same", name="c4")(t)
        e = layers.Conv2D(width, 3, padding="same", name="c5")(t)
        u = layers.Add(name="add3")([e, d])  # the later of c4 and c5 takes it, not both
        model = keras.Model(inputs, layers.GlobalAveragePooling2D()(u))
        rows = {r[0]: r for r in model.plan(7, False).describe()}
        if kernels.lookup("winograd_input", np, np.dtype(dtype)) is not None:
            assert rows["c2 + add1 + r1"][2] == ("direct" if width == 12 else "winograd")
            assert rows["c2 + add1 + r1"][3] == "add, relu"
            assert "add2" in rows
            assert {"c4 + add3", "c5"} <= set(rows) or {"c5 + add3", "c4"} <= set(rows)
        assert "add1" in {r[0] for r in model.plan(7, True).describe()}  # training: no fusion
        x = rng.standard_normal((7, 13, 13, width)).astype(dtype)
        f = {name: model.get_layer(name).forward for name in ("c1", "c2", "c3", "c4", "c5")}
        a = f["c1"](x, False)[0]
        s = np.maximum(x + f["c2"](a, False)[0], 0)
        t = f["c3"](s, False)[0] + s
        want = (f["c5"](t, False)[0] + f["c4"](t, False)[0]).mean(axis=(1, 2))
        got = model.predict(x, batch_size=7, verbose=0)
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol={"float32": 2e-5, "float64": 1e-12}[dtype], atol=1e-6)  # fmt: skip
    finally:
        keras.set_floatx("float32")
