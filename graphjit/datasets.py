"""Small datasets, returned like Keras: `(x_train, y_train), (x_test, y_test)`.

- `load_digits()`: scikit-learn's bundled 8x8 digits (no download; `pip install scikit-learn`).
- `load_mnist()`, `load_fashion_mnist()`: the standard IDX files; `load_cifar10()`,
  `load_cifar100(label_mode)`: the binary (not pickled) releases. Each is read from `path` when
  given (a directory holding the files).
- `load_imdb()`, `load_reuters()` (with `get_imdb_word_index()`/`get_reuters_word_index()`),
  `load_california_housing()`, `load_boston_housing()`: Keras' `.npz` copies, with Keras'
  `load_data()` arguments and results; `path` is a local file when one exists there, else (as in
  Keras) the name the download is cached under.
Anything not given locally is downloaded once into the cache directory (`$GRAPHJIT_DATA_DIR`,
default `~/.cache/graphjit/datasets`) and checked against its SHA-256 (MD5 where the publisher
only gives one). A truncated file or a checksum mismatch raises `DatasetError`; nothing is ever
partly loaded, and nothing is unpickled but arrays and lists.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle  # noqa: S403 - only through _ArrayOnlyUnpickler, which refuses every class
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from graphjit.compiler.errors import GraphjitError

DATA_DIR_ENV = "GRAPHJIT_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.cache/graphjit/datasets")

Split = tuple[np.ndarray, np.ndarray]


class DatasetError(GraphjitError):
    """A dataset file is missing, truncated, malformed, or fails its checksum."""


@dataclass(frozen=True)
class RemoteFile:
    """A file to download and its checksum: a SHA-256 (64 hex digits) or, where the publisher
    only gives one (as Keras does for some files), an MD5 (32 hex digits)."""

    url: str
    sha256: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


_MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
_FASHION_URL = "https://fashion-mnist.s3.eu-central-1.amazonaws.com/"
_KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte.gz", "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz", "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def _idx_files(base_url: str, sha256: dict[str, str]) -> dict[str, RemoteFile]:
    return {role: RemoteFile(base_url + IDX_NAMES[role], sha256[role]) for role in IDX_NAMES}


# dataset -> file role -> where to get it and its SHA-256 (tests point these at local files)
SOURCES: dict[str, dict[str, RemoteFile]] = {
    "mnist": _idx_files(_MNIST_URL, {
        "train_images": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train_labels": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "test_images": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "test_labels": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    }),
    "fashion_mnist": _idx_files(_FASHION_URL, {
        "train_images": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train_labels": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "test_images": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "test_labels": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    }),
    "cifar10": {
        "archive": RemoteFile(
            "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
            "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"),
    },
    "cifar100": {
        "archive": RemoteFile("https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
                              "03b5dce01913d631647c71ecec9e9cb8"),
    },
    # Keras' own copies, with the checksums keras.datasets checks
    "imdb": {
        "data": RemoteFile(_KERAS_URL + "imdb.npz",
                           "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"),
        "word_index": RemoteFile(_KERAS_URL + "imdb_word_index.json",
                                 "bfafd718b763782e994055a2d397834f"),
    },
    "reuters": {
        "data": RemoteFile(_KERAS_URL + "reuters.npz",
                           "d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916"),
        "word_index": RemoteFile(_KERAS_URL + "reuters_word_index.json",
                                 "4d44cc38712099c9e383dc6e5f11a921"),
    },
    "california_housing": {
        "data": RemoteFile(_KERAS_URL + "california_housing.npz",
                           "1a2e3a52e0398de6463aebe6f4a8da34fb21fbb6b934cf88c3425e766f2a1a6f"),
    },
    "boston_housing": {
        "data": RemoteFile(_KERAS_URL + "boston_housing.npz",
                           "f553886a1f8d56431e820c5b82552d9d95cfcb96d1e678153f8839538947dff5"),
    },
}


# ---------------------------------------------------------------- download and cache


def data_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where downloads are kept: `cache_dir`, else $GRAPHJIT_DATA_DIR, else ~/.cache/graphjit."""
    chosen = cache_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser()


