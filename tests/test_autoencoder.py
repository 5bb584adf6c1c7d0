"""keras.io's convolutional autoencoder pattern (Conv2D and MaxPooling2D down, Conv2D and
UpSampling2D back up, a sigmoid Conv2D out) trained with loss="mse": it must learn, its
reconstruction error falling well below that of the mean image; on MNIST (slow: the real data)
and on synthetic discs that need no download."""

import numpy as np
import pytest

import minicnn
from minicnn import layers


def autoencoder(side: int):
    inputs = layers.Input((side, side, 1))
    x = layers.Conv2D(16, 3, activation="relu", padding="same")(inputs)
    x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.Conv2D(8, 3, activation="relu", padding="same")(x)
    encoded = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.Conv2D(8, 3, activation="relu", padding="same")(encoded)
    x = layers.UpSampling2D(2)(x)
    x = layers.Conv2D(16, 3, activation="relu", padding="same")(x)
    x = layers.UpSampling2D(2)(x)
    outputs = layers.Conv2D(1, 3, activation="sigmoid", padding="same")(x)
    model = minicnn.Model(inputs, outputs)
    model.compile("adam", loss="mse", metrics=["mae"])  # as keras.io compiles it
    return model


def blobs(n, side, rng):
    """Bright discs of random centre and radius: a stand-in for digits that needs no download."""
    yy, xx = np.mgrid[:side, :side]
    c = rng.uniform(3, side - 3, (n, 2, 1, 1))
    r = rng.uniform(2, side / 3, (n, 1, 1))
    d = (yy - c[:, 0]) ** 2 + (xx - c[:, 1]) ** 2
    return (d < r * r).astype(np.float32)[..., None]


def test_an_autoencoder_learns_synthetic_images(rng):
    x = blobs(512, 12, rng)
    model = autoencoder(12)
    baseline = float(((x - x.mean(0)) ** 2).mean())  # predicting the mean image
    history = model.fit(x, x, batch_size=32, epochs=12, verbose=0).history
    assert history["loss"][-1] < 0.5 * baseline and history["loss"][-1] < history["loss"][0]
    p = model.predict(x[:64], verbose=0)
    assert p.shape == (64, 12, 12, 1) and model.evaluate(x[:64], x[:64], verbose=0)[0] == pytest.approx(((p - x[:64]) ** 2).mean(), rel=1e-4)  # fmt: skip


@pytest.mark.slow
def test_an_mnist_convolutional_autoencoder_learns():
    (x, _), (xt, _) = minicnn.datasets.mnist.load_data()
    x = x[:6000, ..., None].astype(np.float32) / 255
    xt = xt[:500, ..., None].astype(np.float32) / 255
    model = autoencoder(28)
    baseline = float(((xt - x.mean(0)) ** 2).mean())
    model.fit(x, x, batch_size=64, epochs=4, validation_data=(xt, xt), verbose=0)
    loss, mae = model.evaluate(xt, xt, verbose=0)
    assert loss < 0.5 * baseline and mae < 0.5 * float(np.abs(xt - x.mean(0)).mean())
