"""MNIST, Fashion-MNIST and KMNIST from their original idx files, decoded with numpy.

Each is distributed as four files, gzipped or not: ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte`` (the official train split) and ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte`` (the test split). wdjax reads them itself because tensorflow-datasets
needs TensorFlow to prepare these datasets from raw files, and its manual-download route accepts
only archives byte-identical to the ones it checksums (Debian's ``.gz`` files hold the same data
behind different gzip header bytes).

The idx format (LeCun et al., http://yann.lecun.com/exdb/mnist/); every integer is big-endian::

    bytes 0-1       0x00 0x00
    byte  2         dtype code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
                    0x0E float64
    byte  3         d, the number of dimensions
    bytes 4..4+4d   the d sizes, each a uint32 (images: N, rows, cols; labels: N)
    then            prod(sizes) values, row-major, each big-endian

so the magic number ``int.from_bytes(bytes[0:4], "big")`` of an image file is 0x00000803 (2051)
and that of a label file 0x00000801 (2049). Decoding gives images ``uint8 [N, rows, cols, 1]``
(HWC, C = 1) and labels ``int32 [N]`` in the files' order: the pixels tfds gives, the same split.

Folders looked up, in order (after wdjax's npz cache and a prepared TFDS folder, see
:func:`wdjax.data.load`): ``<data_dir>/downloads/manual/`` (where tfds asks for hand-downloaded
files), ``raw_dir`` (``--raw-dir``, ``WDJAX_RAW_DIR``), then ``/usr/share/datasets/<name>/`` where
Debian/Ubuntu packages install them (``fashion-mnist``, with a hyphen). A folder holding none of
the four files is passed over (except ``raw_dir``, which was named to be used); one holding one to
three of them, or a file that fails a check, is an error naming the file: never a silent fall
through to the next folder.
"""

import gzip
import hashlib
import pathlib
import zlib
from typing import NamedTuple

import numpy as np

from wdjax.data.sources import DatasetError, RawData

