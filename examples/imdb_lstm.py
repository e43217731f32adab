"""Sentiment of IMDB reviews with Embedding(mask_zero=True) -> LSTM -> Dense, Keras-style.

    python examples/imdb_lstm.py                      # the IMDB file if cached, else a stand-in
    python examples/imdb_lstm.py --path imdb.npz --epochs 2 --maxlen 80
    graphjit dump examples/imdb_lstm.py:train_step --stage optimized

Without the dataset (Keras' imdb.npz in the graphjit cache directory, or --path) it trains on a
small synthetic stand-in: reviews of random word ids whose label is whether "good" words (ids
4..13) outnumber "bad" ones (ids 14..23), left-padded with zeros that the mask hides from the
LSTM. It prints the compiled and the eager (NumPy, fit(jit=False)) time per epoch, then
`gj.benchmark` of one training step (forward, loss, backward, Adam update).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import graphjit as gj
from graphjit import datasets, layers, optimizers
from graphjit.utils import pad_sequences

SEED = 0
BATCH_SIZE = 32


def stand_in(n: int = 320, vocabulary: int = 200, length: int = 16, seed: int = SEED):
    """((x_train, y_train), (x_test, y_test)) of synthetic reviews, lists of ids like IMDB."""
    rng = np.random.default_rng(seed)
    reviews, labels = [], []
    for _ in range(n):
        words = rng.integers(4, vocabulary, rng.integers(4, length + 1))
        good, bad = np.sum((words >= 4) & (words < 14)), np.sum((words >= 14) & (words < 24))
        if good == bad:
            words[0] = 4 if rng.random() < 0.5 else 14
            good, bad = good + (words[0] == 4), bad + (words[0] == 14)
        reviews.append([1, *words.tolist()])
        labels.append(int(good > bad))
    cut = int(n * 0.8)
    x, y = np.array(reviews, dtype=object), np.array(labels)
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def load(path: str | None, num_words: int, maxlen: int):
    """IMDB (padded to maxlen) when its file is at hand, else the stand-in; and its name."""
    cached = os.path.join(datasets.data_dir(), "imdb", "imdb.npz")
    file = path or (cached if os.path.exists(cached) else None)
    if file is None:
        (x_train, y_train), (x_test, y_test) = stand_in()
        name, num_words = "synthetic stand-in", 200
    else:
        (x_train, y_train), (x_test, y_test) = datasets.load_imdb(file, num_words=num_words)
        name = file
    pad = lambda x: pad_sequences(x, maxlen=maxlen).astype(np.int64)  # noqa: E731
    return name, num_words, (pad(x_train), y_train.astype(np.float32)), (
        pad(x_test), y_test.astype(np.float32))


def build(num_words: int, maxlen: int) -> gj.Sequential:
    layers.set_seed(SEED)
    model = gj.Sequential([
        layers.Input((maxlen,), dtype=np.int64),
        layers.Embedding(num_words, 16, mask_zero=True),
        layers.LSTM(16),
        layers.Dense(1, activation="sigmoid"),
    ], name="imdb_lstm")
    model.compile(optimizer=optimizers.Adam(0.01), loss="binary_crossentropy",
                  metrics=["accuracy"])
    return model


def epoch_seconds(model: gj.Sequential, x, y, jit: bool, epochs: int) -> list[float]:
    history = model.fit(x, y[:, None], batch_size=BATCH_SIZE, epochs=epochs, verbose=0,
                        seed=SEED, jit=jit)
    return history.epoch_times


# ---------------------------------------------------------------- for `graphjit dump/bench`

_MODEL: list[gj.Sequential] = []


def train_step(params, opt_state, state, xs, ys, key):
    """One undecorated training step of the stand-in model (what fit compiles)."""
    return _MODEL[0].step_function("train", jit=False)(params, opt_state, state, xs, ys, key)


def example_args(maxlen: int = 16):
    if not _MODEL:
        _MODEL.append(build(200, maxlen))
    model = _MODEL[0]
    _, _, (x, y), _ = load(None, 200, maxlen)
    return (model.params, model.optimizer.init(model.params), model.state, [x[:BATCH_SIZE]],
            [y[:BATCH_SIZE, None]], None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", help="Keras' imdb.npz (default: the cache, else a stand-in)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--num-words", type=int, default=10000)
    parser.add_argument("--maxlen", type=int, default=16)
    args = parser.parse_args()
    name, num_words, (x_train, y_train), (x_test, y_test) = load(args.path, args.num_words,
                                                                 args.maxlen)
    print(f"data: {name}: {len(x_train)} train and {len(x_test)} test reviews, padded to "
          f"{args.maxlen} words")
    model = build(num_words, args.maxlen)
    model.summary()
    compiled = epoch_seconds(model, x_train, y_train, True, args.epochs)
    _, accuracy = model.evaluate(x_test, y_test[:, None])
    eager_model = build(num_words, args.maxlen)
    # warm up: the eager gradient is traced once per batch shape
    epoch_seconds(eager_model, x_train[:BATCH_SIZE], y_train[:BATCH_SIZE], False, 1)
    eager = epoch_seconds(eager_model, x_train, y_train, False, 1)
    steady = float(np.median(compiled[1:])) if len(compiled) > 1 else compiled[0]
    print(f"test accuracy after {args.epochs} epochs: {accuracy:.3f}")
    print(f"seconds per epoch: compiled {steady:.3f} (first, with compiling: {compiled[0]:.2f}), "
          f"eager {eager[0]:.3f}: {eager[0] / steady:.1f}x")
    if name == "synthetic stand-in":
        assert accuracy > 0.6, f"the stand-in should be learnable, got accuracy {accuracy}"
    step = model.step_function("train", jit=False)
    batch = ([x_train[:BATCH_SIZE]], [y_train[:BATCH_SIZE, None]])
    start = time.perf_counter()
    print(gj.benchmark(step, model.params, model.optimizer.init(model.params), model.state,
                       *batch, None, repeat=3, min_time=0.05))
    print(f"(benchmark took {time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
