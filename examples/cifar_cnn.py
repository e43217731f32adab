"""A small CIFAR-style CNN (Conv2D, BatchNormalization, pooling, Dropout), Keras-style.

    python examples/cifar_cnn.py                      # CIFAR-10 if cached, else a stand-in
    python examples/cifar_cnn.py --path ~/data/cifar-10-batches-bin --epochs 2
    graphjit dump examples/cifar_cnn.py:train_step --stage optimized

Without CIFAR-10 (the binary batches in the graphjit cache directory, or --path) it trains on a
synthetic stand-in: 16x16 RGB images of noise with one brighter colour channel and a brighter
quadrant, ten classes (channel x quadrant combinations). It prints the compiled and the eager
(NumPy, fit(jit=False)) time per epoch, then `gj.benchmark` of one training step.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import graphjit as gj
from graphjit import datasets, layers, optimizers

SEED = 0
BATCH_SIZE = 32


def stand_in(n: int = 320, side: int = 16, seed: int = SEED):
    """((x_train, y_train), (x_test, y_test)): uint8 images (n, side, side, 3), labels (n, 1)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.normal(100, 30, (n, side, side, 3))
    half = side // 2
    for i, label in enumerate(labels):
        channel, quadrant = label % 3, label // 3  # quadrant 3 means "no bright quadrant"
        images[i, :, :, channel] += 60
        if quadrant < 3:
            top, left = (quadrant // 2) * half, (quadrant % 2) * half
            images[i, top:top + half, left:left + half] += 50
    images = np.clip(images, 0, 255).astype(np.uint8)
    cut = int(n * 0.8)
    labels = labels[:, None]
    return (images[:cut], labels[:cut]), (images[cut:], labels[cut:])


def load(path: str | None):
    cached = os.path.join(datasets.data_dir(), "cifar10", datasets.CIFAR_FOLDER)
    folder = path or (cached if os.path.isdir(cached) else None)
    if folder is None:
        return "synthetic stand-in", *stand_in()
    return folder, *datasets.load_cifar10(path=folder)


def build(side: int) -> gj.Sequential:
    layers.set_seed(SEED)
    # momentum 0.9 (Keras' default is 0.99): the moving statistics must settle within the few
    # dozen steps the stand-in trains for, or inference normalises with the initial ones
    model = gj.Sequential([
        layers.Input((side, side, 3)),
        layers.Rescaling(1 / 255),  # uint8 images in, [0, 1] floats on
        layers.Conv2D(16, 3, padding="same", activation="relu"),
        layers.BatchNormalization(momentum=0.9),
        layers.MaxPooling2D(2),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.BatchNormalization(momentum=0.9),
        layers.AveragePooling2D(2),
        layers.Dropout(0.25),
        layers.Flatten(),
        layers.Dense(10, activation="softmax"),
    ], name="cifar_cnn")
    model.compile(optimizer=optimizers.Adam(0.005), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def epoch_seconds(model: gj.Sequential, x, y, jit: bool, epochs: int) -> list[float]:
    history = model.fit(x, y, batch_size=BATCH_SIZE, epochs=epochs, verbose=0, seed=SEED,
                        jit=jit)
    return history.epoch_times


# ---------------------------------------------------------------- for `graphjit dump/bench`

_MODEL: list[gj.Sequential] = []


def train_step(params, opt_state, state, xs, ys, key):
    """One undecorated training step of the stand-in model (what fit compiles)."""
    return _MODEL[0].step_function("train", jit=False)(params, opt_state, state, xs, ys, key)


def example_args():
    if not _MODEL:
        model = build(16)
        # plain SGD here: Adam's first step divides by sqrt(v), which turns float32 rounding in
        # near-zero gradients into visible differences between the eager and compiled results
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        _MODEL.append(model)
    model = _MODEL[0]
    (x, y), _ = stand_in()
    return (model.params, model.optimizer.init(model.params), model.state,
            [x[:BATCH_SIZE].astype(np.float32)], [y[:BATCH_SIZE, 0]], gj.random.key(SEED))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", help="a folder of CIFAR-10 binary batches")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images")
    args = parser.parse_args()
    name, (x_train, y_train), (x_test, y_test) = load(args.path)
    # CIFAR's labels are (n, 1); this model's sparse loss takes them flat
    y_train, y_test = y_train.reshape(-1), y_test.reshape(-1)
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    side = x_train.shape[1]
    print(f"data: {name}: {len(x_train)} train and {len(x_test)} test images of {side}x{side}")
    model = build(side)
    model.summary()
    compiled = epoch_seconds(model, x_train, y_train, True, args.epochs)
    _, accuracy = model.evaluate(x_test, y_test)
    eager_model = build(side)
    # warm up: the eager gradient is traced once per batch shape
    epoch_seconds(eager_model, x_train[:BATCH_SIZE], y_train[:BATCH_SIZE], False, 1)
    eager = epoch_seconds(eager_model, x_train, y_train, False, 1)
    steady = float(np.median(compiled[1:])) if len(compiled) > 1 else compiled[0]
    print(f"test accuracy after {args.epochs} epochs: {accuracy:.3f}")
    print(f"seconds per epoch: compiled {steady:.3f} (first, with compiling: {compiled[0]:.2f}), "
          f"eager {eager[0]:.3f}: {eager[0] / steady:.1f}x")
    if name == "synthetic stand-in":
        assert accuracy > 0.3, f"the stand-in should be learnable, got accuracy {accuracy}"
    step = model.step_function("train", jit=False)
    batch = ([x_train[:BATCH_SIZE].astype(np.float32)], [y_train[:BATCH_SIZE]])
    start = time.perf_counter()
    print(gj.benchmark(step, model.params, model.optimizer.init(model.params), model.state,
                       *batch, gj.random.key(SEED), repeat=3, min_time=0.05))
    print(f"(benchmark took {time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
