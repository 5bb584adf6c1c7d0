"""A residual CNN for MNIST, built the functional way, with Keras's code as it is written and only
``import minicnn as keras`` (and ``from minicnn import layers``) changed.

    python examples/mnist_residual.py [--epochs 3]
"""

import argparse

import minicnn as keras
from minicnn import layers

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--epochs", type=int, default=3)
args = parser.parse_args()

(x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
x_train = x_train.astype("float32")[..., None] / 255
x_test = x_test.astype("float32")[..., None] / 255


def conv_bn_relu(x, filters):
    x = layers.Conv2D(filters, 3, use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    return layers.ReLU()(x)


def residual_block(x, filters):
    """Two 3x3 convolutions with BatchNormalization, and the block's input added back."""
    shortcut = x
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.add([shortcut, x])
    return layers.ReLU()(x)


inputs = keras.Input(shape=(28, 28, 1))
x = conv_bn_relu(inputs, 32)  # 26x26x32
x = residual_block(x, 32)
x = layers.MaxPooling2D()(x)  # 13x13x32
x = conv_bn_relu(x, 64)  # 11x11x64
x = residual_block(x, 64)
x = layers.GlobalAveragePooling2D()(x)
outputs = layers.Dense(10, activation="softmax")(x)
model = keras.Model(inputs, outputs, name="mnist_resnet")
model.summary()

steps = args.epochs * -(-len(x_train) * 9 // 10 // 128)  # batches of 128 in 90% of the set
schedule = keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=steps)
model.compile(
    optimizer=keras.optimizers.Adam(schedule),
    loss="sparse_categorical_crossentropy",
    metrics=["accuracy"],
)
model.fit(x_train, y_train, batch_size=128, epochs=args.epochs, validation_split=0.1)
loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
print(f"Test loss: {loss:.4f}")
print(f"Test accuracy: {accuracy:.4f}")
