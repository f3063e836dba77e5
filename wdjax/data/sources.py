"""Where raw image arrays come from: the embedded digits, TFDS, and an on-disk cache.

Everything here is host side and returns *raw* arrays (``uint8`` images, official splits) with
where they came from; :mod:`wdjax.data` turns them into train / validation / test splits.

* ``digits``: the UCI handwritten digits shipped inside scikit-learn's wheel (no network).
* any TFDS image-classification dataset, read through ``builder.as_data_source()`` on the
  ``array_record`` format, which needs neither TensorFlow nor the network once prepared.
* the MNIST family's original idx files: :mod:`wdjax.idx`.
* a cache of the decoded arrays and their provenance, ``<data_dir>/wdjax_cache/<name>-<version>
  .npz``, looked up before tensorflow-datasets (or scikit-learn) is even imported.
"""

import importlib.metadata
import importlib.util
import io
import json
import os
import pathlib
import socket
import threading
import urllib.parse
import warnings
import zipfile
from typing import NamedTuple

import numpy as np

from wdjax import files
from wdjax.errors import ConfigError

DATASETS = (
    "digits",
    "mnist",
    "fashion_mnist",
    "cifar10",
    "cifar100",
    "svhn_cropped",
    "kmnist",
    "emnist",
)  # "emnist/<config>" (byclass, bymerge, balanced, letters, digits, mnist) by prefix
# (H, W, C) of one image, known before any file is read (the builder's nominal input)
IMAGE_SHAPES = {"digits": (8, 8, 1), "mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1),
                "kmnist": (28, 28, 1), "emnist": (28, 28, 1), "cifar10": (32, 32, 3),
                "cifar100": (32, 32, 3), "svhn_cropped": (32, 32, 3)}  # fmt: skip
DIGITS_TEST_FRACTION = 0.2  # of each class, held out once and for all as digits' test split
DIGITS_TEST_SEED = 20240611  # fixed in code: the digits test split never depends on `seed`
CONNECT_TIMEOUT_S = 2.0  # the whole network check (DNS + TCP connect) is bounded by this
_FALLBACK_HOST = "storage.googleapis.com"  # tfds' GCS mirror of prepared datasets
_CHUNK = 4096  # examples decoded per data-source read
_UNRECORDED = "unrecorded (cached by a wdjax that did not record sources)"


class DatasetError(ConfigError):
    """A user-facing dataset problem; the message names the argument and the way out
    (``argument``: that argument's name, where it is one of :func:`wdjax.data.load`'s)."""


def image_shape(name: str) -> tuple[int, int, int] | None:
    """The image shape of a known dataset (``emnist/<config>`` too), None for others."""
    return IMAGE_SHAPES.get(name.split("/")[0] if name.startswith("emnist/") else name)


class RawData(NamedTuple):
    """A dataset's official splits as decoded from its source (before any wdjax split)."""

    x_train: np.ndarray  # [N, H, W, C] uint8
    y_train: np.ndarray  # [N] int32
    x_test: np.ndarray  # [M, H, W, C] uint8
    y_test: np.ndarray  # [M] int32
    num_classes: int
    max_value: float  # pixel value that maps to 1.0 (16 for digits, 255 for TFDS uint8)
    version: str  # names the cache entry: <name>-<version>.npz
    source: str  # where the arrays were decoded from (a folder, or the package)
    sha256: dict  # file name -> sha256 of the files decoded ({} where not recorded)


def resolve_data_dir(data_dir=None) -> pathlib.Path:
    """``data_dir`` if given, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets`` (as tfds)."""
    root = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    return pathlib.Path(root).expanduser()


def _cache_stem(name: str) -> str:
    return name.replace("/", "__").replace(":", "_")


def _version_key(path: pathlib.Path, stem: str) -> tuple:
    version = path.name[len(stem) + 1 : -len(".npz")]
    return tuple(int(p) if p.isdigit() else -1 for p in version.split("."))


def cache_path(root: pathlib.Path, name: str, version: str) -> pathlib.Path:
    """The cache entry of ``name`` at ``version``: ``<root>/wdjax_cache/<name>-<version>.npz``."""
    return root / "wdjax_cache" / f"{_cache_stem(name)}-{version}.npz"


