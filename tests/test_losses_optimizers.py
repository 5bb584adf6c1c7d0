"""Losses and optimisers against formulas written out here."""

import numpy as np
import pytest

from minicnn import losses, maths
from minicnn.optimizers import SGD, Adam
from minicnn.utils import to_categorical


def test_cross_entropy_from_logits_is_finite_for_huge_logits():
    z = np.array([[1e4, 0.0, -1e4], [-1e4, 1e4, 3.0]])
    t = to_categorical([1, 1], 3, dtype="float64")
    loss, gz = maths.softmax_cross_entropy(z, t)
    assert np.isfinite(loss) and np.isfinite(gz).all()
    assert loss == pytest.approx(1e4 / 2)  # row 0: log-sum-exp 1e4 minus logit 0; row 1: ~0
    np.testing.assert_allclose(gz, np.array([[1, -1, 0], [0, 0, 0]]) / 2, atol=1e-12)


def test_cross_entropy_matches_the_definition(rng):
    z = rng.standard_normal((6, 5))
    labels = rng.integers(0, 5, 6)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    expected = -np.mean(np.log(p[np.arange(6), labels]))
    loss, gz = maths.softmax_cross_entropy(z, to_categorical(labels, 5, dtype="float64"))
    assert loss == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(gz, (p - to_categorical(labels, 5)) / 6, atol=1e-12)


def test_sparse_and_categorical_agree_and_match_probability_path(rng):
    p = rng.random((8, 4)) + 0.05
    p /= p.sum(1, keepdims=True)
    labels = rng.integers(0, 4, 8)
    expected = -np.mean(np.log(p[np.arange(8), labels]))
    # Keras's functions give one value per sample
    assert losses.sparse_categorical_crossentropy(labels, p).mean() == pytest.approx(expected, rel=1e-12)  # fmt: skip
    assert losses.categorical_crossentropy(to_categorical(labels, 4), p).mean() == pytest.approx(
        expected, rel=1e-12
    )


def test_probability_path_clips_like_keras():
    p = np.array([[1.0, 0.0]])
    assert losses.categorical_crossentropy([[0, 1]], p)[0] == pytest.approx(-np.log(1e-7), rel=1e-6)


def reference_adam(p, grads, lr, b1, b2, eps):
    """Kingma & Ba with Keras's epsilon-hat: eps added to sqrt(v) before bias correction."""
    m = v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
    return p


def test_adam_matches_reference(rng):
    p0 = rng.standard_normal(7)
    grads = [rng.standard_normal(7) for _ in range(5)]
    p = p0.copy()
    opt = Adam(learning_rate=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-6)
    for g in grads:
        opt.apply([p], [g])
    np.testing.assert_allclose(p, reference_adam(p0, grads, 0.01, 0.8, 0.99, 1e-6), rtol=1e-12)
    assert opt.iterations == 5


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_matches_reference(rng, momentum, nesterov):
    p0 = rng.standard_normal(4)
    grads = [rng.standard_normal(4) for _ in range(4)]
    p, opt = p0.copy(), SGD(0.1, momentum=momentum, nesterov=nesterov)
    for g in grads:
        opt.apply([p], [g])
    q, v = p0.copy(), np.zeros(4)
    for g in grads:
        v = momentum * v - 0.1 * g
        q = q + (momentum * v - 0.1 * g if nesterov else v)
    np.testing.assert_allclose(p, q, rtol=1e-12)


def test_optimizer_updates_keep_float32(rng):
    p = rng.standard_normal(5).astype("float32")
    for opt in (Adam(), SGD(momentum=0.9, nesterov=True)):
        opt.apply([p], [rng.standard_normal(5).astype("float32")])
        assert p.dtype == np.float32 and all(s.dtype == np.float32 for s in opt.slots[0].values())
