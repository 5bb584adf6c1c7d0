"""The one error a model file raises when it is not one, is damaged, or asks for what minicnn
does not have; and the check that h5py, the optional dependency of Keras's files, is there."""

from __future__ import annotations

# What a damaged file makes h5py, zipfile and the json and struct readers raise (an HDF5
# superblock whose addresses overflow raises OverflowError, say): every one becomes a
# ModelFileError naming the file
READ_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, OverflowError, IndexError, AttributeError, EOFError, NotImplementedError)  # fmt: skip


class ModelFileError(ValueError):
    """A model file that is not one, is damaged, or does not match its own architecture."""


def need_h5py():
    """h5py, imported only when a Keras file (.keras, .weights.h5) is read or written."""
    try:
        import h5py
    except ImportError:
        raise ImportError(
            "Keras's file formats (.keras, .weights.h5) need h5py: pip install 'minicnn[keras]' "
            "(or pip install h5py). minicnn's own format (model.save('x.minicnn')) needs nothing"
        ) from None
    return h5py
