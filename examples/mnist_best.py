"""The best recipe (minicnn.recipes "best"): Deotte's BatchNorm CNN with rotation, zoom and shift
augmentation, Adam with lr = 1e-3 * 0.95^epoch and the weights' moving average (EMA 0.999),
batch 64, 15 epochs, on all 60,000 training images; the test accuracy is that of the model fit
leaves after the last epoch (the averaged weights). Writes runs/mnist_best/, which minicnn predict,
evaluate and serve then use by default.

    python examples/mnist_best.py                 # = minicnn train --recipe best
    python examples/mnist_best.py --seed 1        # another seed
"""

import sys

from minicnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "--recipe", "best", *sys.argv[1:]]))
