"""Dataset readers on tiny IDX and CIFAR-10 binary files written here (never any network)."""
import gzip
import hashlib
import io
import tarfile

import numpy as np
import pytest

from graphjit import datasets
from graphjit.datasets import DatasetError, RemoteFile


def idx_bytes(array: np.ndarray) -> bytes:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}
    big_endian = array.astype(array.dtype.newbyteorder(">")) if array.dtype.itemsize > 1 \
        else array
    header = bytes([0, 0, codes[big_endian.dtype], array.ndim])
    header += np.array(array.shape, ">u4").tobytes()
    return header + big_endian.tobytes()


def tiny_mnist(rng, n_train=5, n_test=3):
    return {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_idx_dir(directory, arrays, compress=True):
    directory.mkdir(parents=True, exist_ok=True)
    for role, array in arrays.items():
        name = datasets.IDX_NAMES[role]
        data = idx_bytes(array)
        if compress:
            (directory / name).write_bytes(gzip.compress(data))
        else:
            (directory / name.removesuffix(".gz")).write_bytes(data)
    return directory


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("array", [
    np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
    np.array([1, -2, 70000], dtype=">i4"),
    np.array([[1.5, -2.25]], dtype=">f4"),
], ids=["ubyte-3d", "int32", "float32"])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, array, compress):
    data = idx_bytes(array)
    path = tmp_path / "file.idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    out = datasets.read_idx(path)
    assert out.shape == array.shape
    np.testing.assert_array_equal(out, array)
    assert out.dtype.isnative


def test_truncated_idx_is_an_error(tmp_path):
    data = idx_bytes(np.zeros((4, 28, 28), np.uint8))
    path = tmp_path / "short.idx"
    path.write_bytes(data[:-10])
    with pytest.raises(DatasetError, match="truncated"):
        datasets.read_idx(path)
    path.write_bytes(data + b"\0")
    with pytest.raises(DatasetError, match="longer than its header"):
        datasets.read_idx(path)
    path.write_bytes(gzip.compress(data)[:-20])
    with pytest.raises(DatasetError, match="gzip"):
        datasets.read_idx(path)
    path.write_bytes(b"\x00\x00\x42\x01abcd")
    with pytest.raises(DatasetError, match="not an IDX file"):
        datasets.read_idx(path)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("loader", [datasets.load_mnist, datasets.load_fashion_mnist])
def test_load_mnist_from_a_local_directory(tmp_path, compress, loader):
    arrays = tiny_mnist(np.random.default_rng(0))
    write_idx_dir(tmp_path, arrays, compress)
    (x_train, y_train), (x_test, y_test) = loader(path=tmp_path)
    np.testing.assert_array_equal(x_train, arrays["train_images"])
    np.testing.assert_array_equal(y_train, arrays["train_labels"])
    np.testing.assert_array_equal(x_test, arrays["test_images"])
    np.testing.assert_array_equal(y_test, arrays["test_labels"])


def test_mismatched_image_and_label_counts(tmp_path):
    arrays = tiny_mnist(np.random.default_rng(0))
    arrays["train_labels"] = arrays["train_labels"][:-1]
    write_idx_dir(tmp_path, arrays)
    with pytest.raises(DatasetError, match="labels of shape"):
        datasets.load_mnist(path=tmp_path)


def test_missing_local_file(tmp_path):
    with pytest.raises(DatasetError, match="has no train-images"):
        datasets.load_mnist(path=tmp_path)


# ---------------------------------------------------------------- download cache and checksum


def serve_mnist(tmp_path, monkeypatch, corrupt_role=None):
    """Point the MNIST sources at file:// URLs of tiny files (with their true checksums)."""
    arrays = tiny_mnist(np.random.default_rng(1))
    served = write_idx_dir(tmp_path / "server", arrays)
    sources = {}
    for role in arrays:
        path = served / datasets.IDX_NAMES[role]
        digest = sha256(path.read_bytes())
        if role == corrupt_role:
            digest = "0" * 64
        sources[role] = RemoteFile(path.as_uri(), digest)
    monkeypatch.setitem(datasets.SOURCES, "mnist", sources)
    return arrays, served


def test_download_once_into_the_cache(tmp_path, monkeypatch):
    arrays, served = serve_mnist(tmp_path, monkeypatch)
    monkeypatch.setenv(datasets.DATA_DIR_ENV, str(tmp_path / "cache"))
    (x_train, _), (_, y_test) = datasets.load_mnist()
    np.testing.assert_array_equal(x_train, arrays["train_images"])
    np.testing.assert_array_equal(y_test, arrays["test_labels"])
    cached = tmp_path / "cache" / "mnist" / datasets.IDX_NAMES["train_images"]
    assert cached.exists()
    for file in served.iterdir():  # the "server" goes away: the cache must be enough
        file.unlink()
    (x_again, _), _ = datasets.load_mnist()
    np.testing.assert_array_equal(x_again, arrays["train_images"])


def test_checksum_mismatch_is_an_error_and_saves_nothing(tmp_path, monkeypatch):
    serve_mnist(tmp_path, monkeypatch, corrupt_role="test_images")
    with pytest.raises(DatasetError, match="failed its checksum"):
        datasets.load_mnist(cache_dir=tmp_path / "cache")
    saved = sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir())
    assert datasets.IDX_NAMES["test_images"] not in saved
    assert not [name for name in saved if name.startswith(".")], "no temporary files left"


