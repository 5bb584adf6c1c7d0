"""Train the Keras tutorial's digit recogniser with minicnn, then test it.

    python examples/mnist.py                      # 3 epochs, batch 32, Adam 1e-3, as the tutorial
    python examples/mnist.py --limit 5000 --epochs 1    # a quick try
    python examples/mnist.py --backend cupy       # the same on an NVIDIA GPU
    mpiexec -n 2 python examples/mnist.py --distributed   # data-parallel over MPI ranks

The model (from minicnn.cli.build_seed_model) is the tutorial's, with only the imports changed:

    model = Sequential()
    model.add(Conv2D(64, kernel_size=3, activation="relu", input_shape=(28, 28, 1)))
    model.add(Conv2D(32, kernel_size=3, activation="relu"))
    model.add(Flatten())
    model.add(Dense(10, activation="softmax"))
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, validation_data=(x_test, y_test), epochs=3)

Writes the model, history.json and PNG plots into --out (default runs/mnist/); then
`minicnn predict my_digit.png` reads your own handwriting with it.
"""

import sys

from minicnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