def cache_read(root: pathlib.Path, name: str) -> RawData | None:
    """The newest readable cache entry for ``name`` under ``root``, or None.

    Entries written before wdjax recorded provenance read with ``source`` saying so.
    """
    stem = _cache_stem(name)
    paths = sorted(
        (root / "wdjax_cache").glob(f"{stem}-*.npz"), key=lambda p: _version_key(p, stem)
    )
    for path in reversed(paths):
        try:
            with np.load(path) as f:
                return RawData(
                    *(f[k] for k in ("x_train", "y_train", "x_test", "y_test")),
                    num_classes=int(f["num_classes"]),
                    max_value=float(f["max_value"]),
                    version=str(f["version"]),
                    source=str(f["source"]) if "source" in f else _UNRECORDED,
                    sha256=json.loads(str(f["sha256"])) if "sha256" in f else {},
                )
        except (
            OSError,
            ValueError,
            KeyError,
            EOFError,
            zipfile.BadZipFile,
        ):  # partial or foreign file: ignore it
            continue
    return None


def cache_write(root: pathlib.Path, name: str, raw: RawData) -> None:
    """Write ``raw`` atomically (temporary file, then ``os.replace``); warn if not writable."""
    path = cache_path(root, name, raw.version)
    folder = path.parent
    try:
        buf = io.BytesIO()
        np.savez(buf, **{**raw._asdict(), "sha256": json.dumps(raw.sha256, sort_keys=True)})
        files.atomic_write_bytes(path, buf.getvalue())  # 0644 (umask): the cache may be shared
    except OSError as e:
        warnings.warn(f"wdjax: could not cache {name!r} under {folder}: {e}", stacklevel=3)


def load_digits() -> RawData:
    """scikit-learn's embedded UCI digits, with a fixed stratified test split.

    For every class ``c`` with ``n_c`` images, ``round(0.2 * n_c)`` of them, drawn by the fixed
    seed ``DIGITS_TEST_SEED``, form the test split (359 of 1,797 images); the other 1,438 are the
    training pool. Both keep scikit-learn's original order. Pixels are integers in [0, 16].
    """
    from sklearn.datasets import load_digits as sk_load_digits  # 1-2 s import: only on a miss

    bunch = sk_load_digits()
    x = bunch.images.astype(np.uint8).reshape(-1, 8, 8, 1)
    y = bunch.target.astype(np.int32)
    rng = np.random.default_rng(DIGITS_TEST_SEED)
    is_test = np.zeros(y.shape, dtype=bool)
    for c in range(10):
        members = np.flatnonzero(y == c)
        is_test[rng.permutation(members)[: round(DIGITS_TEST_FRACTION * members.size)]] = True
    version = importlib.metadata.version("scikit-learn")
    source = f"scikit-learn {version} (sklearn.datasets.load_digits, embedded)"
    return RawData(x[~is_test], y[~is_test], x[is_test], y[is_test], 10, 16.0, version, source, {})


