"""Train an MLP and a small CNN on scikit-learn's bundled 8x8 digits (no download), Keras-style.

    pip install -e ".[examples]" && python examples/digits.py
    graphjit dump examples/digits.py:train_step --stage optimized   # one MLP training step

Each training step (forward, loss, backward, Adam update) is one compiled graph. The script holds
out 20% of the digits (fixed seeds), prints the test accuracy of both models, and times an epoch
run eagerly (NumPy, `fit(jit=False)`) against the compiled one.
"""
from __future__ import annotations

import time

import numpy as np

import graphjit as gj
from graphjit import datasets, layers, optimizers

SEED = 0
BATCH_SIZE = 32


def build_mlp() -> gj.Sequential:
    layers.set_seed(SEED)
    model = gj.Sequential([
        layers.Input(shape=(64,)),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.2),
        layers.Dense(10, activation="softmax"),
    ], name="digits_mlp")
    model.compile(optimizer=optimizers.Adam(0.002), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def build_cnn() -> gj.Sequential:
    layers.set_seed(SEED)
    model = gj.Sequential([
        layers.Input(shape=(8, 8, 1)),
        layers.Conv2D(16, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(10, activation="softmax"),
    ], name="digits_cnn")
    model.compile(optimizer=optimizers.Adam(0.005), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


# model name -> (builder, reshape of the (n, 8, 8) images, epochs)
MODELS = {
    "mlp": (build_mlp, lambda images: images.reshape(len(images), 64), 40),
    "cnn": (build_cnn, lambda images: images[..., None], 12),
}


def load_data():
    """((x_train, y_train), (x_test, y_test)) with 20% of the digits held out."""
    return datasets.load_digits(test_split=0.2, seed=SEED)


def train(name: str, epochs: int | None = None, verbose: int = 0) -> dict[str, float]:
    """Train one model compiled; return its test accuracy and seconds per compiled epoch."""
    build, reshape, default_epochs = MODELS[name]
    (x_train, y_train), (x_test, y_test) = load_data()
    model = build()
    history = model.fit(reshape(x_train), y_train, epochs=epochs or default_epochs,
                        batch_size=BATCH_SIZE, verbose=verbose, seed=SEED)
    _, accuracy = model.evaluate(reshape(x_test), y_test)
    times = history.epoch_times
    # the first epoch traces and compiles the step (two batch shapes); later ones only run it
    steady = float(np.median(times[1:])) if len(times) > 1 else times[0]
    return {"accuracy": accuracy, "compiled_epoch_s": steady, "first_epoch_s": times[0]}


def eager_epoch_seconds(name: str) -> float:
    """One epoch with `fit(jit=False)`: the same step run eagerly with NumPy."""
    build, reshape, _ = MODELS[name]
    (x_train, y_train), _ = load_data()
    model = build()
    model.fit(reshape(x_train[:BATCH_SIZE]), y_train[:BATCH_SIZE], epochs=1, verbose=0,
              jit=False)  # warm up: the eager gradient is traced once per batch shape
    start = time.perf_counter()
    model.fit(reshape(x_train), y_train, epochs=1, batch_size=BATCH_SIZE, verbose=0, seed=SEED,
              jit=False)
    return time.perf_counter() - start


# ---------------------------------------------------------------- for `graphjit dump/bench`

_EXAMPLE_MODEL: list[gj.Sequential] = []


def _example_model() -> gj.Sequential:
    if not _EXAMPLE_MODEL:
        _EXAMPLE_MODEL.append(build_mlp())
    return _EXAMPLE_MODEL[0]


def train_step(params, opt_state, state, xs, ys, key):
    """One training step of the MLP (forward, loss, backward, Adam update), undecorated: what
    `fit(jit=False)` runs, and what `fit` compiles with gj.jit."""
    step = _example_model().step_function("train", jit=False)
    return step(params, opt_state, state, xs, ys, key)


def example_args():
    model = _example_model()
    (x_train, y_train), _ = load_data()
    xs = [x_train[:BATCH_SIZE].reshape(BATCH_SIZE, 64)]
    return (model.params, model.optimizer.init(model.params), model.state, xs,
            [y_train[:BATCH_SIZE]], gj.random.key(SEED))


def main() -> None:
    build_mlp().summary()
    rows = []
    for name in MODELS:
        print(f"\ntraining the {name} ...")
        result = train(name, verbose=2)
        eager = eager_epoch_seconds(name)
        rows.append((name, result, eager))
    print(f"\n{'model':<6}{'test accuracy':>15}{'eager s/epoch':>16}{'compiled s/epoch':>19}"
          f"{'speedup':>10}{'first epoch s':>16}")
    for name, result, eager in rows:
        print(f"{name:<6}{result['accuracy']:>15.4f}{eager:>16.3f}"
              f"{result['compiled_epoch_s']:>19.3f}"
              f"{eager / result['compiled_epoch_s']:>9.1f}x{result['first_epoch_s']:>16.2f}")


if __name__ == "__main__":
    main()