def sha256_of(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(remote: RemoteFile, subdir: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cached copy of `remote`, downloading it first if needed; always checksum-verified."""
    directory = data_dir(cache_dir) / subdir
    target = directory / remote.filename
    algorithm = "md5" if len(remote.sha256) == 32 else "sha256"
    if target.exists() and sha256_of(target, algorithm) == remote.sha256:
        return target
    directory.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{remote.filename}.")
    os.close(handle)
    try:
        try:
            with urllib.request.urlopen(remote.url) as response, open(temporary, "wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as exc:
            raise DatasetError(f"could not download {remote.url}: {exc}. Download it yourself "
                               f"and pass its directory as path=..., or put it in "
                               f"{directory}") from None
        actual = sha256_of(temporary, algorithm)
        if actual != remote.sha256:
            raise DatasetError(f"{remote.url} failed its checksum ({algorithm} {actual}, "
                               f"expected {remote.sha256}): the download is corrupt or incomplete; "
                               "nothing was saved, try again")
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return target


# ---------------------------------------------------------------- IDX files (MNIST)

_IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"{path} is a damaged or truncated gzip file ({exc})") from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (gzipped or not) as an array; the size must match the header exactly."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path} is not an IDX file (bad magic number {data[:4].hex()})")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path} is truncated inside its header")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        what = "truncated" if len(data) - header < expected else "longer than its header says"
        raise DatasetError(f"{path} is {what}: header shape {shape} needs {expected} bytes of "
                           f"data, the file has {len(data) - header}")
    values = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def _find(directory: Path, name: str) -> Path:
    """`name` or its uncompressed form (without .gz) inside `directory`."""
    for candidate in (directory / name, directory / name.removesuffix(".gz")):
        if candidate.exists():
            return candidate
    raise DatasetError(f"{directory} has no {name} (or {name.removesuffix('.gz')})")


def _load_idx_dataset(name: str, path: str | os.PathLike | None,
                      cache_dir: str | os.PathLike | None) -> tuple[Split, Split]:
    if path is not None:
        files = {role: _find(Path(path), IDX_NAMES[role]) for role in IDX_NAMES}
    else:
        files = {role: fetch(remote, name, cache_dir) for role, remote in SOURCES[name].items()}
    arrays = {role: read_idx(file) for role, file in files.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetError(f"{name} {split}: {len(images)} images of shape "
                               f"{images.shape[1:]} but labels of shape {labels.shape}")
    return ((arrays["train_images"], arrays["train_labels"]),
            (arrays["test_images"], arrays["test_labels"]))


def load_mnist(path: str | os.PathLike | None = None,
               cache_dir: str | os.PathLike | None = None) -> tuple[Split, Split]:
    """MNIST: uint8 images (n, 28, 28) and uint8 labels (n,); 60000 train, 10000 test."""
    return _load_idx_dataset("mnist", path, cache_dir)


def load_fashion_mnist(path: str | os.PathLike | None = None,
                       cache_dir: str | os.PathLike | None = None) -> tuple[Split, Split]:
    """Fashion-MNIST, in MNIST's format."""
    return _load_idx_dataset("fashion_mnist", path, cache_dir)


# ---------------------------------------------------------------- CIFAR-10 binary

CIFAR_SIDE = 32
CIFAR_RECORD = 1 + 3 * CIFAR_SIDE * CIFAR_SIDE  # label byte, then R, G, B planes
CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR_TEST_FILES = ("test_batch.bin",)
CIFAR_FOLDER = "cifar-10-batches-bin"


def read_cifar_binary(paths: list[str | os.PathLike]) -> Split:
    """Records of CIFAR-10's binary format as uint8 images (n, 32, 32, 3) and labels (n, 1)."""
    chunks = []
    for path in paths:
        data = Path(path).read_bytes()
        if not data or len(data) % CIFAR_RECORD:
            raise DatasetError(f"{path} is truncated or not a CIFAR-10 binary batch: "
                               f"{len(data)} bytes is not a whole number of "
                               f"{CIFAR_RECORD}-byte records")
        chunks.append(np.frombuffer(data, np.uint8).reshape(-1, CIFAR_RECORD))
    records = np.concatenate(chunks)
    labels = records[:, :1].copy()
    if labels.max(initial=0) > 9:
        raise DatasetError(f"CIFAR-10 labels must be 0..9, found {int(labels.max())}")
    images = records[:, 1:].reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _extract(archive: Path) -> Path:
    destination = archive.parent
    if not (destination / CIFAR_FOLDER).exists():
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(destination, filter="data")
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DatasetError(f"could not extract {archive}: {exc}") from None
    return destination / CIFAR_FOLDER


def load_cifar10(path: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None) -> tuple[Split, Split]:
    """CIFAR-10: uint8 images (n, 32, 32, 3) and labels (n, 1); 50000 train, 10000 test.

    `path` is a directory holding the `.bin` batches (or the `cifar-10-batches-bin` folder)."""
    if path is not None:
        folder = Path(path)
        if (folder / CIFAR_FOLDER).is_dir():
            folder = folder / CIFAR_FOLDER
    else:
        folder = _extract(fetch(SOURCES["cifar10"]["archive"], "cifar10", cache_dir))
    missing = [f for f in CIFAR_TRAIN_FILES + CIFAR_TEST_FILES if not (folder / f).exists()]
    if missing:
        raise DatasetError(f"{folder} is missing CIFAR-10 batches {missing}")
    return (read_cifar_binary([folder / f for f in CIFAR_TRAIN_FILES]),
            read_cifar_binary([folder / f for f in CIFAR_TEST_FILES]))


# ---------------------------------------------------------------- CIFAR-100 binary

CIFAR100_RECORD = 2 + 3 * CIFAR_SIDE * CIFAR_SIDE  # coarse label, fine label, R, G, B planes
CIFAR100_FOLDER = "cifar-100-binary"


def read_cifar100_binary(path: str | os.PathLike, label_mode: str = "fine") -> Split:
    """CIFAR-100's binary `train.bin`/`test.bin` as uint8 images (n, 32, 32, 3) and int64
    labels (n, 1): the fine (0..99) or coarse (0..19) ones."""
    if label_mode not in ("fine", "coarse"):
        raise DatasetError(f"label_mode must be 'fine' or 'coarse', got {label_mode!r}")
    data = Path(path).read_bytes()
    if not data or len(data) % CIFAR100_RECORD:
        raise DatasetError(f"{path} is truncated or not a CIFAR-100 binary file: {len(data)} "
                           f"bytes is not a whole number of {CIFAR100_RECORD}-byte records")
    records = np.frombuffer(data, np.uint8).reshape(-1, CIFAR100_RECORD)
    column, limit = (1, 100) if label_mode == "fine" else (0, 20)
    labels = records[:, column:column + 1].astype(np.int64)
    if labels.max(initial=0) >= limit:
        raise DatasetError(f"{path}: CIFAR-100 {label_mode} labels must be below {limit}, "
                           f"found {int(labels.max())}")
    images = records[:, 2:].reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def load_cifar100(label_mode: str = "fine", path: str | os.PathLike | None = None,
                  cache_dir: str | os.PathLike | None = None) -> tuple[Split, Split]:
    """CIFAR-100 (keras.datasets.cifar100.load_data): uint8 images (n, 32, 32, 3), int64
    labels (n, 1); 50000 train, 10000 test. `path` is a directory holding train.bin and
    test.bin (or the `cifar-100-binary` folder)."""
    if label_mode not in ("fine", "coarse"):
        raise DatasetError(f"label_mode must be 'fine' or 'coarse', got {label_mode!r}")
    if path is not None:
        folder = Path(path)
        if (folder / CIFAR100_FOLDER).is_dir():
            folder = folder / CIFAR100_FOLDER
    else:
        archive = fetch(SOURCES["cifar100"]["archive"], "cifar100", cache_dir)
        folder = archive.parent / CIFAR100_FOLDER
        if not folder.exists():
            _extract_archive(archive)
    missing = [f for f in ("train.bin", "test.bin") if not (folder / f).exists()]
    if missing:
        raise DatasetError(f"{folder} is missing CIFAR-100 files {missing}")
    return (read_cifar100_binary(folder / "train.bin", label_mode),
            read_cifar100_binary(folder / "test.bin", label_mode))


def _extract_archive(archive: Path) -> None:
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(archive.parent, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DatasetError(f"could not extract {archive}: {exc}") from None


# ---------------------------------------------------------------- Keras' .npz copies


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Object arrays (IMDB's and Reuters' lists of word ids) are pickled inside the .npz;
    this reads them while refusing every class but NumPy's array machinery and lists, so a
    tampered file cannot run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("builtins", "list"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise DatasetError(f"refusing to load {module}.{name} from a dataset file: only "
                               "arrays and lists are allowed")
        return super().find_class(module, name)


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of an .npz file; object arrays are unpickled with `_ArrayOnlyUnpickler`.
    A truncated or damaged file raises DatasetError."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                with archive.open(member) as handle:
                    version = np.lib.format.read_magic(handle)
                    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                        else np.lib.format.read_array_header_2_0
                    shape, fortran, dtype = read_header(handle)
                    if dtype.hasobject:
                        values = _ArrayOnlyUnpickler(handle).load()
                    else:
                        count = int(np.prod(shape, dtype=np.int64))
                        raw = handle.read(count * dtype.itemsize)
                        if len(raw) != count * dtype.itemsize:
                            raise DatasetError(f"{path}: {member} is truncated")
                        values = np.frombuffer(raw, dtype).reshape(
                            shape, order="F" if fortran else "C").copy()
                arrays[member.removesuffix(".npy")] = np.asarray(values)
    except DatasetError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, pickle.UnpicklingError,
            zlib.error) as exc:
        raise DatasetError(f"{path} is damaged or truncated, or not an .npz file ({exc})") \
            from None
    return arrays


def _keras_file(name: str, role: str, path: str | os.PathLike | None,
                cache_dir: str | os.PathLike | None) -> Path:
    """A local file (`path` naming an existing file) or the checksum-verified cached download.
    A `path` that is not an existing file is, as in Keras, the name to cache the file under."""
    remote = SOURCES[name][role]
    if path is not None and Path(path).expanduser().is_file():
        return Path(path).expanduser()
    return fetch(remote, name, cache_dir)


def _require(arrays: dict[str, np.ndarray], keys: tuple[str, ...], path: Any) -> None:
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise DatasetError(f"{path} has no arrays {missing} (it has {sorted(arrays)})")


def _remove_long(maxlen: int, sequences: list, labels: np.ndarray) -> tuple[list, list]:
    kept = [(x, y) for x, y in zip(sequences, labels) if len(x) < maxlen]
    return [x for x, _ in kept], [y for _, y in kept]


def _encode(sequences: list, start_char: int | None, index_from: int) -> list[list[int]]:
    offset = index_from or 0
    prefix = [start_char] if start_char is not None else []
    return [prefix + [int(w) + offset for w in x] for x in sequences]


def _vocabulary(xs: list[list[int]], num_words: int | None, skip_top: int,
                oov_char: int | None) -> list[list[int]]:
    if not num_words:
        num_words = max((max(x) for x in xs if len(x)), default=0)
    if oov_char is not None:
        return [[w if skip_top <= w < num_words else oov_char for w in x] for x in xs]
    return [[w for w in x if skip_top <= w < num_words] for x in xs]


def _object_array(sequences: list[list[int]]) -> np.ndarray:
    out = np.empty(len(sequences), dtype=object)
    for i, sequence in enumerate(sequences):
        out[i] = sequence
    return out


def load_imdb(path: str | os.PathLike | None = "imdb.npz", num_words: int | None = None,
              skip_top: int = 0, maxlen: int | None = None, seed: int = 113,
              start_char: int | None = 1, oov_char: int | None = 2, index_from: int = 3,
              cache_dir: str | os.PathLike | None = None) -> tuple[Split, Split]:
    """IMDB movie reviews (keras.datasets.imdb.load_data): x is an object array of lists of
    word ids, y int labels (1 = positive). Word id i + index_from is the i-th most frequent
    word; 0 pads, `start_char` starts each review, `oov_char` replaces words outside
    [skip_top, num_words); reviews of `maxlen` words or more are dropped."""
    file = _keras_file("imdb", "data", path, cache_dir)
    arrays = read_npz(file)
    _require(arrays, ("x_train", "y_train", "x_test", "y_test"), file)
    rng = np.random.RandomState(seed)
    splits = []
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(x) != len(y):
            raise DatasetError(f"{file}: {len(x)} {split} reviews but {len(y)} labels")
        order = np.arange(len(x))
        rng.shuffle(order)
        splits.append((_encode(list(x[order]), start_char, index_from), y[order]))
    if maxlen:
        splits = [_remove_long(maxlen, x, y) for x, y in splits]
        if not splits[0][0] or not splits[1][0]:
            raise DatasetError(f"after dropping reviews of {maxlen} words or more, no "
                               "review is left: increase maxlen")
    xs = _vocabulary(splits[0][0] + splits[1][0], num_words, skip_top, oov_char)
    labels = np.concatenate([np.asarray(splits[0][1]), np.asarray(splits[1][1])])
    cut = len(splits[0][0])
    return ((_object_array(xs[:cut]), labels[:cut]), (_object_array(xs[cut:]), labels[cut:]))


def load_reuters(path: str | os.PathLike | None = "reuters.npz", num_words: int | None = None,
                 skip_top: int = 0, maxlen: int | None = None, test_split: float = 0.2,
                 seed: int = 113, start_char: int | None = 1, oov_char: int | None = 2,
                 index_from: int = 3,
                 cache_dir: str | os.PathLike | None = None) -> tuple[Split, Split]:
    """Reuters newswires in 46 topics (keras.datasets.reuters.load_data), encoded like IMDB and
    split after shuffling with `seed`, the last `test_split` of them for testing."""
    file = _keras_file("reuters", "data", path, cache_dir)
    arrays = read_npz(file)
    _require(arrays, ("x", "y"), file)
    x, y = arrays["x"], arrays["y"]
    if len(x) != len(y):
        raise DatasetError(f"{file}: {len(x)} newswires but {len(y)} labels")
    order = np.arange(len(x))
    np.random.RandomState(seed).shuffle(order)
    xs, labels = _encode(list(x[order]), start_char, index_from), list(y[order])
    if maxlen:
        xs, labels = _remove_long(maxlen, xs, np.asarray(labels))
    xs = _vocabulary(xs, num_words, skip_top, oov_char)
    cut = int(len(xs) * (1 - test_split))
    labels = np.asarray(labels)
    return ((_object_array(xs[:cut]), labels[:cut]), (_object_array(xs[cut:]), labels[cut:]))


def _word_index(name: str, path: str | os.PathLike | None,
                cache_dir: str | os.PathLike | None) -> dict[str, int]:
    file = _keras_file(name, "word_index", path, cache_dir)
    try:
        index = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{file} is not a JSON word index ({exc})") from None
    if not isinstance(index, dict):
        raise DatasetError(f"{file} is not a JSON object of word -> index")
    return index


def get_imdb_word_index(path: str | os.PathLike | None = "imdb_word_index.json",
                        cache_dir: str | os.PathLike | None = None) -> dict[str, int]:
    """{word: rank} for IMDB (add `index_from`, default 3, to get load_imdb's ids)."""
    return _word_index("imdb", path, cache_dir)


def get_reuters_word_index(path: str | os.PathLike | None = "reuters_word_index.json",
                           cache_dir: str | os.PathLike | None = None) -> dict[str, int]:
    return _word_index("reuters", path, cache_dir)


def _regression_split(x: np.ndarray, y: np.ndarray, test_split: float,
                      seed: int) -> tuple[Split, Split]:
    if not 0 <= test_split < 1:
        raise DatasetError(f"test_split must be in [0, 1), got {test_split}")
    order = np.arange(len(x))
    np.random.RandomState(seed).shuffle(order)
    x, y = x[order], y[order]
    cut = int(len(x) * (1 - test_split))
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def _load_regression(name: str, features: int, path: Any, cache_dir: Any) -> tuple:
    file = _keras_file(name, "data", path, cache_dir)
    arrays = read_npz(file)
    _require(arrays, ("x", "y"), file)
    x, y = arrays["x"], arrays["y"]
    if x.ndim != 2 or x.shape[1] != features or y.shape != (len(x),):
        raise DatasetError(f"{file}: expected x (n, {features}) and y (n,), got x {x.shape} and "
                           f"y {y.shape}")
    return x, y


def load_california_housing(version: str = "large",
                            path: str | os.PathLike | None = "california_housing.npz",
                            test_split: float = 0.2, seed: int = 113,
                            cache_dir: str | os.PathLike | None = None) -> tuple[Split, Split]:
    """California housing (keras.datasets.california_housing.load_data): x float32 (n, 8),
    y float32 median house values; version 'small' keeps the first 600 block groups."""
    if version not in ("small", "large"):
        raise DatasetError(f"version must be 'small' or 'large', got {version!r}")
    x, y = _load_regression("california_housing", 8, path, cache_dir)
    if version == "small":
        x, y = x[:600], y[:600]
    return _regression_split(x, y, test_split, seed)


def load_boston_housing(path: str | os.PathLike | None = "boston_housing.npz",
                        test_split: float = 0.2, seed: int = 113,
                        cache_dir: str | os.PathLike | None = None) -> tuple[Split, Split]:
    """Boston housing (keras.datasets.boston_housing.load_data): x (n, 13), y (n,) prices in
    k$, 404 train and 102 test samples with the defaults."""
    x, y = _load_regression("boston_housing", 13, path, cache_dir)
    return _regression_split(x, y, test_split, seed)


# ---------------------------------------------------------------- scikit-learn's digits


def load_digits(test_split: float = 0.2, seed: int = 0) -> tuple[Split, Split]:
    """scikit-learn's 1797 8x8 digits as float32 images (n, 8, 8) in [0, 1] and int64 labels,
    shuffled with `seed` and split with `test_split` of them held out for testing."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise DatasetError("load_digits needs scikit-learn: pip install 'graphjit[examples]' "
                           "(or pip install scikit-learn)") from None
    bunch = sklearn_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = int(round(len(labels) * test_split))
    train, test = order[n_test:], order[:n_test]
    return (images[train], labels[train]), (images[test], labels[test])


__all__ = ["load_digits", "load_mnist", "load_fashion_mnist", "load_cifar10", "load_cifar100",
           "load_imdb", "get_imdb_word_index", "load_reuters", "get_reuters_word_index",
           "load_california_housing", "load_boston_housing", "read_npz", "read_cifar100_binary",
           "read_idx",
           "read_cifar_binary", "fetch", "data_dir", "sha256_of", "DatasetError", "RemoteFile",
           "SOURCES"]
