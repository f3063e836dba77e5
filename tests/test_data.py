"""Tests for wdjax.data and wdjax.sources: hermetic (no network, no TensorFlow)."""

import io
import socket
import sys
import threading
import time

import numpy as np
import pytest

from wdjax import data
from wdjax.data import idx, sources

TINY = "wdjax_test_tiny_mnist"  # unique TFDS name, registered by the `tiny_builder` fixture
TINY_SIZES = {"train": 60, "test": 20}


def _tiny_examples(split):
    """Deterministic (image uint8 [28, 28, 1], label) pairs; pixel (0, 0) holds the index."""
    rng = np.random.default_rng(0 if split == "train" else 1)
    for i in range(TINY_SIZES[split]):
        image = rng.integers(0, 256, size=(28, 28, 1), dtype=np.uint8)
        image[0, 0, 0] = i
        yield image, (3 * i + 1) % 10


@pytest.fixture(scope="session")
def tiny_builder():
    """A real TFDS builder with MNIST's feature spec (registered by name on first use)."""
    import tensorflow_datasets as tfds
    from PIL import Image

    class WdjaxTestTinyMnist(tfds.core.GeneratorBasedBuilder):
        name = TINY
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(28, 28, 1)),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            )
            return tfds.core.DatasetInfo(
                builder=self, features=features, supervised_keys=("image", "label")
            )

        def _split_generators(self, dl_manager):
            return {s: self._generate_examples(s) for s in TINY_SIZES}

        def _generate_examples(self, split):
            for i, (image, label) in enumerate(_tiny_examples(split)):
                png = io.BytesIO()  # numpy images would need TensorFlow to encode
                Image.fromarray(image[..., 0]).save(png, format="PNG")
                yield i, {"image": png.getvalue(), "label": label}

    return WdjaxTestTinyMnist


