"""fit, evaluate and predict's arguments other than sample weights, as Keras 3 has them:
steps_per_epoch, validation_steps, validation_batch_size, validation_freq, shuffle (True,
False, "batch"), and x as a Python generator or a keras.utils.PyDataset, with dicts of named
inputs. The epoch rules are Keras's EpochIterator (keras/src/trainers/epoch_iterator.py,
v3.15.1, lines 93-138): a pass goes on across epochs when steps_per_epoch is given, a
warning ends an epoch that runs out of data, and a finite generator's later epochs hold
the two batches it was read ahead by (data_adapters/generator_data_adapter.py)."""

import threading
import time

import numpy as np
import pytest
from test_model import quadrants, small_model

import minicnn as keras
from minicnn.callbacks import Callback
from minicnn.data import ArrayData
from minicnn.data_adapters import Epochs
from minicnn.utils import PyDataset, set_random_seed


def compiled(seed=0):
    set_random_seed(seed)
    model = small_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture
def toy():
    return quadrants(40, np.random.default_rng(0))


def same_weights(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))


class Count(Callback):
    """Batches per epoch, train and test."""

    def __init__(self):
        super().__init__()
        self.train, self.test = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.train.append(0)

    def on_train_batch_begin(self, batch, logs=None):
        self.train[-1] += 1

    def on_test_begin(self, logs=None):
        self.test.append(0)

    def on_test_batch_begin(self, batch, logs=None):
        self.test[-1] += 1


class Source:
    """A sized source of numbered batches, each pass numbered too."""

    def __init__(self, n):
        self.num_batches, self.passes, self.ends = n, 0, 0

    def iterator(self, epoch):
        self.passes += 1
        return iter([(self.passes, i) for i in range(self.num_batches)])

    def on_epoch_begin(self):
        pass

    def on_epoch_end(self):
        self.ends += 1


def test_epochs_carry_a_pass_across_epochs_as_keras_does():
    src = Source(5)
    it = Epochs(src, steps_per_epoch=2)
    assert [list(it.epoch(e)) for e in range(2)] == [[(1, 0), (1, 1)], [(1, 2), (1, 3)]]
    with pytest.warns(UserWarning, match="ran out of data"):
        assert list(it.epoch(2)) == [(1, 4)]  # the pass ends: the epoch is cut short
    assert list(it.epoch(3)) == [(2, 0), (2, 1)]  # a new pass
    whole = Epochs(Source(3))
    assert [len(list(whole.epoch(e))) for e in range(3)] == [3, 3, 3] and whole.source.passes == 3
    assert whole.source.ends == 1 + 3  # reset once before the first epoch, then each epoch


def test_steps_per_epoch_on_arrays(toy):
    x, y = toy
    model, count = compiled(), Count()
    with pytest.warns(UserWarning, match="ran out of data"):
        model.fit(x, y, batch_size=8, epochs=3, steps_per_epoch=2, verbose=0, callbacks=[count])
    assert count.train == [2, 2, 1] and model.optimizer.iterations == 5  # 5 batches a pass
    model = compiled()
    history = model.fit(x, y, epochs=2, steps_per_epoch=4, verbose=0)  # batch_size: ceil(40 / 4)
    assert model.optimizer.iterations == 8 and len(history.epoch) == 2


def test_validation_steps_batch_size_and_freq(toy):
    x, y = toy
    count = Count()
    history = compiled().fit(x, y, batch_size=8, epochs=4, validation_data=(x, y), validation_batch_size=16, validation_freq=2, verbose=0, callbacks=[count])  # fmt: skip
    assert count.test == [3, 3] and len(history.history["val_loss"]) == 2  # epochs 2 and 4
    assert len(history.history["loss"]) == 4
    count = Count()
    history = compiled().fit(x, y, batch_size=8, epochs=3, validation_data=(x, y), validation_steps=2, validation_freq=[1, 3], verbose=0, callbacks=[count])  # fmt: skip
    assert count.test == [2, 2] and len(history.history["val_accuracy"]) == 2
    for bad in ("2", 0, [1, "2"]):
        with pytest.raises(ValueError, match="validation_freq"):
            compiled().fit(x, y, epochs=1, validation_data=(x, y), validation_freq=bad, verbose=0)


