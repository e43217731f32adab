"""Dataset readers on tiny IDX and CIFAR-10 binary files written here (never any network)."""
import gzip
import hashlib
import io
import tarfile

import numpy as np
import pytest

import graphjit as gj
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


# ---------------------------------------------------------------- CIFAR-100 binary (issue 16)


def cifar100_records(rng, n):
    coarse = rng.integers(0, 20, n, dtype=np.uint8)
    fine = rng.integers(0, 100, n, dtype=np.uint8)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    planes = images.transpose(0, 3, 1, 2).reshape(n, -1)
    return coarse, fine, images, np.concatenate([coarse[:, None], fine[:, None], planes],
                                                axis=1).tobytes()


def write_cifar100_dir(directory, rng):
    folder = directory / datasets.CIFAR100_FOLDER
    folder.mkdir(parents=True)
    expected = {}
    for name, n in (("train.bin", 4), ("test.bin", 2)):
        coarse, fine, images, data = cifar100_records(rng, n)
        (folder / name).write_bytes(data)
        expected[name] = (images, coarse, fine)
    return expected


@pytest.mark.parametrize("label_mode", ["fine", "coarse"])
def test_load_cifar100_from_a_local_directory(tmp_path, label_mode):
    expected = write_cifar100_dir(tmp_path, np.random.default_rng(0))
    (x_train, y_train), (x_test, y_test) = datasets.load_cifar100(label_mode, path=tmp_path)
    images, coarse, fine = expected["train.bin"]
    assert x_train.shape == (4, 32, 32, 3) and x_train.dtype == np.uint8
    assert y_train.shape == (4, 1) and y_train.dtype == np.int64
    np.testing.assert_array_equal(x_train, images)
    np.testing.assert_array_equal(y_train[:, 0], fine if label_mode == "fine" else coarse)
    np.testing.assert_array_equal(x_test, expected["test.bin"][0])


