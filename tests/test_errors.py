"""Bad input gets a ValueError that names what was expected and what was received, raised
before any weight changes."""

import numpy as np
import pytest

import minicnn
from minicnn import Sequential
from minicnn.layers import Conv2D, Dense, Flatten, MaxPooling2D
from minicnn.utils import to_categorical


def compiled(loss="categorical_crossentropy"):
    model = Sequential(
        [
            Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)),
            Flatten(),
            Dense(3, activation="softmax"),
        ]
    )
    model.compile("adam", loss, metrics=["accuracy"])
    return model


@pytest.fixture
def data(rng):
    return rng.random((6, 8, 8, 1)).astype("float32"), to_categorical([0, 1, 2, 0, 1, 2], 3)


def refuses(model, match, call):
    before = model.get_weights()
    with pytest.raises(ValueError, match=match):
        call()
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_wrong_rank(data):
    model, (x, y) = compiled(), data
    refuses(
        model,
        r'layer "conv2d.*expected \(None, 8, 8, 1\)\. Received: x shape \(6, 8, 8\); add a channel axis',
        lambda: model.fit(x[..., 0], y, verbose=0),
    )


def test_wrong_channels(data):
    model, (x, y) = compiled(), data
    refuses(
        model,
        r"expected \(None, 8, 8, 1\)\. Received: x shape \(6, 8, 8, 3\)",
        lambda: model.fit(np.repeat(x, 3, axis=-1), y, verbose=0),
    )


def test_wrong_channels_at_a_layer():
    layer = Conv2D(2, 3)
    layer.maybe_build((None, 8, 8, 1))
    with pytest.raises(
        ValueError,
        match=r'Layer "conv2d.*" \(Conv2D\) was built for inputs with 1 channels \(shape \(None, 8, 8, 1\)\)\. Received: input shape \(None, 8, 8, 3\)',
    ):
        layer(np.zeros((2, 8, 8, 3), dtype="float32"))


def test_x_y_length_mismatch(data):
    model, (x, y) = compiled(), data
    refuses(
        model,
        r"same number of samples\. Received: 6 inputs and 5 targets",
        lambda: model.fit(x, y[:5], verbose=0),
    )


def test_labels_out_of_range(data):
    model, (x, _) = compiled("sparse_categorical_crossentropy"), data
    refuses(
        model,
        r"Labels out of range: the model has 3 outputs, so labels must be in \[0, 2\]\. Received: labels from 0 to 3",
        lambda: model.fit(x, np.array([0, 1, 2, 3, 0, 1]), verbose=0),
    )
    refuses(
        model,
        r"Labels out of range.*from -1",
        lambda: model.evaluate(x, np.array([0, 1, 2, -1, 0, 1]), verbose=0),
    )


