"""Callbacks: hooks that ``fit``, ``evaluate`` and ``predict`` call around epochs and batches,
at the points and with the ``logs`` Keras 3 gives them (``callbacks/base.py`` says which).

A callback may set ``model.stop_training = True`` to end training after the current batch or
epoch. Each callback of a fit is handed the run's ``training_state`` (``minicnn.state``): a
checkpoint writes it, and a resumed run gives each callback back the state it saved.
"""

from minicnn.callbacks.base import Callback, CallbackList, History
from minicnn.callbacks.checkpoint import BackupAndRestore, ModelCheckpoint
from minicnn.callbacks.loggers import CSVLogger, LambdaCallback, ProgbarLogger, TensorBoard
from minicnn.callbacks.monitor import (
    EarlyStopping,
    LearningRateScheduler,
    ReduceLROnPlateau,
    TerminateOnNaN,
)

__all__ = [
    "Callback",
    "CallbackList",
    "History",
    "ModelCheckpoint",
    "BackupAndRestore",
    "CSVLogger",
    "LambdaCallback",
    "ProgbarLogger",
    "TensorBoard",
    "EarlyStopping",
    "LearningRateScheduler",
    "ReduceLROnPlateau",
    "TerminateOnNaN",
]
