"""A small Fashion-MNIST CNN trained Keras-style with EarlyStopping and ModelCheckpoint, saved,
then loaded and evaluated in a fresh process to the same accuracy.

    python examples/fashion_mnist_cnn.py                        # Fashion-MNIST if cached, else digits
    python examples/fashion_mnist_cnn.py --path ~/data/fashion --epochs 10 --out runs/fashion
    graphjit dump examples/fashion_mnist_cnn.py:train_step --stage optimized

Without the Fashion-MNIST IDX files (in the graphjit cache directory, or --path) it trains on
scikit-learn's bundled 8x8 digits, turned into uint8 images as Fashion-MNIST's arrive. The model
takes the uint8 images as they are (Rescaling inside the model), `fit` holds out a validation
split, `EarlyStopping` restores the best epoch's weights and `ModelCheckpoint` keeps the best
model on disk. The script then saves the final model (`model.save`, one .keras zip), runs itself
with `--evaluate` in a new Python process, which loads the archive with `gj.models.load_model`
and evaluates it, and checks that both processes report the same test loss and accuracy.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import graphjit as gj
from graphjit import callbacks, datasets, layers, losses, optimizers

SEED = 0
BATCH_SIZE = 64


def load(path: str | None):
    """(name, (x_train, y_train), (x_test, y_test)) with uint8 images (n, side, side)."""
    cached = os.path.join(datasets.data_dir(), "fashion_mnist")
    names = datasets.IDX_NAMES.values()
    if path is None and all(os.path.exists(os.path.join(cached, n)) for n in names):
        path = cached
    if path is not None:
        return f"Fashion-MNIST ({path})", *datasets.load_fashion_mnist(path=path)
    (x_train, y_train), (x_test, y_test) = datasets.load_digits(seed=SEED)

    def as_uint8(images):
        return np.round(images * 255).astype(np.uint8)

    return "scikit-learn digits (Fashion-MNIST not found)", (as_uint8(x_train), y_train), \
        (as_uint8(x_test), y_test)


def build(side: int) -> gj.Sequential:
    layers.set_seed(SEED)
    model = gj.Sequential([
        layers.Input((side, side), dtype=np.uint8),
        layers.Rescaling(1 / 255),  # uint8 pixels in, [0, 1] floats on
        layers.Reshape((side, side, 1)),
        layers.Conv2D(16, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.GlobalAveragePooling2D() if side < 16 else layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dropout(0.2),
        layers.Dense(10),
    ], name="fashion_cnn")
    model.compile(optimizer=optimizers.Adam(0.01),
                  loss=losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


# ---------------------------------------------------------------- for `graphjit dump/bench`

_MODEL: list[gj.Sequential] = []


def train_step(params, opt_state, state, xs, ys, key):
    """One undecorated training step of the digits model (what fit compiles)."""
    return _MODEL[0].step_function("train", jit=False)(params, opt_state, state, xs, ys, key)


def example_args():
    if not _MODEL:
        model = build(8)
        # plain SGD: Adam's first step divides by sqrt(v), which turns float32 rounding in
        # near-zero gradients into visible differences between the eager and compiled results
        model.compile(optimizer="sgd", loss=losses.SparseCategoricalCrossentropy(True))
        _MODEL.append(model)
    model = _MODEL[0]
    _, (x, y), _ = load(None)
    return (model.params, model.optimizer.init(model.params), model.state,
            [x[:BATCH_SIZE].astype(np.int64)], [y[:BATCH_SIZE].astype(np.int64)],
            gj.random.key(SEED))


# ---------------------------------------------------------------- the two processes


def evaluate_saved(model_path: str, data_path: str | None) -> dict[str, float]:
    """What the fresh process does: load the archive and evaluate it on the test split."""
    _, _, (x_test, y_test) = load(data_path)
    model = gj.models.load_model(model_path)
    return model.evaluate(x_test, y_test, batch_size=256, verbose=0, return_dict=True)


def evaluate_in_fresh_process(model_path: str, data_path: str | None) -> dict[str, float]:
    command = [sys.executable, os.path.abspath(__file__), "--evaluate", model_path]
    if data_path:
        command += ["--path", data_path]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"the fresh process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def train(args: argparse.Namespace, out: str) -> None:
    name, (x_train, y_train), (x_test, y_test) = load(args.path)
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    side = x_train.shape[1]
    print(f"data: {name}: {len(x_train)} train and {len(x_test)} test images of {side}x{side} "
          f"({x_train.dtype})")
    model = build(side)
    model.summary()
    best_path = os.path.join(out, "best.keras")
    history = model.fit(
        x_train, y_train, batch_size=BATCH_SIZE, epochs=args.epochs, validation_split=0.15,
        verbose=2, seed=SEED, callbacks=[
            callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True,
                                    verbose=1),
            callbacks.ModelCheckpoint(best_path, monitor="val_accuracy", save_best_only=True,
                                      verbose=1),
        ])
    epochs_run = len(history.epoch)
    seconds = np.median(history.epoch_times[1:]) if epochs_run > 1 else history.epoch_times[0]
    print(f"trained {epochs_run} epochs (median {seconds:.2f} s per epoch, compiled); best "
          f"val_accuracy {max(history.history['val_accuracy']):.3f}")

    model_path = os.path.join(out, "fashion_cnn.keras")
    model.save(model_path)
    here = model.evaluate(x_test, y_test, batch_size=256, verbose=0, return_dict=True)
    fresh = evaluate_in_fresh_process(model_path, args.path)
    print(f"test accuracy: this process {here['accuracy']:.4f}, a fresh process that loaded "
          f"{os.path.basename(model_path)} {fresh['accuracy']:.4f}")
    assert fresh["accuracy"] == here["accuracy"], (here, fresh)
    assert abs(fresh["loss"] - here["loss"]) <= 1e-6 * max(1.0, abs(here["loss"])), (here, fresh)
    assert os.path.exists(best_path), "ModelCheckpoint(save_best_only=True) wrote nothing"
    checkpoint = gj.models.load_model(best_path)
    print(f"best checkpoint: test accuracy "
          f"{checkpoint.evaluate(x_test, y_test, batch_size=256, verbose=0)[1]:.4f}")
    if name.startswith("scikit-learn digits"):
        assert here["accuracy"] > 0.8, f"the digits should be learnable, got {here['accuracy']}"

    step = model.step_function("train", jit=False)
    opt_state = model.optimizer.init(model.params)
    start = time.perf_counter()
    # the step takes the model's input dtype: fit casts the uint8 images for it
    xs = [x_train[:BATCH_SIZE].astype(model.inputs[0].dtype if model.inputs[0].dtype.kind == "f"
                                      else np.int64)]
    print(gj.benchmark(step, model.params, opt_state, model.state, xs,
                       [y_train[:BATCH_SIZE].astype(np.int64)], gj.random.key(SEED), repeat=3,
                       min_time=0.05))
    print(f"(benchmark took {time.perf_counter() - start:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", help="a folder of the Fashion-MNIST IDX files (.gz)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images")
    parser.add_argument("--out", help="where to write the models (default: a temporary folder)")
    parser.add_argument("--evaluate", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.evaluate:
        print(json.dumps(evaluate_saved(args.evaluate, args.path)))
        return
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        train(args, args.out)
    else:
        with tempfile.TemporaryDirectory() as out:
            train(args, out)


if __name__ == "__main__":
    main()
