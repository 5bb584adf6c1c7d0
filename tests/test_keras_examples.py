"""keras.io code with only its imports changed runs on minicnn (examples/keras_io_convnet.py),
here on a 6,000-image subset for one epoch."""

from pathlib import Path

import pytest

import minicnn

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "keras_io_convnet.py"


@pytest.mark.slow
def test_keras_io_simple_convnet(monkeypatch, capsys):
    source = EXAMPLE.read_text()
    assert "import minicnn as keras\nfrom minicnn import layers\n" in source
    real = minicnn.datasets.mnist.load_data

    def subset(*args, **kwargs):
        (x, y), (xt, yt) = real(*args, **kwargs)
        return (x[:6000], y[:6000]), (xt[:2000], yt[:2000])

    monkeypatch.setattr(minicnn.datasets.mnist, "load_data", subset)
    assert source.count("epochs = 15\n") == 1
    exec(compile(source.replace("epochs = 15\n", "epochs = 1\n"), str(EXAMPLE), "exec"), {})
    out = capsys.readouterr().out
    assert "x_train shape: (6000, 28, 28, 1)" in out and "Total params: 34,826" in out
    accuracy = float(out.split("Test accuracy:")[1].split()[0])
    assert accuracy > 0.7, out[-2000:]  # 42 steps of batch 128: it learns (chance is 0.1)
