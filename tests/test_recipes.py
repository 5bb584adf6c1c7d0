"""The best recipe, short: the same model, augmentation and schedule as
``minicnn train --recipe best``, for 150 steps on a subset of MNIST, must learn (the full runs,
15 epochs on 60,000 images, are for README and the notes).

The short run is judged on its training loss and accuracy, not on test images: its
BatchNormalization layers see activations of variance ~0.005, and with Keras's momentum of 0.99
the moving variance keeps 0.99^n of its initial 1 after n steps, so inference is meaningful only
after ~700 steps (most of an epoch), as in Keras."""

import pytest

from minicnn.recipes import RECIPES, best_model


def test_best_recipe_is_deottes_design():
    recipe = RECIPES["best"]
    assert (recipe.epochs, recipe.batch_size, str(recipe.out)) == (15, 64, "runs/mnist_best")
    model = best_model()
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds[:3] == ["RandomRotation", "RandomZoom", "RandomTranslation"]
    assert kinds.count("BatchNormalization") == kinds.count("Conv2D") == 7
    assert kinds.count("Dropout") == 3 and model.output_shape == (None, 10)
    strided = [layer for layer in model.layers if getattr(layer, "strides", None) == (2, 2)]
    assert [layer.kernel_size for layer in strided] == [(5, 5), (5, 5)]
    opt = model.optimizer
    assert type(opt).__name__ == "Adam" and (opt.use_ema, opt.ema_momentum) == (True, 0.999)
    (scheduler,) = recipe.callbacks()
    assert [scheduler.schedule(e, None) for e in (0, 1, 10)] == pytest.approx([1e-3, 9.5e-4, 1e-3 * 0.95**10])  # fmt: skip


@pytest.mark.slow
def test_best_recipe_learns_in_150_steps():
    from minicnn.cli import load_mnist
    from minicnn.utils import set_random_seed

    set_random_seed(0)
    (x, y), _ = load_mnist(limit=150 * 64)
    recipe = RECIPES["best"]
    model = recipe.build(None)
    history = model.fit(x, y, batch_size=64, epochs=1, verbose=0, callbacks=recipe.callbacks())
    # averaged over the epoch, from chance (loss 2.3, accuracy 0.1) at the first step
    assert history.history["loss"][0] < 1.6 and history.history["accuracy"][0] > 0.5, (
        history.history
    )
