"""The benchmark's models in each engine, and each engine's own loops for training and
inference. Imported by benchmarks/_worker.py after it has imported what the contender imports
first; every function imports its framework itself, so a worker loads only its own.

Models (the same layers, sizes and optimizer, Adam 1e-3, in every engine):
- seed: the Keras tutorial's network (Conv 64, Conv 32, Dense 10), 3x3 convolutions;
- convnet: keras.io's "Simple MNIST convnet" (Conv 32, MaxPool, Conv 64, MaxPool, Dropout 0.5,
  Dense 10);
- bn_augment: rotation/zoom/shift, then three convolutions each with BatchNorm (one 5x5
  stride 2), Dropout, global average pooling;
- best: the best recipe's network (minicnn/recipes.py: Deotte's 7 convolutions + BatchNorm, 5x5
  stride-2 convolutions, Dropout 0.4, the same augmentation), with its EMA in minicnn and Keras;
- separable: Conv 32, then DepthwiseConv2D, SeparableConv2D 64, MaxPool, SeparableConv2D 64,
  global average pooling (PyTorch: groups=C convolutions and 1x1 ones);
- residual: a functional residual CNN: Conv 32, MaxPool, a residual block of two 3x3
  convolutions (32) added to its input, Conv 64, a residual block at 64, global average
  pooling, Dense 10 (minicnn and Keras: the functional API with Add; PyTorch: a Module);
- autoencoder: keras.io's convolutional autoencoder, its decoder's second Conv2DTranspose an
  UpSampling2D: Conv 32, MaxPool, Conv 32, MaxPool, Conv2DTranspose 32 (stride 2), UpSampling2D,
  Conv 1 with a sigmoid; trained to reproduce its input with the mean squared error;
- strided: keras.io's VAE encoder's convolutions (Conv 32 and Conv 64, 3x3, stride 2, "same";
  no pooling), Dense 16 and a Dense 10 classifier head.
"""

from __future__ import annotations

import math
import time

import numpy as np

MODELS = (
    "seed",
    "convnet",
    "bn_augment",
    "best",
    "residual",
    "separable",
    "autoencoder",
    "strided",
)
AUGMENTED = {"bn_augment": (0.03, 0.1, 0.1), "best": (10 / 360, 0.1, 0.1)}  # turns, zoom, shift


# -- minicnn --------------------------------------------------------------------------------------


def minicnn_build(name: str):
    import minicnn as keras
    from minicnn import layers
    from minicnn.recipes import best_model, seed_model

    keras.utils.set_random_seed(0)
    if name == "best":
        return best_model()
    if name == "residual":
        model = _residual_functional(keras, layers)
        model.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy", metrics=["accuracy"])  # fmt: skip
        return model
    if name == "seed":
        model = seed_model()
    elif name == "separable":
        model = keras.Sequential([keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu"), layers.DepthwiseConv2D(3, activation="relu"),
            layers.SeparableConv2D(64, 3, activation="relu"), layers.MaxPooling2D(2),
            layers.SeparableConv2D(64, 3, activation="relu"), layers.GlobalAveragePooling2D(),
            layers.Dense(10, activation="softmax")])  # fmt: skip
    elif name == "autoencoder":
        model = keras.Sequential([keras.Input(shape=(28, 28, 1)), *_autoencoder(layers)])
        model.compile(keras.optimizers.Adam(1e-3), "mse")
        return model
    elif name == "strided":
        model = keras.Sequential([keras.Input(shape=(28, 28, 1)), *_strided(layers)])
    elif name == "convnet":
        model = keras.Sequential([keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2),
            layers.Flatten(), layers.Dropout(0.5), layers.Dense(10, activation="softmax")])  # fmt: skip
    else:
        turns, zoom, shift = AUGMENTED[name]
        model = keras.Sequential([keras.Input(shape=(28, 28, 1)),
            layers.RandomRotation(turns), layers.RandomZoom(zoom), layers.RandomTranslation(shift, shift),
            layers.Conv2D(32, 3, use_bias=False), layers.BatchNormalization(), layers.ReLU(),
            layers.Conv2D(32, 5, strides=2, padding="same", use_bias=False),
            layers.BatchNormalization(), layers.ReLU(), layers.Dropout(0.4),
            layers.Conv2D(64, 3, use_bias=False), layers.BatchNormalization(), layers.ReLU(),
            layers.GlobalAveragePooling2D(), layers.Dense(10, activation="softmax")])  # fmt: skip
    model.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy", metrics=["accuracy"])
    return model