def host_reachable(host: str, port: int = 443, timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` s (DNS included).

    The probe runs in a daemon thread, so a hanging resolver cannot hold the caller longer.
    """
    opened = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            opened.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(opened)


def download_host(builder) -> tuple[str, int]:
    """The host and port a builder downloads from (its first checksummed URL, else tfds' GCS)."""
    for url in builder.url_infos or ():
        parts = urllib.parse.urlsplit(url)
        if parts.hostname:
            return parts.hostname, parts.port or (80 if parts.scheme == "http" else 443)
    return _FALLBACK_HOST, 443


def not_prepared_message(name: str, root: pathlib.Path, reason: str, files=(), local=()) -> str:
    """The offline failure: names the dataset and data_dir and lists the ways out.

    ``local``: the ways to use files on this machine (e.g. :func:`wdjax.data.idx.ways_out`), listed
    right after the embedded dataset, in place of tfds' manual folder.
    """
    expected = f" (expected: {', '.join(sorted(files))})" if files else ""
    manual = f"place the original files in {root / 'downloads' / 'manual'}/{expected} and rerun"
    prepare = (
        "on a connected machine, prepare it as array_record (pip install -e '.[tfds-prepare]', "
        f"then in Python: tfds.builder('{name}', data_dir=DIR)"
        ".download_and_prepare(file_format='array_record')), "
        "copy DIR here and set TFDS_DATA_DIR=DIR (or pass data_dir)"
    )
    ways = ["use the embedded offline dataset: name='digits'"]
    ways += [*local, prepare] if local else [prepare, manual]
    listed = ";\n".join(f"  {i}. {way}" for i, way in enumerate(ways, 1))
    return (
        f"dataset {name!r} is not prepared in data_dir={str(root)!r} and cannot be downloaded "
        f"({reason}). Ways out:\n{listed}."
    )


def _manual_files_present(builder, manual_dir: pathlib.Path) -> bool:
    infos = builder.url_infos or {}
    return bool(infos) and all((manual_dir / i.filename).exists() for i in infos.values() if i)


def _prepare(tfds, builder, name: str, root: pathlib.Path, offline: bool, local=()) -> None:
    manual_dir = root / "downloads" / "manual"
    have_manual = _manual_files_present(builder, manual_dir)
    files = [i.filename for i in (builder.url_infos or {}).values() if i and i.filename]
    if not have_manual:
        if offline:
            reason = "offline mode: offline=True or WDJAX_OFFLINE=1"
            raise DatasetError(not_prepared_message(name, root, reason, files, local))
        host, port = download_host(builder)
        if not host_reachable(host, port):
            reason = f"{host}:{port} unreachable within {CONNECT_TIMEOUT_S:g} s"
            raise DatasetError(not_prepared_message(name, root, reason, files, local))
    config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=not have_manual)
    try:
        builder.download_and_prepare(file_format="array_record", download_config=config)
    except ImportError as e:
        raise DatasetError(
            f"preparing {name!r} needs TensorFlow ({e}): pip install -e '.[tfds-prepare]', "
            "or prepare it as array_record elsewhere and set TFDS_DATA_DIR."
        ) from e


def _decode_split(builder, split: str) -> tuple[np.ndarray, np.ndarray]:
    image_key, label_key = builder.info.supervised_keys or ("image", "label")
    source = builder.as_data_source(split=split)
    xs, ys = [], []
    for start in range(0, len(source), _CHUNK):
        examples = source.__getitems__(range(start, min(start + _CHUNK, len(source))))
        xs.extend(np.asarray(e[image_key]) for e in examples)
        ys.extend(int(e[label_key]) for e in examples)
    shape = builder.info.features[image_key].shape
    x = np.stack(xs) if xs else np.zeros((0, *shape), np.uint8)
    return x.reshape(-1, *shape), np.asarray(ys, np.int32)


def _decode_split_with_tf(tfds, name: str, root: pathlib.Path, split: str):
    data = tfds.load(name, split=split, data_dir=root, batch_size=-1, as_supervised=True)
    x, y = tfds.as_numpy(data)
    return x, y.astype(np.int32)


def tfds_prepared(name: str, root: pathlib.Path) -> bool:
    """Whether tfds holds ``name`` prepared under ``root`` (imports tfds only if its folder is)."""
    if not (root / name.split("/")[0]).is_dir():
        return False
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(name, data_dir=root).is_prepared()
    except ValueError:  # unknown name or config: load_tfds says so
        return False


def load_tfds(name: str, root: pathlib.Path, *, offline: bool, local=()) -> RawData:
    """Decode a TFDS dataset's ``train`` and ``test`` splits, preparing it only if allowed.

    ``local``: ways to use files on this machine, listed by the error for a dataset that is not
    prepared (see :func:`not_prepared_message`).
    """
    import tensorflow_datasets as tfds  # deferred: digits and cached datasets never need it

    try:
        builder = tfds.builder(name, data_dir=root)
    except ValueError as e:  # DatasetNotFoundError and bad configs are ValueErrors
        first_line = str(e).splitlines()[0]
        raise DatasetError(
            f"unknown dataset name={name!r} ({first_line}). Known names: {', '.join(DATASETS)}"
            " (emnist/<config>, e.g. emnist/balanced), or any TFDS image-classification builder."
        ) from e
    if not builder.is_prepared():
        _prepare(tfds, builder, name, root, offline, local)
        builder = tfds.builder(name, data_dir=root)
    info = builder.info
    image_key, label_key = info.supervised_keys or ("image", "label")
    image, label = info.features[image_key], info.features[label_key]
    shape, dtype = tuple(getattr(image, "shape", (None,))), getattr(image, "np_dtype", None)
    if None in shape or dtype != np.uint8 or not hasattr(label, "num_classes"):
        raise DatasetError(f"dataset {name!r} is not a fixed-shape uint8 image classification set")
    if not {"train", "test"} <= set(info.splits):
        raise DatasetError(f"dataset {name!r} has splits {list(info.splits)}, needs train+test")
    if tfds.core.file_adapters.FileFormat.ARRAY_RECORD in info.available_file_formats():
        (x_tr, y_tr), (x_te, y_te) = (_decode_split(builder, s) for s in ("train", "test"))
    elif importlib.util.find_spec("tensorflow") is not None:
        (x_tr, y_tr), (x_te, y_te) = (
            _decode_split_with_tf(tfds, name, root, s) for s in ("train", "test")
        )
    else:
        raise DatasetError(
            f"dataset {name!r} in data_dir={str(root)!r} is prepared as {info.file_format}, which "
            "needs TensorFlow to read. Either pip install -e '.[tfds-prepare]', or re-prepare it "
            "as array_record: tfds convert_format --root_data_dir=DIR --out_file_format="
            "array_record, or download_and_prepare(file_format='array_record') into a new data_dir."
        )
    version, source = str(builder.version), str(builder.data_dir)
    return RawData(x_tr, y_tr, x_te, y_te, label.num_classes, 255.0, version, source, {})
