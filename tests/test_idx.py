"""Tests for wdjax.idx: tiny idx files written here, loaded by name with the network forbidden."""

import gzip
import hashlib
import pathlib
import re
import socket
import time

import numpy as np
import pytest

from wdjax import data
from wdjax.data import idx, sources

NAME = "fashion_mnist"
TINY = (6, 4)  # (train, test) images in the tiny files
REAL = idx.SYSTEM_ROOT / "fashion-mnist"


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """The idx encoding of ``array``, written independently of the decoder (big-endian)."""
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    header = bytes([0, 0, code, array.ndim])
    sizes = b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + sizes + np.asarray(array, dtype).tobytes()


def tiny_arrays(seed: int, counts=TINY) -> dict:
    """Images uint8 [N, 28, 28] whose pixel (0, 0) holds the index; labels (3i + seed) mod 10."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in zip(("train", "test"), counts, strict=True):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        x[:, 0, 0] = np.arange(n)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, (3 * np.arange(n) + seed) % 10
    return arrays


def write_set(folder: pathlib.Path, arrays: dict, gz=True, skip=()) -> dict:
    """Write the four files (``gz``: True, False, or a per-key dict); returns key -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, stem in idx.FILES.items():
        if key in skip:
            continue
        content = idx_bytes(arrays[key])
        use_gz = gz[key] if isinstance(gz, dict) else gz
        paths[key] = folder / (f"{stem}.gz" if use_gz else stem)
        paths[key].write_bytes(gzip.compress(content) if use_gz else content)
    return paths


def assert_raw_equals(raw, arrays: dict) -> None:
    for key, expected in arrays.items():
        got = getattr(raw, key)
        if key.startswith("x"):
            assert got.dtype == np.uint8 and got.shape == (*expected.shape, 1)
            np.testing.assert_array_equal(got[..., 0], expected)
        else:
            assert got.dtype == np.int32
            np.testing.assert_array_equal(got, expected)


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """data_dir, a raw dir and a Debian-like root, all empty; tiny counts; no network."""

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setitem(idx.DATASETS, NAME, idx.DATASETS[NAME]._replace(counts=TINY))
    system = tmp_path / "usr_share_datasets"
    monkeypatch.setattr(idx, "SYSTEM_ROOT", system)
    monkeypatch.delenv("WDJAX_RAW_DIR", raising=False)
    monkeypatch.setenv("WDJAX_OFFLINE", "1")
    data_dir = tmp_path / "data_dir"
    return dict(
        data_dir=data_dir,
        manual=data_dir / "downloads" / "manual",
        raw=tmp_path / "raw",
        system=system / "fashion-mnist",
    )


# ---------------------------------------------------------------- the format


def test_decode_hand_written_headers():
    labels = bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 9, 0, 7])
    np.testing.assert_array_equal(idx.decode(labels, "l", idx.LABELS_MAGIC), [9, 0, 7])
    images = bytes([0, 0, 0x08, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6])
    got = idx.decode(images, "i", idx.IMAGES_MAGIC)
    assert got.shape == (1, 2, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, [[[1, 2, 3], [4, 5, 6]]])
    big = bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE])  # int16, big-endian
    np.testing.assert_array_equal(idx.decode(big, "s"), [258, -2])


@pytest.mark.parametrize("code", [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E])
def test_decode_round_trips_every_dtype(code):
    rng = np.random.default_rng(code)
    x = rng.integers(-100, 100, size=(3, 257, 2)) if code != 0x08 else rng.integers(0, 256, (3, 5))
    x = x.astype({0x08: np.uint8, 0x09: np.int8}.get(code, np.float64))
    got = idx.decode(idx_bytes(x, code), "f")
    assert got.dtype.isnative and got.shape == x.shape
    np.testing.assert_array_equal(got, x)


# ---------------------------------------------------------------- layouts, by name