def test_cifar100_download_truncation_and_bad_labels(tmp_path, monkeypatch):
    expected = write_cifar100_dir(tmp_path / "src", np.random.default_rng(1))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(tmp_path / "src" / datasets.CIFAR100_FOLDER, arcname=datasets.CIFAR100_FOLDER)
    archive = tmp_path / "cifar-100-binary.tar.gz"
    archive.write_bytes(buffer.getvalue())
    md5 = hashlib.md5(buffer.getvalue()).hexdigest()  # the publisher gives an MD5
    monkeypatch.setitem(datasets.SOURCES, "cifar100", {"archive": RemoteFile(archive.as_uri(),
                                                                             md5)})
    _, (x_test, y_test) = datasets.load_cifar100(cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(x_test, expected["test.bin"][0])
    np.testing.assert_array_equal(y_test[:, 0], expected["test.bin"][2])
    monkeypatch.setitem(datasets.SOURCES, "cifar100", {"archive": RemoteFile(archive.as_uri(),
                                                                             "0" * 32)})
    with pytest.raises(DatasetError, match="failed its checksum"):
        datasets.load_cifar100(cache_dir=tmp_path / "other")
    train = tmp_path / "src" / datasets.CIFAR100_FOLDER / "train.bin"
    train.write_bytes(train.read_bytes()[:-5])
    with pytest.raises(DatasetError, match="truncated"):
        datasets.load_cifar100(path=tmp_path / "src")
    _, _, _, data = cifar100_records(np.random.default_rng(2), 1)
    train.write_bytes(data[:1] + bytes([150]) + data[2:])
    with pytest.raises(DatasetError, match="below 100"):
        datasets.load_cifar100(path=tmp_path / "src")
    with pytest.raises(DatasetError, match="label_mode"):
        datasets.load_cifar100("medium", path=tmp_path / "src")


# ---------------------------------------------------------------- IMDB and Reuters (.npz)


def object_array(lists):
    out = np.empty(len(lists), dtype=object)
    for i, item in enumerate(lists):
        out[i] = list(item)
    return out


IMDB_TRAIN = [[0, 1, 2], [5, 6, 7, 8, 9], [3], [4, 4, 0, 1]]
IMDB_TEST = [[1, 1], [9, 8, 7, 6, 5, 4], [2, 3, 4]]


def write_imdb(path):
    np.savez(path, x_train=object_array(IMDB_TRAIN), y_train=np.array([0, 1, 0, 1]),
             x_test=object_array(IMDB_TEST), y_test=np.array([1, 0, 1]))
    return path


def keras_imdb(num_words=None, skip_top=0, maxlen=None, seed=113, start_char=1, oov_char=2,
               index_from=3):
    """keras.datasets.imdb.load_data's steps, restated for the test's tiny file."""
    rng = np.random.RandomState(seed)
    parts = []
    for xs, ys in ((IMDB_TRAIN, [0, 1, 0, 1]), (IMDB_TEST, [1, 0, 1])):
        order = np.arange(len(xs))
        rng.shuffle(order)
        parts.append(([[start_char] + [w + index_from for w in xs[i]] for i in order],
                      [ys[i] for i in order]))
    if maxlen:
        parts = [([x for x in xs if len(x) < maxlen], [y for x, y in zip(xs, ys)
                                                       if len(x) < maxlen]) for xs, ys in parts]
    everything = parts[0][0] + parts[1][0]
    num_words = num_words or max(max(x) for x in everything)
    everything = [[w if skip_top <= w < num_words else oov_char for w in x] for x in everything]
    cut = len(parts[0][0])
    return (everything[:cut], parts[0][1]), (everything[cut:], parts[1][1])


@pytest.mark.parametrize("kwargs", [{}, {"num_words": 8}, {"num_words": 10, "skip_top": 4},
                                    {"maxlen": 5}, {"index_from": 0, "seed": 7}])
def test_load_imdb_matches_keras(tmp_path, kwargs):
    path = write_imdb(tmp_path / "imdb.npz")
    (x_train, y_train), (x_test, y_test) = datasets.load_imdb(path=path, **kwargs)
    (ex_train, ey_train), (ex_test, ey_test) = keras_imdb(**kwargs)
    assert x_train.dtype == object and [list(x) for x in x_train] == ex_train
    assert [list(x) for x in x_test] == ex_test
    np.testing.assert_array_equal(y_train, ey_train)
    np.testing.assert_array_equal(y_test, ey_test)


def test_imdb_download_word_index_and_errors(tmp_path, monkeypatch):
    served = write_imdb(tmp_path / "served.npz")
    index = tmp_path / "imdb_word_index.json"
    index.write_text('{"the": 1, "and": 2}')
    monkeypatch.setitem(datasets.SOURCES, "imdb", {
        "data": RemoteFile(served.as_uri(), sha256(served.read_bytes())),
        "word_index": RemoteFile(index.as_uri(), hashlib.md5(index.read_bytes()).hexdigest())})
    cache = tmp_path / "cache"
    (x_train, _), _ = datasets.load_imdb(cache_dir=cache)
    assert [list(x) for x in x_train] == keras_imdb()[0][0]
    assert (cache / "imdb" / "served.npz").exists()
    assert datasets.get_imdb_word_index(cache_dir=cache) == {"the": 1, "and": 2}
    truncated = tmp_path / "short.npz"
    truncated.write_bytes(served.read_bytes()[:-40])
    with pytest.raises(DatasetError, match="damaged or truncated"):
        datasets.load_imdb(path=truncated)
    with pytest.raises(DatasetError, match="no review is left"):
        datasets.load_imdb(path=served, maxlen=1)
    monkeypatch.setitem(datasets.SOURCES, "imdb", {
        "data": RemoteFile(served.as_uri(), "1" * 64), "word_index": RemoteFile("x", "")})
    with pytest.raises(DatasetError, match="failed its checksum"):
        datasets.load_imdb(cache_dir=tmp_path / "elsewhere")


class Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_npz_reader_refuses_anything_but_arrays(tmp_path, capsys):
    path = tmp_path / "evil.npz"
    np.savez(path, x=np.array([Exploit()], dtype=object), y=np.array([0]))
    with pytest.raises(DatasetError, match="refusing to load builtins.print"):
        datasets.load_reuters(path=path)
    assert "must never run" not in capsys.readouterr().out


def test_load_reuters_split_and_vocabulary(tmp_path):
    wires = [[1, 2], [3, 4, 5], [6], [7, 8, 9, 10], [2, 2]]
    labels = np.array([0, 3, 1, 45, 2])
    path = tmp_path / "reuters.npz"
    np.savez(path, x=object_array(wires), y=labels)
    (x_train, y_train), (x_test, y_test) = datasets.load_reuters(path=path, num_words=10,
                                                                  test_split=0.4)
    order = np.arange(5)
    np.random.RandomState(113).shuffle(order)
    expected = [[1] + [w + 3 if w + 3 < 10 else 2 for w in wires[i]] for i in order]
    assert [list(x) for x in x_train] + [list(x) for x in x_test] == expected
    assert len(x_train) == 3
    np.testing.assert_array_equal(np.r_[y_train, y_test], labels[order])


# ---------------------------------------------------------------- housing (.npz)


@pytest.mark.parametrize("loader,features,name", [
    (datasets.load_boston_housing, 13, "boston_housing"),
    (datasets.load_california_housing, 8, "california_housing")])
def test_housing_loaders(tmp_path, loader, features, name):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(10, features)).astype(np.float32)
    y = rng.normal(size=10).astype(np.float32)
    path = tmp_path / f"{name}.npz"
    np.savez(path, x=x, y=y)
    (x_train, y_train), (x_test, y_test) = loader(path=path)
    order = np.arange(10)
    np.random.RandomState(113).shuffle(order)
    np.testing.assert_array_equal(x_train, x[order[:8]])
    np.testing.assert_array_equal(y_test, y[order[8:]])
    assert x_train.dtype == np.float32 and len(x_test) == 2
    np.savez(path, x=x[:, :3], y=y)
    with pytest.raises(DatasetError, match=f"expected x \\(n, {features}\\)"):
        loader(path=path)