def _residual_functional(keras, layers):
    """The residual CNN in Keras's functional API (minicnn's and Keras's alike)."""

    def block(x, f):
        y = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
        y = layers.Conv2D(f, 3, padding="same")(y)
        return layers.ReLU()(layers.Add()([x, y]))

    inp = keras.Input(shape=(28, 28, 1))
    x = layers.MaxPooling2D(2)(layers.Conv2D(32, 3, activation="relu")(inp))
    x = block(x, 32)
    x = block(layers.Conv2D(64, 3, activation="relu")(x), 64)
    out = layers.Dense(10, activation="softmax")(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inp, out)


def _strided(layers) -> list:
    """The strided model's layers in Keras's API (minicnn's and Keras's alike)."""
    return [layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
            layers.Conv2D(64, 3, strides=2, padding="same", activation="relu"), layers.Flatten(),
            layers.Dense(16, activation="relu"), layers.Dense(10, activation="softmax")]  # fmt: skip


def _autoencoder(layers) -> list:
    """The autoencoder's layers in Keras's API (minicnn's and Keras's alike)."""
    return [layers.Conv2D(32, 3, padding="same", activation="relu"), layers.MaxPooling2D(2),
            layers.Conv2D(32, 3, padding="same", activation="relu"), layers.MaxPooling2D(2),
            layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu"),
            layers.UpSampling2D(2), layers.Conv2D(1, 3, padding="same", activation="sigmoid")]  # fmt: skip


def train_flop_per_image(name: str) -> tuple[float, float]:
    """(training, inference) FLOPs per image of the direct convolution and the Dense products:
    inference is the forward pass; training adds the weight gradient of every layer and the
    input gradient of every layer after the first."""
    model = minicnn_build(name)
    forward, train, first = 0.0, 0.0, True
    for node in model.graph.nodes:  # every layer call, in order (nested models as one)
        layer = node.layer
        kind = type(layer).__name__
        shape = node.outputs[0].shape
        if kind == "Conv2D":
            kh, kw = layer.kernel_size
            c = layer.params["kernel"].shape[2]
            oh, ow, f = shape[-3:]
            flop = 2.0 * oh * ow * kh * kw * c * f
        elif kind in ("DepthwiseConv2D", "SeparableConv2D"):
            kh, kw, c, m = layer.params["kernel" if kind == "DepthwiseConv2D" else "depthwise_kernel"].shape  # fmt: skip
            oh, ow, f = shape[-3:]
            flop = 2.0 * oh * ow * kh * kw * c * m + (2.0 * oh * ow * c * m * f if kind == "SeparableConv2D" else 0)  # fmt: skip
        elif kind == "Conv2DTranspose":  # the adjoint of a convolution of its output
            kh, kw, f, c = layer.params["kernel"].shape
            h, w = node.inputs[0].shape[1:3]
            flop = 2.0 * h * w * kh * kw * c * f
        elif kind == "Dense":
            flop = 2.0 * np.prod(layer.params["kernel"].shape)
        else:
            continue
        forward += flop
        train += flop * (2 if first else 3)
        first = False
    return train, forward


def fit_predict_loops(model, x, y):
    """Training and inference through Keras's own ``fit`` and ``predict`` (minicnn's and
    Keras's alike): images/s of one epoch over the first n images, of predicting them."""

    def train(n, batch):
        start = time.perf_counter()
        model.fit(x[:n], y[:n], batch_size=batch, epochs=1, verbose=0)
        return n / (time.perf_counter() - start)

    def infer(n, batch):
        start = time.perf_counter()
        if n == batch == 1:  # one image: the call meant for it (predict's per-call setup is not)
            model.predict_on_batch(x[:1])
        else:
            model.predict(x[:n], batch_size=batch, verbose=0)
        return n / (time.perf_counter() - start)

    return train, infer


def minicnn_loops(name: str, x, y):
    return fit_predict_loops(minicnn_build(name), x, x if name == "autoencoder" else y)


# -- PyTorch --------------------------------------------------------------------------------------


