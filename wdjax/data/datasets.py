"""Datasets as host arrays: train / validation / test splits, subsets, label noise, k-fold.

``load`` returns NumPy arrays (the training engine moves them to the device once and indexes
batches there). The recipe, for a training pool of ``N`` examples (the official train split;
for ``digits``, the 1,438 images outside its fixed test split, see
:func:`wdjax.data.sources.load_digits`):

1. ``n_val = val_size`` if an int, else ``round(val_size * N)`` (a fraction of the *whole*
   pool, so the validation size does not change with ``train_size``);
   ``n_train = train_size`` if given, else ``N - n_val``; ``n_train + n_val <= N``.
2. A permutation ``perm`` of the pool drawn from ``seed``; the used pool is
   ``perm[:n_val + n_train]``.
3. Label noise ``p``: exactly ``k = round(p * (n_val + n_train))`` examples of the used pool,
   drawn from ``seed``, get the label ``(y + o) mod C`` with ``o`` uniform in ``{1, ..., C-1}``,
   i.e. a uniformly random *different* class. Test labels are never touched.
4. Validation is the first ``n_val`` of the used pool, training the next ``n_train``.
   For a fixed ``seed`` the validation set is the same for every ``train_size`` and the
   training sets are nested, and which examples are used does not depend on ``label_noise``.
5. Images become float32 in [0, 1]; ``standardize=True`` then subtracts the training split's
   per-channel mean and divides by its per-channel standard deviation (all three splits).
"""

import numbers
import os
import pathlib
from typing import NamedTuple

import numpy as np

from wdjax.data import idx, sources
from wdjax.data.sources import DATASETS, DatasetError

__all__ = ["DATASETS", "Dataset", "DatasetError", "check_args", "describe", "kfold_indices", "load"]


class Dataset(NamedTuple):
    """Host-side splits ready for training (images NHWC float32, labels int32)."""

    x_train: np.ndarray  # [n_train, H, W, C] float32
    y_train: np.ndarray  # [n_train] int32
    x_val: np.ndarray  # [n_val, H, W, C] float32 (n_val may be 0)
    y_val: np.ndarray  # [n_val] int32
    x_test: np.ndarray  # [n_test, H, W, C] float32
    y_test: np.ndarray  # [n_test] int32
    num_classes: int
    name: str
    source: str = ""  # where the images were decoded from (see sources.RawData)
    sha256: dict | None = None  # file name -> sha256 of the files decoded
    cache: str | None = None  # the npz cache entry they were read from (None: decoded now)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one image."""
        return tuple(self.x_train.shape[1:])


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def check_args(name, val_size, train_size, label_noise, seed) -> None:
    """:func:`load`'s argument checks (before any data is read); raises DatasetError."""
    if not isinstance(name, str) or not name:
        raise DatasetError(
            f"name must be a dataset name such as {', '.join(DATASETS)}; got {name!r}", "name"
        )
    if _is_int(val_size):
        if val_size < 0:
            raise DatasetError(
                f"val_size={val_size} must be a count >= 0 or a fraction in [0, 1)", "val_size"
            )
    elif not (_is_real(val_size) and 0.0 <= val_size < 1.0):
        raise DatasetError(
            f"val_size={val_size!r} must be a count >= 0 or a fraction in [0, 1)", "val_size"
        )
    if train_size is not None and not (_is_int(train_size) and train_size >= 1):
        raise DatasetError(
            f"train_size={train_size!r} must be None (all) or an int >= 1", "train_size"
        )
    if not (_is_real(label_noise) and 0.0 <= label_noise <= 1.0):
        raise DatasetError(
            f"label_noise={label_noise!r} must be a fraction in [0, 1]", "label_noise"
        )
    if not _is_int(seed):
        raise DatasetError(f"seed={seed!r} must be an int", "seed")


def _split_sizes(n_pool: int, name: str, val_size, train_size) -> tuple[int, int]:
    n_val = int(val_size) if _is_int(val_size) else round(val_size * n_pool)
    n_train = n_pool - n_val if train_size is None else int(train_size)
    if n_train < 1 or n_train + n_val > n_pool:
        raise DatasetError(
            f"{name!r} has {n_pool} training examples: train_size={train_size} plus "
            f"val_size={val_size} ({n_val} examples) does not fit; lower train_size or val_size."
        )
    return n_val, n_train