def test_validation_freq_checkpoints_resume(toy, tmp_path):
    from minicnn import load_checkpoint
    from minicnn.callbacks import ModelCheckpoint

    x, y = toy
    model = compiled()
    model.fit(x, y, epochs=3, validation_data=(x, y), validation_freq=2, verbose=0, callbacks=[ModelCheckpoint(tmp_path / "c.minicnn")])  # fmt: skip
    checkpoint = load_checkpoint(tmp_path / "c.minicnn")
    assert checkpoint.epoch == 3 and len(checkpoint.history["val_loss"]) == 1


def test_shuffle_false_true_and_batch():
    x = np.arange(20, dtype="float32").reshape(20, 1)
    be = keras.backend.get_backend("numpy")

    def batches(shuffle):
        src = ArrayData([x], [None], 8, shuffle, be)
        return [b[0][0][:, 0].tolist() for b in src.epoch(0)]

    plain = batches(False)
    assert plain == [list(range(0, 8)), list(range(8, 16)), list(range(16, 20))]
    mixed = batches("batch")  # Keras: each batch's own rows, in a new order
    assert [sorted(b) for b in mixed] == plain and mixed != plain
    full = batches(True)
    assert sorted(sum(full, [])) == list(range(20)) and [sorted(b) for b in full] != plain
    with pytest.raises(ValueError, match='shuffle must be True, False or "batch"'):
        compiled().fit(x, x, shuffle="sometimes")


def gen(x, y, batch, forever=True):
    while True:
        for lo in range(0, len(x), batch):
            yield x[lo : lo + batch], y[lo : lo + batch]
        if not forever:
            return


def test_a_generator_trains_as_its_arrays_do(toy):
    x, y = toy
    arrays = compiled()
    arrays.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    streamed = compiled()
    with pytest.warns(
        UserWarning, match="shuffle=True"
    ):  # Keras warns: a generator is not shuffled
        streamed.fit(gen(x, y, 8), epochs=2, steps_per_epoch=5, verbose=0)
    assert same_weights(arrays, streamed) and streamed.optimizer.iterations == 10
    # a finite generator: its first epoch is the whole of it, later ones its 2 first batches
    finite = compiled()
    history = finite.fit(gen(x, y, 8, forever=False), epochs=3, shuffle=False, verbose=0)
    assert finite.optimizer.iterations == 5 + 2 + 2 and len(history.epoch) == 3
    # evaluate and predict take generators too
    logs = arrays.evaluate(gen(x, y, 8), steps=5, verbose=0, return_dict=True)
    assert logs == arrays.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    out = arrays.predict(((xb,) for xb, _ in gen(x, y, 8, forever=False)), verbose=0)
    np.testing.assert_array_equal(out, arrays.predict(x, batch_size=8, verbose=0))


def test_generator_batches_with_named_inputs():
    a, b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.Concatenate()([a, b]))
    rng = np.random.default_rng(1)
    xa, xb = rng.random((24, 4), dtype=np.float32), rng.random((24, 3), dtype=np.float32)
    y = rng.integers(0, 2, 24)
    models = []
    for _ in range(2):
        set_random_seed(3)
        model = keras.Model({"a": a, "b": b}, out) if not models else keras.Model([a, b], out)
        model.compile("sgd", "sparse_categorical_crossentropy")
        models.append(model)
    models[0].fit({"a": xa, "b": xb}, y, batch_size=6, epochs=2, shuffle=False, verbose=0)
    batches = (({"b": xb[i : i + 6], "a": xa[i : i + 6]}, y[i : i + 6]) for _ in range(2) for i in range(0, 24, 6))  # fmt: skip
    models[1].fit(batches, steps_per_epoch=4, epochs=2, shuffle=False, verbose=0)
    assert same_weights(*models)