def test_corrupted_cache_file_is_downloaded_again(tmp_path, monkeypatch):
    arrays, _ = serve_mnist(tmp_path, monkeypatch)
    cache = tmp_path / "cache"
    datasets.load_mnist(cache_dir=cache)
    cached = cache / "mnist" / datasets.IDX_NAMES["train_labels"]
    cached.write_bytes(cached.read_bytes()[:-3])
    (_, y_train), _ = datasets.load_mnist(cache_dir=cache)
    np.testing.assert_array_equal(y_train, arrays["train_labels"])


def test_unreachable_url_is_a_clear_error(tmp_path):
    remote = RemoteFile((tmp_path / "nowhere.gz").as_uri(), "0" * 64)
    with pytest.raises(DatasetError, match="could not download"):
        datasets.fetch(remote, "x", cache_dir=tmp_path)


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv(datasets.DATA_DIR_ENV, raising=False)
    assert datasets.data_dir() == datasets.DEFAULT_DATA_DIR.expanduser()
    monkeypatch.setenv(datasets.DATA_DIR_ENV, str(tmp_path / "env"))
    assert datasets.data_dir() == tmp_path / "env"
    assert datasets.data_dir(tmp_path / "arg") == tmp_path / "arg"


# ---------------------------------------------------------------- CIFAR-10 binary


def cifar_records(rng, n):
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    planes = images.transpose(0, 3, 1, 2).reshape(n, -1)  # R plane, G plane, B plane
    return labels, images, np.concatenate([labels[:, None], planes], axis=1).tobytes()


def write_cifar_dir(directory, rng):
    folder = directory / datasets.CIFAR_FOLDER
    folder.mkdir(parents=True)
    expected = {}
    for name, n in [(f, 2) for f in datasets.CIFAR_TRAIN_FILES] + [("test_batch.bin", 3)]:
        labels, images, data = cifar_records(rng, n)
        (folder / name).write_bytes(data)
        expected[name] = (images, labels)
    return expected


def test_read_cifar_binary_layout(tmp_path):
    labels, images, data = cifar_records(np.random.default_rng(0), 4)
    path = tmp_path / "batch.bin"
    path.write_bytes(data)
    x, y = datasets.read_cifar_binary([path])
    assert x.shape == (4, 32, 32, 3) and x.dtype == np.uint8 and y.shape == (4, 1)
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y[:, 0], labels)
    assert x[0, 0, 0, 1] == data[1 + 1024], "channel 1 comes from the G plane"


def test_truncated_cifar_is_an_error(tmp_path):
    _, _, data = cifar_records(np.random.default_rng(0), 2)
    path = tmp_path / "batch.bin"
    path.write_bytes(data[:-1])
    with pytest.raises(DatasetError, match="truncated"):
        datasets.read_cifar_binary([path])


def test_load_cifar10_from_a_local_directory(tmp_path):
    expected = write_cifar_dir(tmp_path, np.random.default_rng(2))
    (x_train, y_train), (x_test, y_test) = datasets.load_cifar10(path=tmp_path)
    assert x_train.shape == (10, 32, 32, 3) and y_train.shape == (10, 1)
    np.testing.assert_array_equal(x_train[:2], expected["data_batch_1.bin"][0])
    np.testing.assert_array_equal(x_test, expected["test_batch.bin"][0])
    np.testing.assert_array_equal(y_test[:, 0], expected["test_batch.bin"][1])


def test_load_cifar10_downloads_and_extracts_the_archive(tmp_path, monkeypatch):
    expected = write_cifar_dir(tmp_path / "src", np.random.default_rng(3))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(tmp_path / "src" / datasets.CIFAR_FOLDER, arcname=datasets.CIFAR_FOLDER)
    archive = tmp_path / "cifar-10-binary.tar.gz"
    archive.write_bytes(buffer.getvalue())
    monkeypatch.setitem(datasets.SOURCES, "cifar10", {
        "archive": RemoteFile(archive.as_uri(), sha256(buffer.getvalue()))})
    _, (x_test, _) = datasets.load_cifar10(cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(x_test, expected["test_batch.bin"][0])
    monkeypatch.setitem(datasets.SOURCES, "cifar10", {
        "archive": RemoteFile(archive.as_uri(), "f" * 64)})
    with pytest.raises(DatasetError, match="checksum"):
        datasets.load_cifar10(cache_dir=tmp_path / "other-cache")


# ---------------------------------------------------------------- scikit-learn digits


def test_load_digits_split_and_ranges():
    pytest.importorskip("sklearn")
    (x_train, y_train), (x_test, y_test) = datasets.load_digits(test_split=0.2, seed=0)
    assert x_train.shape[1:] == (8, 8) and x_train.dtype == np.float32
    assert len(x_test) == round(1797 * 0.2) and len(x_train) + len(x_test) == 1797
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0
    assert set(np.unique(y_train)) == set(range(10))
    again = datasets.load_digits(test_split=0.2, seed=0)
    np.testing.assert_array_equal(again[1][1], y_test)