IMAGES_MAGIC = 0x00000803  # idx, uint8, 3 dimensions
LABELS_MAGIC = 0x00000801  # idx, uint8, 1 dimension
SYSTEM_ROOT = pathlib.Path("/usr/share/datasets")  # Debian/Ubuntu's dataset-* packages
FILES = {  # RawData field -> file name (without the optional .gz)
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
VERSION = "idx"  # RawData.version, so the cache entry is <name>-idx.npz
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IdxSpec(NamedTuple):
    """What a dataset's four files must hold."""

    counts: tuple[int, int]  # official (train, test) example counts
    image_shape: tuple[int, int]  # (rows, cols)
    num_classes: int
    system_dir: str  # folder under SYSTEM_ROOT
    package: str | None  # the Debian/Ubuntu package that installs it, where one exists


DATASETS = {
    "mnist": IdxSpec((60_000, 10_000), (28, 28), 10, "mnist", None),
    "fashion_mnist": IdxSpec(
        (60_000, 10_000), (28, 28), 10, "fashion-mnist", "dataset-fashion-mnist"
    ),
    "kmnist": IdxSpec((60_000, 10_000), (28, 28), 10, "kmnist", None),
}

# sha256 of known .gz files: the official archives (tfds' url_checksums/*.txt) and Debian's
# dataset-fashion-mnist 0.0~git20200523.55506a9-1 (same data, other gzip header bytes). The family
# shares file names, so this catches one member's files standing in for another's.
_KNOWN = """
mnist         x_train 440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609
mnist         y_train 3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c
mnist         x_test  8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6
mnist         y_test  f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6
fashion_mnist x_train 3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84
fashion_mnist y_train a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845
fashion_mnist x_test  346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073
fashion_mnist y_test  67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5
fashion_mnist x_train b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7
fashion_mnist y_train 0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056
fashion_mnist x_test  cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa
fashion_mnist y_test  8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05
kmnist        x_train 51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4
kmnist        y_train e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17
kmnist        x_test  edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5
kmnist        y_test  20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c
"""
KNOWN_SHA256 = {
    sha: (name, key) for name, key, sha in (line.split() for line in _KNOWN.strip().splitlines())
}  # sha256 -> (dataset, RawData field)


def decode(buf: bytes, where, magic: int | None = None) -> np.ndarray:
    """Decode one idx buffer (format in the module docstring) to a native-endian array.

    Args:
      buf: the whole (decompressed) file.
      where: the file, named in every error.
      magic: the magic number the header must carry (e.g. ``IMAGES_MAGIC``); None accepts any
        valid idx header.

    Raises:
      DatasetError: a bad magic number, a truncated file, or bytes after the data.
    """
    if len(buf) < 4:
        raise DatasetError(f"{where}: {len(buf)} bytes is too short for an idx header")
    found = int.from_bytes(buf[:4], "big")
    if magic is not None and found != magic:
        kind = {IMAGES_MAGIC: "an image file's", LABELS_MAGIC: "a label file's"}.get(found)
        raise DatasetError(
            f"{where}: wrong magic number 0x{found:08X}, expected 0x{magic:08X}"
            + (f" (0x{found:08X} is {kind}: are the files swapped?)" if kind else "")
        )
    if buf[:2] != b"\0\0" or buf[2] not in _DTYPES or buf[3] == 0:
        raise DatasetError(f"{where}: magic number 0x{found:08X} is not an idx header")
    ndim, dtype = buf[3], np.dtype(_DTYPES[buf[2]])
    start = 4 + 4 * ndim
    if len(buf) < start:
        raise DatasetError(f"{where}: truncated inside its header ({len(buf)} bytes)")
    shape = tuple(int.from_bytes(buf[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = len(buf) - start
    if have != size:
        dims = "x".join(map(str, shape))
        problem = "truncated" if have < size else f"{have - size} bytes too long"
        raise DatasetError(
            f"{where}: {problem}: its header declares {dims} {dtype.name} values = {size} bytes "
            f"of data, the file holds {have}"
        )
    return (
        np.frombuffer(buf, dtype, count=size // dtype.itemsize, offset=start)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def read(path: pathlib.Path, magic: int | None = None) -> tuple[np.ndarray, str]:
    """Decode one idx file (gunzipped first if its name ends in ``.gz``); its sha256 as found."""
    try:
        content = path.read_bytes()
    except OSError as e:
        raise DatasetError(f"{path}: cannot be read ({e})") from e
    sha256 = hashlib.sha256(content).hexdigest()
    if path.suffix == ".gz":
        try:
            content = gzip.decompress(content)
        except (OSError, EOFError, zlib.error) as e:
            raise DatasetError(f"{path}: not a complete gzip file ({e})") from e
    return decode(content, path, magic), sha256


def find_files(folder: pathlib.Path) -> dict[str, pathlib.Path] | None:
    """The four files in ``folder`` (RawData field -> path); None if it holds none of them.

    Each may be ``.gz`` or uncompressed; where both are present the uncompressed one is read.

    Raises:
      DatasetError: the folder holds one to three of the four (lists present and missing).
    """
    found = {}
    for key, stem in FILES.items():
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
    if not found:
        return None
    if len(found) < len(FILES):
        missing = [f"{stem}[.gz]" for key, stem in FILES.items() if key not in found]
        raise DatasetError(
            f"{folder} holds {len(found)} of the 4 idx files: present "
            f"{', '.join(p.name for p in found.values())}; missing {', '.join(missing)}. "
            "Add the missing ones (.gz or uncompressed) or remove the others."
        )
    return found


def decode_files(files: dict[str, pathlib.Path], name: str, spec: IdxSpec) -> RawData:
    """Decode and check the four files of ``name`` against ``spec`` (counts, shapes, labels).

    Raises:
      DatasetError: naming the file and what is wrong with it.
    """
    arrays, sha256 = {}, {}
    for key, path in files.items():
        magic = IMAGES_MAGIC if key.startswith("x") else LABELS_MAGIC
        arrays[key], sha256[path.name] = read(path, magic)
        known = KNOWN_SHA256.get(sha256[path.name])
        if known is not None and known != (name, key):
            raise DatasetError(
                f"{path}: this is {known[0]}'s {FILES[known[1]]} (its sha256 is that of a known "
                f"release), not {name}'s {FILES[key]}"
            )
    for split, count in zip(("train", "test"), spec.counts, strict=True):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        x_path, y_path = files[f"x_{split}"], files[f"y_{split}"]
        if x.shape[1:] != spec.image_shape:
            raise DatasetError(
                f"{x_path}: images of {x.shape[1]}x{x.shape[2]}, {name}'s are "
                f"{spec.image_shape[0]}x{spec.image_shape[1]}"
            )
        if x.shape[0] != y.shape[0]:
            raise DatasetError(
                f"{x_path} holds {x.shape[0]} images but {y_path} holds {y.shape[0]} labels"
            )
        if x.shape[0] != count:
            raise DatasetError(
                f"{x_path} holds {x.shape[0]} images; {name}'s official {split} split has {count}"
            )
        bad = np.flatnonzero(y >= spec.num_classes)
        if bad.size:
            raise DatasetError(
                f"{y_path}: label {y[bad[0]]} at index {bad[0]} is outside [0, "
                f"{spec.num_classes}) ({bad.size} such labels)"
            )
    return RawData(
        arrays["x_train"][..., None],
        arrays["y_train"].astype(np.int32),
        arrays["x_test"][..., None],
        arrays["y_test"].astype(np.int32),
        num_classes=spec.num_classes,
        max_value=255.0,
        version=VERSION,
        source=str(next(iter(files.values())).parent),
        sha256=sha256,
    )


def folders(name: str, root: pathlib.Path, raw_dir=None, system_root=None) -> list:
    """``(label, folder)`` pairs looked up for ``name``, in order (module docstring)."""
    spec = DATASETS[name]
    system_root = SYSTEM_ROOT if system_root is None else pathlib.Path(system_root)
    found = [("manual", root / "downloads" / "manual")]
    if raw_dir is not None:
        found.append(("raw_dir", pathlib.Path(raw_dir).expanduser()))
    found.append(("system", system_root / spec.system_dir))
    return found


def load(name: str, root: pathlib.Path, raw_dir=None, system_root=None) -> RawData | None:
    """Decode ``name`` from the first folder holding its four files; None if none holds any.

    Raises:
      DatasetError: a folder holds some of the files, a file is bad, or ``raw_dir`` holds none.
    """
    for label, folder in folders(name, root, raw_dir, system_root):
        files = find_files(folder)
        if files is not None:
            return decode_files(files, name, DATASETS[name])
        if label == "raw_dir":
            raise DatasetError(
                f"raw_dir (--raw-dir, WDJAX_RAW_DIR) {str(folder)!r} holds none of {name}'s "
                f"idx files: {', '.join(FILES.values())} (.gz or uncompressed)"
            )
    return None


def load_folder(name: str, folder) -> RawData:
    """Decode ``name`` from ``folder`` alone (an explicit ``raw_dir``: no other place, no cache).

    Raises:
      DatasetError: the folder holds none or only some of the files, or a file is bad.
    """
    folder = pathlib.Path(folder).expanduser()
    files = find_files(folder)
    if files is None:
        raise DatasetError(
            f"raw_dir (--raw-dir) {str(folder)!r} holds none of {name}'s idx files: "
            f"{', '.join(FILES.values())} (.gz or uncompressed)",
            "raw_dir",
        )
    return decode_files(files, name, DATASETS[name])


def ways_out(name: str, root: pathlib.Path) -> list[str]:
    """The offline error's extra ways out for an idx dataset (see sources.not_prepared_message)."""
    spec = DATASETS[name]
    ways = []
    if spec.package:
        ways.append(
            f"apt-get install {spec.package} (Debian/Ubuntu: it installs the original files "
            f"in {SYSTEM_ROOT / spec.system_dir}/, which wdjax reads directly)"
        )
    ways.append(
        f"put the 4 original files ({', '.join(f'{stem}.gz' for stem in FILES.values())}; "
        f"or uncompressed) in {root / 'downloads' / 'manual'}/ or in a folder named by "
        "--raw-dir (raw_dir=, WDJAX_RAW_DIR), and rerun"
    )
    return ways