def torch_build(name: str):
    import torch
    from torch import nn

    torch.manual_seed(0)
    if name == "residual":

        class Block(nn.Module):
            def __init__(self, f):
                super().__init__()
                self.a, self.b = nn.Conv2d(f, f, 3, padding=1), nn.Conv2d(f, f, 3, padding=1)

            def forward(self, x):
                return torch.relu(x + self.b(torch.relu(self.a(x))))

        return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), Block(32),
            nn.Conv2d(32, 64, 3), nn.ReLU(), Block(64), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(64, 10))  # fmt: skip
    if name == "seed":
        return nn.Sequential(nn.Conv2d(1, 64, 3), nn.ReLU(), nn.Conv2d(64, 32, 3), nn.ReLU(),
                             nn.Flatten(), nn.Linear(18432, 10))  # fmt: skip
    if name == "separable":

        def separable(cin, cout):  # Keras's SeparableConv2D: depthwise without bias, then 1x1
            return [nn.Conv2d(cin, cin, 3, groups=cin, bias=False), nn.Conv2d(cin, cout, 1)]

        return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3, groups=32), nn.ReLU(),
            *separable(32, 64), nn.ReLU(), nn.MaxPool2d(2), *separable(64, 64), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))  # fmt: skip
    if name == "autoencoder":
        return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.ConvTranspose2d(32, 32, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(32, 1, 3, padding=1), nn.Sigmoid())  # fmt: skip
    if name == "strided":  # padding 1: PyTorch pads both sides where Keras's "same" pads one
        return nn.Sequential(nn.Conv2d(1, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
            nn.Linear(7 * 7 * 64, 16), nn.ReLU(), nn.Linear(16, 10))  # fmt: skip
    if name == "convnet":
        return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.5),
            nn.Linear(1600, 10))  # fmt: skip
    bn = lambda c: nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)  # noqa: E731  (Keras's)
    if name == "bn_augment":
        return nn.Sequential(nn.Conv2d(1, 32, 3, bias=False), bn(32), nn.ReLU(),
            nn.Conv2d(32, 32, 5, stride=2, padding=2, bias=False), bn(32), nn.ReLU(),
            nn.Dropout(0.4), nn.Conv2d(32, 64, 3, bias=False), bn(64), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))  # fmt: skip

    def conv(cin, cout, k, **kw):
        return [nn.Conv2d(cin, cout, k, **kw), nn.ReLU(), bn(cout)]

    return nn.Sequential(*conv(1, 32, 3), *conv(32, 32, 3), *conv(32, 32, 5, stride=2, padding=2),
        nn.Dropout(0.4), *conv(32, 64, 3), *conv(64, 64, 3), *conv(64, 64, 5, stride=2, padding=2),
        nn.Dropout(0.4), *conv(64, 128, 4), nn.Flatten(), nn.Dropout(0.4), nn.Linear(128, 10))  # fmt: skip


