"""Data: datasets as host arrays (the embedded digits, idx files, TFDS), splits, label noise.

:mod:`wdjax.data.datasets` loads and splits; :mod:`wdjax.data.sources` finds and decodes the
sources (and keeps the npz cache); :mod:`wdjax.data.idx` reads the original idx files.
"""

from wdjax.data.datasets import (
    Dataset,
    check_args,
    describe,
    flip_labels,
    kfold_indices,
    load,
)
from wdjax.data.sources import DATASETS, DatasetError

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetError",
    "check_args",
    "describe",
    "flip_labels",
    "kfold_indices",
    "load",
]