@pytest.fixture(scope="session")
def tiny_dir(tiny_builder, tmp_path_factory):
    """The tiny dataset prepared as array_record by tfds itself."""
    root = tmp_path_factory.mktemp("tfds")
    import tensorflow_datasets as tfds

    tfds.builder(TINY, data_dir=root).download_and_prepare(file_format="array_record")
    return root


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Default data_dir (and so the cache) in a per-test temp dir, no idx files from this machine
    (raw dir, /usr/share/datasets); network calls fail loudly."""
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "default_data_dir"))
    monkeypatch.delenv("WDJAX_RAW_DIR", raising=False)
    monkeypatch.setattr(idx, "SYSTEM_ROOT", tmp_path / "no_system_datasets")

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", no_network)


def _assert_same_data(a, b):
    """Every field but ``cache`` (where the arrays were read from) is equal."""
    for field in data.Dataset._fields:
        if field != "cache":
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def _by_index(x, y):
    """Map pixel (0, 0) -> (uint8 image, label) for images loaded in float [0, 1]."""
    images = np.rint(x * 255).astype(np.uint8)
    return {int(im[0, 0, 0]): (im, int(label)) for im, label in zip(images, y, strict=True)}


# ---------------------------------------------------------------- TFDS path


def test_tiny_tfds_dataset_loads_by_name_exactly(tiny_dir):
    ds = data.load(TINY, data_dir=tiny_dir, val_size=0, cache=False)
    assert ds.x_train.shape == (60, 28, 28, 1) and ds.x_test.shape == (20, 28, 28, 1)
    assert ds.x_val.shape == (0, 28, 28, 1) and ds.y_val.shape == (0,)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert ds.num_classes == 10 and ds.name == TINY and ds.image_shape == (28, 28, 1)
    for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        got = _by_index(x, y)
        assert sorted(got) == list(range(TINY_SIZES[split]))
        for i, (image, label) in enumerate(_tiny_examples(split)):
            np.testing.assert_array_equal(got[i][0], image)
            assert got[i][1] == label
    assert "tensorflow" not in sys.modules


def test_tiny_tfds_cache_is_used_and_equal(tiny_dir, tmp_path, monkeypatch):
    root = tmp_path / "copy"
    import shutil

    shutil.copytree(tiny_dir, root)
    first = data.load(TINY, data_dir=root, seed=3)
    assert [p.name for p in (root / "wdjax_cache").iterdir()] == [f"{TINY}-1.0.0.npz"]

    def no_tfds(*args, **kwargs):
        raise AssertionError("cache miss")

    monkeypatch.setattr(sources, "load_tfds", no_tfds)
    start = time.perf_counter()
    second = data.load(TINY, data_dir=root, seed=3)
    assert time.perf_counter() - start < 0.5
    _assert_same_data(first, second)
    assert first.source == second.source == str(root / TINY / "1.0.0")
    assert first.cache is None and second.cache == str(root / "wdjax_cache" / f"{TINY}-1.0.0.npz")


def test_wdjax_prepares_a_registered_builder_when_connected(tiny_builder, tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "host_reachable", lambda *args, **kwargs: True)
    ds = data.load(TINY, data_dir=tmp_path, val_size=0, cache=False, offline=False)
    assert sorted(_by_index(ds.x_test, ds.y_test)) == list(range(20))
    assert (tmp_path / TINY / "1.0.0" / "dataset_info.json").exists()


def _assert_offline_message(message, root):
    for part in ("'mnist'", str(root), "digits", "array_record", "TFDS_DATA_DIR"):
        assert part in message
    assert str(root / "downloads" / "manual") in message


@pytest.fixture
def no_prepare(monkeypatch):
    import tensorflow_datasets as tfds

    def refuse(*args, **kwargs):
        raise AssertionError("download_and_prepare must not be called")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", refuse)


def test_offline_not_prepared_fails_fast_with_ways_out(tmp_path, no_prepare, monkeypatch):
    monkeypatch.setenv("WDJAX_OFFLINE", "1")  # as tests/conftest.py does
    start = time.perf_counter()
    with pytest.raises(data.DatasetError) as e:
        data.load("mnist", data_dir=tmp_path)
    assert time.perf_counter() - start < 5
    _assert_offline_message(str(e.value), tmp_path)
    assert "WDJAX_OFFLINE" in str(e.value)
    assert "train-images-idx3-ubyte.gz" in str(e.value)  # the files tfds expects, by name


def test_unreachable_host_check_is_bounded(tmp_path, no_prepare, monkeypatch):
    release = threading.Event()

    def hang(address, timeout=None):
        release.wait(30)  # a resolver / firewall that never answers
        raise OSError("released")

    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.perf_counter()
    try:
        with pytest.raises(data.DatasetError) as e:
            data.load("mnist", data_dir=tmp_path, offline=False)
    finally:
        release.set()
    assert time.perf_counter() - start < sources.CONNECT_TIMEOUT_S + 2
    _assert_offline_message(str(e.value), tmp_path)
    assert "storage.googleapis.com:443 unreachable" in str(e.value)


def test_host_reachable_sees_a_listening_socket(monkeypatch):
    monkeypatch.undo()  # the real socket.create_connection, local only
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert sources.host_reachable("127.0.0.1", port, timeout=1.0)
    assert not sources.host_reachable("127.0.0.1", port, timeout=1.0)


def test_unknown_name_lists_known_names():
    with pytest.raises(data.DatasetError) as e:
        data.load("no_such_dataset_xyz", cache=False)
    for known in ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "svhn_cropped"):
        assert known in str(e.value)
    assert "name='no_such_dataset_xyz'" in str(e.value)


# ---------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def sk_digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.reshape(-1, 8, 8, 1) / 16.0, bunch.target


def _rows(x):
    return sorted(map(bytes, np.asarray(x, np.float64).reshape(x.shape[0], -1)))


def test_digits_shapes_dtypes_range():
    ds = data.load()
    n_test = 359  # sum over classes of round(0.2 * n_c)
    n_val = round(0.1 * (1797 - n_test))
    assert ds.name == "digits" and ds.num_classes == 10 and ds.image_shape == (8, 8, 1)
    assert ds.x_train.shape == (1797 - n_test - n_val, 8, 8, 1)
    assert ds.x_val.shape == (n_val, 8, 8, 1) and ds.x_test.shape == (n_test, 8, 8, 1)
    for x in (ds.x_train, ds.x_val, ds.x_test):
        assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    for y in (ds.y_train, ds.y_val, ds.y_test):
        assert y.dtype == np.int32 and set(np.unique(y)) == set(range(10))


def test_digits_test_split_fixed_stratified_and_complete(sk_digits):
    x_all, y_all = sk_digits
    a = data.load(val_size=0, seed=0, cache=False)
    b = data.load(val_size=0.3, seed=7, train_size=50, label_noise=0.5, cache=False)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    n_c = np.bincount(y_all, minlength=10)
    expected_test = np.array([round(0.2 * n) for n in n_c])
    np.testing.assert_array_equal(np.bincount(a.y_test, minlength=10), expected_test)
    np.testing.assert_array_equal(np.bincount(a.y_train, minlength=10), n_c - expected_test)
    assert _rows(np.concatenate([a.x_train, a.x_test])) == _rows(x_all)


def test_digits_splits_deterministic_by_seed_and_partition_the_pool():
    pool = data.load(val_size=0, cache=False)
    a, a2, b = (data.load(val_size=200, seed=s, cache=False) for s in (1, 1, 2))
    for u, v in zip(a, a2, strict=True):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a.y_val, b.y_val)
    assert a.x_val.shape[0] == 200
    assert _rows(np.concatenate([a.x_train, a.x_val])) == _rows(pool.x_train)
    assert _rows(a.x_val) != _rows(b.x_val)


def test_digits_train_size_nested_with_fixed_validation():
    small, big = (data.load(val_size=0.25, train_size=n, seed=5, cache=False) for n in (100, 700))
    assert small.x_train.shape[0] == 100 and big.x_train.shape[0] == 700
    assert small.x_val.shape[0] == big.x_val.shape[0] == round(0.25 * 1438)
    np.testing.assert_array_equal(small.x_val, big.x_val)
    np.testing.assert_array_equal(small.x_train, big.x_train[:100])
    full = data.load(val_size=0.25, train_size=1438 - 360, cache=False)
    assert full.x_train.shape[0] == 1078


@pytest.mark.parametrize("p", [0.0, 0.1, 0.37, 1.0])
def test_digits_label_noise_exact_count_different_class_test_untouched(p):
    clean = data.load(val_size=100, train_size=900, seed=4, cache=False)
    noisy = data.load(val_size=100, train_size=900, seed=4, label_noise=p, cache=False)
    for name in ("x_train", "x_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(noisy, name), getattr(clean, name))
    y_clean = np.concatenate([clean.y_train, clean.y_val])
    y_noisy = np.concatenate([noisy.y_train, noisy.y_val])
    assert int(np.sum(y_clean != y_noisy)) == round(p * 1000)
    if p == 1.0:  # new class uniform over the 9 others: each offset ~111 of 1000
        offsets = np.bincount((y_noisy - y_clean) % 10, minlength=10)
        assert offsets[0] == 0 and offsets[1:].min() > 70 and offsets[1:].max() < 160


def test_digits_standardize_uses_training_statistics():
    raw = data.load(seed=2, cache=False)
    std = data.load(seed=2, standardize=True, cache=False)
    mean, sd = raw.x_train.mean(), raw.x_train.std()  # one channel
    np.testing.assert_allclose(std.x_train.mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(std.x_train.std(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(std.x_test, (raw.x_test - mean) / sd, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(std.x_val, (raw.x_val - mean) / sd, rtol=1e-5, atol=1e-5)
    assert std.x_test.dtype == np.float32


def test_digits_cache_skips_sklearn_and_ignores_corrupt_files(tmp_path, monkeypatch):
    (tmp_path / "wdjax_cache").mkdir()
    (tmp_path / "wdjax_cache" / "digits-99.0.npz").write_bytes(b"not a zip")
    first = data.load(data_dir=tmp_path)
    monkeypatch.setattr(sources, "load_digits", lambda: pytest.fail("cache miss"))
    second = data.load(data_dir=tmp_path)
    _assert_same_data(first, second)
    assert first.source == second.source and second.source.startswith("scikit-learn ")
    assert second.cache == str(tmp_path / "wdjax_cache" / f"digits-{second.source.split()[1]}.npz")
    assert not list((tmp_path / "wdjax_cache").glob("*.tmp"))


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(name=""), "name"),
        (dict(val_size=-1), "val_size"),
        (dict(val_size=1.0), "val_size"),
        (dict(val_size=1438), "val_size"),
        (dict(val_size=True), "val_size"),
        (dict(train_size=0), "train_size"),
        (dict(train_size=2000), "train_size"),
        (dict(train_size=1400, val_size=100), "train_size"),
        (dict(train_size=10.5), "train_size"),
        (dict(label_noise=-0.1), "label_noise"),
        (dict(label_noise=1.1), "label_noise"),
        (dict(label_noise=float("nan")), "label_noise"),
        (dict(seed=1.5), "seed"),
    ],
)
def test_bad_input_raises_dataset_error_naming_the_argument(kwargs, argument):
    with pytest.raises(data.DatasetError, match=argument) as e:
        data.load(cache=False, **kwargs)
    assert isinstance(e.value, ValueError)


# ---------------------------------------------------------------- k-fold


@pytest.mark.parametrize("n, k", [(10, 5), (11, 3), (7, 7), (1438, 5)])
def test_kfold_indices_partition(n, k):
    train, val = data.kfold_indices(n, k, seed=0)
    m = n // k
    assert train.shape == (k, n - m) and val.shape == (k, m)
    assert train.dtype == np.int32 and val.dtype == np.int32
    assert sorted(val.reshape(-1)) == sorted(set(val.reshape(-1)))  # folds disjoint
    never_validated = set(range(n)) - set(val.reshape(-1).tolist())
    assert len(never_validated) == n - k * m
    for i in range(k):
        assert sorted(np.concatenate([train[i], val[i]])) == list(range(n))
        assert never_validated <= set(train[i].tolist())
    again, _ = data.kfold_indices(n, k, seed=0)
    np.testing.assert_array_equal(train, again)
    other, _ = data.kfold_indices(n, k, seed=1)
    assert not np.array_equal(train, other)


@pytest.mark.parametrize("n, k", [(5, 1), (3, 4), (5.0, 2)])
def test_kfold_indices_bad_input(n, k):
    with pytest.raises(data.DatasetError, match="k"):
        data.kfold_indices(n, k, seed=0)