def test_california_small_version(tmp_path):
    path = tmp_path / "ca.npz"
    np.savez(path, x=np.arange(700 * 8, dtype=np.float32).reshape(700, 8),
             y=np.arange(700, dtype=np.float32))
    (x_train, _), (x_test, _) = datasets.load_california_housing("small", path=path)
    assert len(x_train) + len(x_test) == 600 and x_train.max() < 600 * 8


# ---------------------------------------------------------------- pad_sequences, to_categorical


def test_pad_sequences_like_keras():
    from graphjit.utils import pad_sequences

    sequences = [[1, 2, 3], [4], [5, 6, 7, 8, 9]]
    np.testing.assert_array_equal(pad_sequences(sequences), [[0, 0, 1, 2, 3], [0, 0, 0, 0, 4],
                                                            [5, 6, 7, 8, 9]])
    np.testing.assert_array_equal(pad_sequences(sequences, maxlen=3, padding="post",
                                                truncating="post"),
                                  [[1, 2, 3], [4, 0, 0], [5, 6, 7]])
    np.testing.assert_array_equal(pad_sequences(sequences, maxlen=2), [[2, 3], [0, 4], [8, 9]])
    out = pad_sequences([[0.5], []], maxlen=2, dtype="float32", value=-1.0)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[-1, 0.5], [-1, -1]])
    assert pad_sequences(sequences).dtype == np.int32
    with pytest.raises(gj.GraphjitError, match="padding must be"):
        pad_sequences(sequences, padding="middle")


def test_to_categorical_like_keras():
    from graphjit.utils import to_categorical

    np.testing.assert_array_equal(to_categorical([0, 2, 1]), np.eye(3)[[0, 2, 1]])
    out = to_categorical(np.array([[1], [3]]), num_classes=5)
    assert out.shape == (2, 5) and out.dtype == np.float32
    assert to_categorical(np.zeros((2, 3), int), 2).shape == (2, 3, 2)
    with pytest.raises(gj.GraphjitError, match=r"labels must be in \[0, 3\)"):
        to_categorical([0, 3], num_classes=3)