@pytest.mark.parametrize(
    "layout, gz",
    [
        ("manual", True),
        ("raw", False),
        ("system", True),
        ("system", {"x_train": True, "y_train": False, "x_test": False, "y_test": True}),
    ],
)
def test_load_by_name_from_each_layout(roots, layout, gz):
    arrays = tiny_arrays(seed=1)
    paths = write_set(roots[layout], arrays, gz=gz)
    raw_dir = roots["raw"] if layout == "raw" else None
    raw = idx.load(NAME, roots["data_dir"], raw_dir)
    assert_raw_equals(raw, arrays)
    assert raw.num_classes == 10 and raw.max_value == 255.0 and raw.source == str(roots[layout])
    expected = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths.values()}
    assert raw.sha256 == expected
    ds = data.load(NAME, data_dir=roots["data_dir"], raw_dir=raw_dir, val_size=0)
    assert ds.name == NAME and ds.image_shape == (28, 28, 1) and ds.num_classes == 10
    np.testing.assert_array_equal(np.rint(ds.x_test[..., 0] * 255), arrays["x_test"])
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
    order = np.rint(ds.x_train[:, 0, 0, 0] * 255).astype(int)  # pixel (0, 0) holds the index
    assert sorted(order) == list(range(TINY[0]))
    np.testing.assert_array_equal(ds.y_train, arrays["y_train"][order])
    assert ds.source == str(roots[layout]) and ds.sha256 == expected and ds.cache is None


def test_raw_dir_from_the_environment(roots, monkeypatch):
    arrays = tiny_arrays(seed=2)
    write_set(roots["raw"], arrays, gz=False)
    monkeypatch.setenv("WDJAX_RAW_DIR", str(roots["raw"]))
    ds = data.load(NAME, data_dir=roots["data_dir"], val_size=0, cache=False)
    assert ds.source == str(roots["raw"])


def test_lookup_order_manual_then_raw_dir_then_system(roots):
    for seed, layout in enumerate(("manual", "raw", "system")):
        write_set(roots[layout], tiny_arrays(seed=seed))
    for seed, layout in enumerate(("manual", "raw", "system")):
        raw_dir = None if layout == "system" else roots["raw"]  # named, it must hold the files
        raw = idx.load(NAME, roots["data_dir"], raw_dir)
        assert raw.source == str(roots[layout])
        assert_raw_equals(raw, tiny_arrays(seed=seed))
        for path in roots[layout].iterdir():
            path.unlink()
    assert idx.load(NAME, roots["data_dir"]) is None  # nowhere: the caller goes on to tfds


def test_a_prepared_tfds_folder_comes_before_the_idx_files(roots, monkeypatch):
    write_set(roots["manual"], tiny_arrays(seed=0))
    sentinel = sources.RawData(*tiny_arrays(seed=5).values(), 10, 255.0, "3.0.1", "tfds", {})
    monkeypatch.setattr(sources, "tfds_prepared", lambda name, root: True)
    monkeypatch.setattr(sources, "load_tfds", lambda *a, **k: sentinel)
    monkeypatch.setattr(idx, "decode_files", lambda *a: pytest.fail("idx files read"))
    assert data.load(NAME, data_dir=roots["data_dir"], cache=False).source == "tfds"


def test_cache_is_used_on_the_second_load_with_provenance(roots, monkeypatch):
    paths = write_set(roots["system"], tiny_arrays(seed=3))
    first = data.load(NAME, data_dir=roots["data_dir"], seed=4)
    entry = roots["data_dir"] / "wdjax_cache" / f"{NAME}-idx.npz"
    assert first.cache is None and entry.exists()
    for path in paths.values():
        path.unlink()  # the cache alone must serve the second load
    monkeypatch.setattr(idx, "decode_files", lambda *a: pytest.fail("cache miss"))
    second = data.load(NAME, data_dir=roots["data_dir"], seed=4)
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "source", "sha256"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))
    assert second.cache == str(entry) and len(second.sha256) == 4


# ---------------------------------------------------------------- bad files