def test_one_hot_width_mismatch(data):
    model, (x, _) = compiled(), data
    refuses(
        model,
        r"one-hot targets of shape \(N, 3\).*Received: y shape \(6, 4\)",
        lambda: model.fit(x, to_categorical([0, 1, 2, 3, 0, 1], 4), verbose=0),
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_inputs(data, bad):
    model, (x, y) = compiled(), data
    x = x.copy()
    x[3, 2, 2, 0] = bad
    refuses(
        model,
        r"x contains NaN or inf values \(first in sample 3\)",
        lambda: model.fit(x, y, verbose=0),
    )
    refuses(
        model,
        "validation x contains NaN or inf",
        lambda: model.fit(data[0], y, validation_data=(x, y), verbose=0),
    )


def test_empty_input(data):
    model, (x, y) = compiled(), data
    refuses(model, r"x is empty", lambda: model.fit(x[:0], y[:0], verbose=0))


@pytest.mark.parametrize(
    "make_x, match",
    [
        (lambda x: x.astype(np.complex64), "x must hold real numbers. Received: dtype complex64"),
        (lambda x: x > 0.5, "x must hold real numbers. Received: dtype bool"),
        (lambda x: x.astype(str), "x must hold real numbers"),
        (lambda x: x[0], "wrong shape"),
    ],
)
def test_wrong_input_types(data, make_x, match):
    model, (x, y) = compiled(), data
    for call in (
        lambda: model.fit(make_x(x), y, verbose=0),
        lambda: model.evaluate(make_x(x), y, verbose=0),
        lambda: model.predict(make_x(x), verbose=0),
    ):
        refuses(model, match, call)


def test_bad_targets_and_fit_settings(data):
    model, (x, y) = compiled(), data
    refuses(model, "targets contain NaN or inf", lambda: model.fit(x, y * np.nan, verbose=0))
    refuses(
        model,
        r"y must hold real numbers.*Received: dtype <U",
        lambda: model.fit(x, y.astype(str)[:, 0], verbose=0),
    )
    refuses(
        model,
        r"initial_epoch must be an int in \[0, epochs=2\]. Received: initial_epoch=3",
        lambda: model.fit(x, y, epochs=2, initial_epoch=3, verbose=0),
    )
    refuses(
        model,
        "batch_size must be a positive int. Received: batch_size=0",
        lambda: model.fit(x, y, batch_size=0, verbose=0),
    )
    refuses(
        model,
        "callbacks must be minicnn.callbacks.Callback instances",
        lambda: model.fit(x, y, callbacks=[print], verbose=0),
    )
    assert model.optimizer.iterations == 0


def test_unknown_activation():
    with pytest.raises(
        ValueError,
        match=r"Unknown activation for layer \"dense.*\": expected one of \[.*'relu'.*\]\. Received: activation='rleu'",
    ):
        Dense(3, activation="rleu")


def test_unknown_loss():
    model = Sequential([Dense(3, input_shape=(4,))])
    with pytest.raises(
        ValueError,
        match=r"Unknown loss: expected one of \[.*'mean_squared_error'.*'sparse_categorical_crossentropy'.*\].*Received: loss='mse2'",
    ):
        model.compile("adam", "mse2")


def test_unknown_optimizer():
    model = Sequential([Dense(3, input_shape=(4,))])
    with pytest.raises(
        ValueError,
        match=r"Unknown optimizer: expected one of \['adam', 'adamw', 'rmsprop', 'sgd'\].*Received: optimizer='adamw2'",
    ):
        model.compile("adamw2", "categorical_crossentropy")


def test_compile_takes_keras_3_positions():
    """Keras 3: compile(optimizer, loss, loss_weights, metrics, ...). Metrics given third, as
    Keras 2 code sometimes does, would be taken for loss weights there: say so, change nothing."""
    model = Sequential([Dense(3, input_shape=(4,))])
    with pytest.raises(ValueError, match=r"loss_weights=\['accuracy'\] \(the third argument of compile\(\) is loss_weights, as in Keras 3: pass metrics=\[\.\.\.\] by name\)"):  # fmt: skip
        model.compile("adam", "categorical_crossentropy", ["accuracy"])
    with pytest.raises(ValueError, match=r"steps_per_execution must be 1"):
        model.compile("adam", "categorical_crossentropy", steps_per_execution=4)
    assert model.optimizer is None
    model.compile("adam", "categorical_crossentropy", None, ["accuracy"], run_eagerly=True)
    assert [m.name for m in model.metrics] == ["accuracy"] and type(
        model.optimizer
    ).__name__ == "Adam"


def test_bad_layer_settings():
    with pytest.raises(
        ValueError, match=r'padding must be "valid" or "same"\. Received: padding=\'full\''
    ):
        Conv2D(4, 3, padding="full")
    with pytest.raises(
        ValueError,
        match=r"kernel_size must be a positive int or a tuple of 2 positive ints\. Received: kernel_size=\(3, 0\)",
    ):
        Conv2D(4, (3, 0))
    with pytest.raises(ValueError, match=r"filters must be a positive int\. Received: filters=0"):
        Conv2D(0, 3)
    with pytest.raises(
        ValueError, match=r"expects input of rank 2 \(batch, features\); add Flatten\(\)"
    ):
        Sequential([Conv2D(2, 3, input_shape=(5, 5, 1)), Dense(3)])
    with pytest.raises(ValueError, match=r"needs an image at least that large"):
        Sequential([Conv2D(2, 5, input_shape=(4, 4, 1))])
    with pytest.raises(ValueError, match=r"pool_size \(3, 3\) does not fit"):
        Sequential([MaxPooling2D(3, input_shape=(2, 2, 1))])


def test_fit_before_compile(data):
    model = Sequential([Dense(3, input_shape=(4,))])
    with pytest.raises(RuntimeError, match=r"You must call compile\(\) before fit\(\)"):
        model.fit(np.zeros((2, 4)), np.zeros((2, 3)))


def test_set_weights_checks_every_shape_first():
    model = compiled()
    before = model.get_weights()
    bad = [w + 1 for w in before]
    bad[-1] = np.zeros(4)
    with pytest.raises(
        ValueError, match=r'weight "bias" must have shape \(3,\)\. Received: shape \(4,\)'
    ):
        model.set_weights(bad)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_unknown_backend_and_floatx():
    with pytest.raises(
        ValueError,
        match=r"Unknown backend: expected one of \('numpy', 'cupy'\)\. Received: backend='tpu'",
    ):
        Sequential(backend="tpu")
    with pytest.raises(ValueError, match=r"Unknown floatx.*Received: floatx='float16'"):
        minicnn.set_floatx("float16")