def flip_labels(y: np.ndarray, fraction: float, num_classes: int, rng) -> np.ndarray:
    """Exactly ``round(fraction * len(y))`` labels, drawn by ``rng``, moved to another class."""
    k = round(fraction * y.shape[0])
    where = rng.choice(y.shape[0], size=k, replace=False)
    offset = rng.integers(1, num_classes, size=k)  # uniform in {1, ..., C-1}
    noisy = y.copy()
    noisy[where] = (y[where] + offset) % num_classes
    return noisy


def _standardize(x_train, *others):
    mean = x_train.mean(axis=(0, 1, 2), keepdims=True)
    std = np.maximum(x_train.std(axis=(0, 1, 2), keepdims=True), 1e-6)
    return tuple(((x - mean) / std).astype(np.float32) for x in (x_train, *others))


def _resolve_raw_dir(name: str, raw_dir):
    """``raw_dir`` if given, else ``$WDJAX_RAW_DIR`` (None if neither); checked as a folder."""
    if raw_dir is not None and name not in idx.DATASETS:
        raise DatasetError(
            f"raw_dir (--raw-dir)={str(raw_dir)!r} is read only for the datasets that come as "
            f"idx files ({', '.join(idx.DATASETS)}), not name={name!r}: drop it"
        )
    raw_dir = raw_dir if raw_dir is not None else os.environ.get("WDJAX_RAW_DIR") or None
    if raw_dir is not None and name in idx.DATASETS:
        if not pathlib.Path(raw_dir).expanduser().is_dir():
            raise DatasetError(
                f"raw_dir (--raw-dir, WDJAX_RAW_DIR)={str(raw_dir)!r} is not a folder; "
                "name the folder holding the 4 idx files"
            )
    return raw_dir


def _decode(name: str, root, raw_dir, offline: bool) -> sources.RawData:
    """The sources after the cache, in order (see :func:`load`)."""
    if name == "digits":
        return sources.load_digits()
    if name not in idx.DATASETS or sources.tfds_prepared(name, root):
        return sources.load_tfds(name, root, offline=offline)
    raw = idx.load(name, root, raw_dir)
    if raw is not None:
        return raw
    return sources.load_tfds(name, root, offline=offline, local=idx.ways_out(name, root))


def _raw(name: str, data_dir, raw_dir, cache: bool, offline: bool, explicit: bool = False):
    """``(raw arrays, the cache entry they were read from or None)``. An ``explicit`` raw_dir
    (the argument, not the environment) is always read and checked, never replaced by the
    cache (nor written to it)."""
    root = sources.resolve_data_dir(data_dir)
    if explicit:
        return idx.load_folder(name, raw_dir), None
    raw = sources.cache_read(root, name) if cache else None
    if raw is not None:
        return raw, str(sources.cache_path(root, name, raw.version))
    raw = _decode(name, root, raw_dir, offline)
    if cache:
        sources.cache_write(root, name, raw)
    return raw, None


