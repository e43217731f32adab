"""Small datasets, returned like Keras: `(x_train, y_train), (x_test, y_test)`.

- `load_digits()`: scikit-learn's bundled 8x8 digits (no download; `pip install scikit-learn`).
- `load_mnist()`, `load_fashion_mnist()`: the standard IDX files; `load_cifar10()`: the binary
  (not pickled) release. Each is read from `path` when given (a directory holding the files),
  otherwise downloaded once into the cache directory (`$GRAPHJIT_DATA_DIR`, default
  `~/.cache/graphjit/datasets`) and checked against its SHA-256. A truncated file or a checksum
  mismatch raises `DatasetError`; nothing is ever partly loaded.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphjit.compiler.errors import GraphjitError

DATA_DIR_ENV = "GRAPHJIT_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.cache/graphjit/datasets")

Split = tuple[np.ndarray, np.ndarray]


class DatasetError(GraphjitError):
    """A dataset file is missing, truncated, malformed, or fails its checksum."""


@dataclass(frozen=True)
class RemoteFile:
    url: str
    sha256: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


_MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
_FASHION_URL = "https://fashion-mnist.s3.eu-central-1.amazonaws.com/"
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
}


# ---------------------------------------------------------------- download and cache


def data_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where downloads are kept: `cache_dir`, else $GRAPHJIT_DATA_DIR, else ~/.cache/graphjit."""
    chosen = cache_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser()


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(remote: RemoteFile, subdir: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cached copy of `remote`, downloading it first if needed; always checksum-verified."""
    directory = data_dir(cache_dir) / subdir
    target = directory / remote.filename
    if target.exists() and sha256_of(target) == remote.sha256:
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
        actual = sha256_of(temporary)
        if actual != remote.sha256:
            raise DatasetError(f"{remote.url} failed its checksum (sha256 {actual}, expected "
                               f"{remote.sha256}): the download is corrupt or incomplete; "
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


__all__ = ["load_digits", "load_mnist", "load_fashion_mnist", "load_cifar10", "read_idx",
           "read_cifar_binary", "fetch", "data_dir", "sha256_of", "DatasetError", "RemoteFile",
           "SOURCES"]