def torch_augment(xb, turns, zoom, shift):
    """Rotation, zoom and shift, each image its own, resampled in one call (as minicnn does)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    k = xb.shape[0]
    angle = (torch.rand(k) * 2 - 1) * turns * 2 * math.pi
    scale = 1 + (torch.rand(k) * 2 - 1) * zoom
    move = (torch.rand(k, 2) * 2 - 1) * 2 * shift
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos, -sin, move[:, 0]], 1), torch.stack([sin, cos, move[:, 1]], 1)], 1)  # fmt: skip
    grid = F.affine_grid(theta, xb.shape, align_corners=False)
    return F.grid_sample(xb, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def torch_loops(name: str, x, labels, compiled: bool):
    import torch
    import torch.nn.functional as F  # noqa: N812

    model = torch_build(name)
    opt = torch.optim.Adam(model.parameters(), 1e-3, eps=1e-7)
    X = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    Y = torch.from_numpy(labels)
    aug = AUGMENTED.get(name)

    def step(xb, yb):
        if aug:
            xb = torch_augment(xb, *aug)
        loss = (
            F.mse_loss(model(xb), xb) if name == "autoencoder" else F.cross_entropy(model(xb), yb)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    def forward(xb):
        return model(xb) if name == "autoencoder" else torch.softmax(model(xb), dim=1)

    if compiled:
        step, forward = torch.compile(step), torch.compile(forward)

    def train(n, batch):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(n)
        for lo in range(0, n, batch):
            idx = order[lo : lo + batch]
            loss = step(X[idx], Y[idx])
        loss.item()
        return n / (time.perf_counter() - start)

    def infer(n, batch):
        model.eval()
        start = time.perf_counter()
        with torch.no_grad():
            for lo in range(0, n, batch):
                forward(X[lo : lo + batch]).numpy()
        return n / (time.perf_counter() - start)

    return train, infer


def onnx_loops(name: str, x, path: str):
    """ONNX Runtime on the PyTorch model exported to ONNX (inference only)."""
    import onnxruntime as ort
    import torch

    model = torch_build(name).eval()
    torch.onnx.export(model, torch.zeros(1, 1, 28, 28), path, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False)  # fmt: skip
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    X = np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def infer(n, batch):
        start = time.perf_counter()
        for lo in range(0, n, batch):
            logits = session.run(None, {"x": X[lo : min(lo + batch, n)]})[0]
            if name != "autoencoder":  # a sigmoid's output already
                e = np.exp(logits - logits.max(1, keepdims=True))
                e / e.sum(1, keepdims=True)
        return n / (time.perf_counter() - start)

    return None, infer


# -- Keras 3 on TensorFlow ------------------------------------------------------------------------


def keras_loops(name: str, x, y):
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    if name == "residual":
        model = _residual_functional(keras, layers)
        model.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy", metrics=["accuracy"])  # fmt: skip
        return fit_predict_loops(model, x, y)
    inp = [keras.Input(shape=(28, 28, 1))]
    if name == "seed":
        body = [layers.Conv2D(64, 3, activation="relu"), layers.Conv2D(32, 3, activation="relu"),
                layers.Flatten(), layers.Dense(10, activation="softmax")]  # fmt: skip
    elif name == "separable":
        body = [layers.Conv2D(32, 3, activation="relu"), layers.DepthwiseConv2D(3, activation="relu"),
            layers.SeparableConv2D(64, 3, activation="relu"), layers.MaxPooling2D(2),
            layers.SeparableConv2D(64, 3, activation="relu"), layers.GlobalAveragePooling2D(),
            layers.Dense(10, activation="softmax")]  # fmt: skip
    elif name == "autoencoder":
        model = keras.Sequential(inp + _autoencoder(layers))
        model.compile(keras.optimizers.Adam(1e-3), "mse")
        return fit_predict_loops(model, x, x)
    elif name == "strided":
        body = _strided(layers)
    elif name == "convnet":
        body = [layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2),
            layers.Flatten(), layers.Dropout(0.5), layers.Dense(10, activation="softmax")]  # fmt: skip
    elif name == "bn_augment":
        turns, zoom, shift = AUGMENTED[name]
        body = [layers.RandomRotation(turns), layers.RandomZoom(zoom), layers.RandomTranslation(shift, shift),
            layers.Conv2D(32, 3, use_bias=False), layers.BatchNormalization(), layers.ReLU(),
            layers.Conv2D(32, 5, strides=2, padding="same", use_bias=False),
            layers.BatchNormalization(), layers.ReLU(), layers.Dropout(0.4),
            layers.Conv2D(64, 3, use_bias=False), layers.BatchNormalization(), layers.ReLU(),
            layers.GlobalAveragePooling2D(), layers.Dense(10, activation="softmax")]  # fmt: skip
    else:
        turns, zoom, shift = AUGMENTED[name]

        def conv(f, k, **kw):
            return [layers.Conv2D(f, k, activation="relu", **kw), layers.BatchNormalization()]

        body = [layers.RandomRotation(turns, fill_mode="constant"),
            layers.RandomZoom(zoom, fill_mode="constant"),
            layers.RandomTranslation(shift, shift, fill_mode="constant"),
            *conv(32, 3), *conv(32, 3), *conv(32, 5, strides=2, padding="same"), layers.Dropout(0.4),
            *conv(64, 3), *conv(64, 3), *conv(64, 5, strides=2, padding="same"), layers.Dropout(0.4),
            *conv(128, 4), layers.Flatten(), layers.Dropout(0.4), layers.Dense(10, activation="softmax")]  # fmt: skip
    model = keras.Sequential(inp + body)
    ema = {"use_ema": True, "ema_momentum": 0.999} if name == "best" else {}
    model.compile(
        keras.optimizers.Adam(1e-3, **ema), "categorical_crossentropy", metrics=["accuracy"]
    )
    return fit_predict_loops(model, x, y)