def load(
    name: str = "digits",
    *,
    data_dir=None,
    raw_dir=None,
    val_size: int | float = 0.1,
    train_size: int | None = None,
    label_noise: float = 0.0,
    seed: int = 0,
    standardize: bool = False,
    cache: bool = True,
    offline: bool | None = None,
) -> Dataset:
    """Load a dataset as train / validation / test host arrays (recipe in the module docstring).

    Args:
      name: ``"digits"`` (embedded, offline; the default), a name in ``DATASETS``,
        ``"emnist/<config>"``, or any prepared/registered TFDS image-classification builder.
      data_dir: TFDS data directory; defaults to ``$TFDS_DATA_DIR`` then ``~/tensorflow_datasets``.
        The cache lives in ``<data_dir>/wdjax_cache/`` (digits included).
      raw_dir: for ``mnist``, ``fashion_mnist``, ``kmnist``: a folder holding the four original
        idx files (:mod:`wdjax.idx`); defaults to ``$WDJAX_RAW_DIR``. Given here, it is always
        read and checked (the cache is neither read nor written), so damaged files are named.
      val_size: validation examples, as a count (int >= 0) or a fraction in [0, 1) of the pool.
      train_size: training examples returned in ``x_train`` (after validation is removed);
        None uses all the rest of the pool.
      label_noise: fraction p in [0, 1] of the used pool (train + validation) whose labels are
        set to a uniformly random different class: exactly ``round(p * (n_train + n_val))``.
      seed: draws the permutation (validation carve, subset) and the noise; the test split and
        the digits test split never depend on it.
      standardize: per-channel standardization by the training split's statistics.
      cache: read / write the decoded arrays in ``<data_dir>/wdjax_cache/``.
      offline: never touch the network; None reads ``WDJAX_OFFLINE`` (``"1"`` means offline).

    Sources, first found wins: the npz cache; then ``digits`` from scikit-learn; for ``mnist``,
    ``fashion_mnist`` and ``kmnist``: a prepared TFDS folder, the idx files in
    ``<data_dir>/downloads/manual/``, in ``raw_dir``, in ``/usr/share/datasets/<name>/``
    (:mod:`wdjax.idx`); then TFDS (prepared, or downloaded and prepared when allowed).

    Returns:
      A ``Dataset`` of NumPy arrays, with where they came from (``source``, ``sha256``,
      ``cache``).

    Raises:
      DatasetError: bad arguments, unknown name, bad idx files (naming the file), or a dataset
        that is not prepared and cannot be downloaded (raised within seconds, listing the ways
        out).
    """
    check_args(name, val_size, train_size, label_noise, seed)
    explicit = raw_dir is not None
    raw_dir = _resolve_raw_dir(name, raw_dir)
    if offline is None:
        offline = os.environ.get("WDJAX_OFFLINE", "0") == "1"
    raw, cache_entry = _raw(name, data_dir, raw_dir, cache, offline, explicit)
    n_val, n_train = _split_sizes(raw.y_train.shape[0], name, val_size, train_size)
    perm_rng, noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    used = perm_rng.permutation(raw.y_train.shape[0])[: n_val + n_train]
    y_used = flip_labels(raw.y_train[used], label_noise, raw.num_classes, noise_rng)
    x_used = raw.x_train[used].astype(np.float32) / np.float32(raw.max_value)
    x_test = raw.x_test.astype(np.float32) / np.float32(raw.max_value)
    x_val, x_train = x_used[:n_val], x_used[n_val:]
    if standardize:
        x_train, x_val, x_test = _standardize(x_train, x_val, x_test)
    return Dataset(
        x_train=x_train,
        y_train=y_used[n_val:],
        x_val=x_val,
        y_val=y_used[:n_val],
        x_test=x_test,
        y_test=raw.y_test.astype(np.int32),
        num_classes=int(raw.num_classes),
        name=name,
        source=raw.source,
        sha256=dict(raw.sha256),
        cache=cache_entry,
    )


def describe(ds: Dataset) -> dict:
    """What a run used, for its ``meta.json``: name, sizes, image shape, source, sha256, cache."""
    return dict(
        name=ds.name,
        source=ds.source,
        sha256=dict(ds.sha256 or {}),
        cache=ds.cache,
        num_classes=int(ds.num_classes),
        image_shape=list(ds.image_shape),
        train=int(ds.x_train.shape[0]),
        val=int(ds.x_val.shape[0]),
        test=int(ds.x_test.shape[0]),
    )


def kfold_indices(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Equal-size k-fold splits of ``range(n)`` that stack along a leading fold axis.

    A permutation of ``range(n)`` drawn from ``seed`` is cut into ``k`` folds of ``m = n // k``;
    fold ``i`` validates on the ``i``-th block and trains on the rest, *including* the last
    ``n - k * m`` permuted indices, which are never validated (so every fold has the same shape).

    Returns:
      ``(train_idx, val_idx)``: int32 arrays of shapes ``[k, n - m]`` and ``[k, m]``.
    """
    if not (_is_int(n) and _is_int(k) and 2 <= k <= n):
        raise DatasetError(f"kfold_indices needs ints with 2 <= k <= n; got n={n!r}, k={k!r}")
    m = n // k
    perm = np.random.default_rng(seed).permutation(n).astype(np.int32)
    val_idx = perm[: k * m].reshape(k, m)
    rest = perm[k * m :]
    train_idx = np.stack(
        [np.concatenate([np.delete(val_idx, i, axis=0).reshape(-1), rest]) for i in range(k)]
    )
    return train_idx, val_idx