def _corrupt(paths, key, make):
    path = paths[key]
    content = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    content = make(content)
    path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)
    return path


def _swap_magic(content):  # an image file carrying the label magic number
    return content[:3] + b"\x01" + content[4:]


BAD_FILES = {
    "wrong magic": ("x_train", _swap_magic, "wrong magic number 0x00000801, expected 0x00000803"),
    "int16 images": ("x_test", lambda c: c[:2] + b"\x0b" + c[3:], "wrong magic number 0x00000B03"),
    "not idx": ("y_test", lambda c: b"PK\x03\x04" + c[4:], "wrong magic number 0x504B0304"),
    "truncated": ("x_train", lambda c: c[:-100], "truncated"),
    "cut in header": ("y_train", lambda c: c[:6], "truncated inside its header"),
    "too long": ("y_test", lambda c: c + b"\0\0", "2 bytes too long"),
    "count mismatch": ("y_train", lambda c: idx_bytes(np.zeros(5, np.uint8)), "5 labels"),
    "image shape": ("x_test", lambda c: idx_bytes(np.zeros((4, 27, 28), np.uint8)), "27x28"),
    "label range": ("y_test", lambda c: idx_bytes(np.array([1, 2, 10, 3], np.uint8)), "label 10"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
@pytest.mark.parametrize("gz", [True, False])
def test_bad_file_is_named_fast_and_nothing_is_cached(roots, case, gz):
    key, make, needle = BAD_FILES[case]
    paths = write_set(roots["manual"], tiny_arrays(seed=0), gz=gz)
    write_set(roots["system"], tiny_arrays(seed=1))  # good files later in the order: not used
    bad = _corrupt(paths, key, make)
    start = time.perf_counter()
    with pytest.raises(data.DatasetError) as e:
        data.load(NAME, data_dir=roots["data_dir"])
    assert time.perf_counter() - start < 2
    assert str(bad) in str(e.value) and needle in str(e.value), str(e.value)
    assert not (roots["data_dir"] / "wdjax_cache").exists() or not any(
        (roots["data_dir"] / "wdjax_cache").iterdir()
    )


@pytest.mark.parametrize("cut", [10, 1000])
def test_broken_gzip_is_named(roots, cut):
    paths = write_set(roots["raw"], tiny_arrays(seed=0))
    paths["x_train"].write_bytes(paths["x_train"].read_bytes()[:cut])
    with pytest.raises(data.DatasetError, match="not a complete gzip file") as e:
        data.load(NAME, data_dir=roots["data_dir"], raw_dir=roots["raw"])
    assert str(paths["x_train"]) in str(e.value)
    paths["x_train"].write_bytes(b"plain text, not gzip")
    with pytest.raises(data.DatasetError, match="not a complete gzip file"):
        data.load(NAME, data_dir=roots["data_dir"], raw_dir=roots["raw"])
    assert not (roots["data_dir"] / "wdjax_cache").exists()


@pytest.mark.parametrize(
    "skip", [("x_train",), ("y_train", "x_test"), ("x_train", "y_test", "y_train")]
)
def test_some_of_the_four_files_is_an_error_listing_them(roots, skip):
    write_set(roots["manual"], tiny_arrays(seed=0), skip=skip)
    write_set(roots["system"], tiny_arrays(seed=1))
    with pytest.raises(data.DatasetError) as e:
        data.load(NAME, data_dir=roots["data_dir"])
    message = str(e.value)
    assert str(roots["manual"]) in message and f"holds {4 - len(skip)} of the 4" in message
    present, missing = re.search(r"present (.*); missing (.*)\. Add", message).groups()
    for key, stem in idx.FILES.items():
        assert (stem in missing) == (key in skip) and (stem in present) == (key not in skip)


def test_official_counts_are_checked_by_name(roots, monkeypatch):
    monkeypatch.setitem(idx.DATASETS, NAME, idx.DATASETS[NAME]._replace(counts=(60_000, 10_000)))
    paths = write_set(roots["manual"], tiny_arrays(seed=0))
    with pytest.raises(data.DatasetError, match="official train split has 60000") as e:
        data.load(NAME, data_dir=roots["data_dir"])
    assert str(paths["x_train"]) in str(e.value)


def test_another_datasets_release_is_refused(roots, monkeypatch):
    paths = write_set(roots["manual"], tiny_arrays(seed=0))
    sha = hashlib.sha256(paths["y_test"].read_bytes()).hexdigest()
    monkeypatch.setitem(idx.KNOWN_SHA256, sha, ("mnist", "y_test"))
    with pytest.raises(data.DatasetError, match="this is mnist's t10k-labels-idx1-ubyte"):
        data.load(NAME, data_dir=roots["data_dir"])


def test_raw_dir_errors(roots, tmp_path):
    roots["raw"].mkdir()
    with pytest.raises(data.DatasetError, match="holds none of fashion_mnist's idx files"):
        data.load(NAME, data_dir=roots["data_dir"], raw_dir=roots["raw"])
    with pytest.raises(data.DatasetError, match="is not a folder"):
        data.load(NAME, data_dir=roots["data_dir"], raw_dir=tmp_path / "nowhere")
    with pytest.raises(data.DatasetError, match="raw_dir"):
        data.load("digits", raw_dir=roots["raw"])


def test_offline_error_names_apt_the_manual_folder_and_the_files(roots):
    with pytest.raises(data.DatasetError) as e:
        data.load(NAME, data_dir=roots["data_dir"])
    message = str(e.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert str(roots["manual"]) in message and "--raw-dir" in message and "WDJAX_RAW_DIR" in message
    for stem in idx.FILES.values():
        assert stem in message
    with pytest.raises(data.DatasetError) as e:
        data.load("kmnist", data_dir=roots["data_dir"])
    assert "apt-get" not in str(e.value) and "--raw-dir" in str(e.value)


# ---------------------------------------------------------------- the real files


@pytest.mark.skipif(
    not REAL.is_dir(), reason=f"{REAL} absent (apt-get install dataset-fashion-mnist)"
)
def test_real_fashion_mnist_from_the_debian_package(tmp_path):
    raw = idx.load(NAME, tmp_path, system_root=idx.SYSTEM_ROOT)
    assert raw.source == str(REAL) and len(raw.sha256) == 4
    assert raw.x_train.shape == (60_000, 28, 28, 1) and raw.x_test.shape == (10_000, 28, 28, 1)
    assert raw.x_train.dtype == np.uint8 and raw.x_train.max() == 255
    np.testing.assert_array_equal(np.bincount(raw.y_train, minlength=10), [6_000] * 10)
    np.testing.assert_array_equal(np.bincount(raw.y_test, minlength=10), [1_000] * 10)
    np.testing.assert_array_equal(raw.y_train[:10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5])


def test_an_explicit_raw_dir_is_read_and_checked_even_with_a_good_cache(roots):
    write_set(roots["system"], tiny_arrays(seed=3))
    good = data.load(NAME, data_dir=roots["data_dir"])  # decoded, and cached
    assert good.cache is None and (roots["data_dir"] / "wdjax_cache").exists()
    paths = write_set(roots["raw"], tiny_arrays(seed=4))
    paths["x_train"].write_bytes(paths["x_train"].read_bytes()[:100])  # a damaged copy
    with pytest.raises(data.DatasetError) as e:
        data.load(NAME, data_dir=roots["data_dir"], raw_dir=roots["raw"])
    assert str(paths["x_train"]) in str(e.value)
    write_set(roots["raw"], tiny_arrays(seed=4))  # repaired: its own arrays, not the cache's
    ds = data.load(NAME, data_dir=roots["data_dir"], raw_dir=roots["raw"], val_size=0)
    assert ds.source == str(roots["raw"]) and ds.cache is None
    np.testing.assert_array_equal(ds.y_test, tiny_arrays(seed=4)["y_test"])