class Batches(PyDataset):
    def __init__(self, x, y, batch, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch = x, y, batch
        self.begins, self.ends, self.threads = 0, 0, set()

    def __len__(self):
        return -(-len(self.x) // self.batch)

    def __getitem__(self, i):
        self.threads.add(threading.current_thread().name)
        time.sleep(0.005)  # slow enough that the read-ahead threads overlap
        lo = i * self.batch
        return self.x[lo : lo + self.batch], self.y[lo : lo + self.batch]

    def on_epoch_begin(self):
        self.begins += 1

    def on_epoch_end(self):
        self.ends += 1


@pytest.mark.parametrize("workers", [1, 3])
def test_a_py_dataset_trains_as_its_arrays_do(toy, workers):
    x, y = toy
    arrays = compiled()
    arrays.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    data = Batches(x, y, 8, workers=workers, max_queue_size=2)
    model = compiled()
    model.fit(data, epochs=2, shuffle=False, verbose=0)
    assert same_weights(arrays, model)
    assert data.begins == 2 and data.ends == 1 + 2  # and once when fit resets it, as in Keras
    assert (len(data.threads) > 1) == (workers > 1)
    shuffled = compiled()
    shuffled.fit(Batches(x, y, 8), epochs=2, verbose=0)  # shuffle=True: the batches' order
    assert not same_weights(arrays, shuffled)
    np.testing.assert_array_equal(model.predict(Batches(x, y, 8), verbose=0), model.predict(x, verbose=0))  # fmt: skip


def test_py_dataset_resume_is_bit_exact(toy, tmp_path):
    from minicnn import load_checkpoint
    from minicnn.callbacks import ModelCheckpoint

    x, y = toy
    full = compiled()
    full.fit(Batches(x, y, 8), epochs=3, verbose=0)
    part = compiled()
    part.fit(Batches(x, y, 8), epochs=1, verbose=0, callbacks=[ModelCheckpoint(tmp_path / "c.minicnn")])  # fmt: skip
    set_random_seed(123)
    checkpoint = load_checkpoint(tmp_path / "c.minicnn")
    checkpoint.model.fit(Batches(x, y, 8), epochs=3, initial_epoch=1, verbose=0)
    assert same_weights(full, checkpoint.model)


def test_wrong_stream_arguments_are_refused(toy):
    x, y = toy
    model = compiled()
    with pytest.raises(ValueError, match="`y` should not be passed"):
        model.fit(gen(x, y, 8), y, verbose=0)
    with pytest.raises(ValueError, match="validation_split is only supported for arrays"):
        model.fit(gen(x, y, 8), validation_split=0.2, shuffle=False, verbose=0)
    with pytest.raises(ValueError, match="at least one batch"):
        model.fit((b for b in []), shuffle=False, verbose=0)
    with pytest.raises(ValueError, match="must return a tuple"):
        model.fit((x for _ in range(3)), shuffle=False, verbose=0)
    with pytest.raises(NotImplementedError, match="use_multiprocessing=True"):
        model.fit(Batches(x, y, 8, use_multiprocessing=True), verbose=0)
    with pytest.raises(ValueError, match="workers must be a non-negative int"):
        model.fit(Batches(x, y, 8, workers="two"), verbose=0)
    with pytest.raises(ValueError, match="steps_per_epoch must be a positive int"):
        model.fit(x, y, steps_per_epoch=0, verbose=0)
    assert model.optimizer.iterations == 0

    class NoSuper(PyDataset):
        def __init__(self):  # no super().__init__()
            self.n = 1

        def __len__(self):
            return 1

        def __getitem__(self, i):
            return x[:8], y[:8]

    with pytest.warns(UserWarning, match="should call `super"):
        model.fit(NoSuper(), shuffle=False, verbose=0)
