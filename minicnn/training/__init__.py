"""How a model is trained: the loop over epochs and batches (``loop``) and the step it runs on
each batch (``step``). The model (``minicnn.models``) knows nothing of either; its ``fit``,
``evaluate``, ``predict`` and ``train_on_batch`` hand their work to the functions here."""

from minicnn.training.loop import fit, train_on_batch
from minicnn.training.scoring import evaluate, predict
from minicnn.training.step import NonFiniteError, TrainStep

__all__ = ["fit", "evaluate", "predict", "train_on_batch", "TrainStep", "NonFiniteError"]
