"""Models: the Functional API (`Model(inputs, outputs)`, any DAG of layers) and `Sequential`,
with Keras' compile / fit / evaluate / predict.

The forward pass is the pure function `model.apply(params, state, inputs, training, key)`. `fit`
builds one training step over (params, opt_state, state, x, y, key) -- forward, loss, backward
(`gj.value_and_grad`) and the optimizer update -- and compiles it with one `gj.jit`, so each batch
shape is traced and compiled once (the last, smaller batch of an epoch is a second cache entry that
every later epoch reuses). `fit(..., jit=False)` calls the same undecorated step eagerly.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from graphjit.compiler.errors import GraphjitError

from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from .jit import jit as gj_jit
from .layers import Input, Layer, SymbolicTensor
from .progress import ProgressBar

Tree = Any


class History:
    """What `fit` returns: `history[name]` is the list of per-epoch values of each log."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.epoch_times: list[float] = []

    def append(self, epoch: int, logs: dict[str, float], seconds: float) -> None:
        self.epoch.append(epoch)
        self.epoch_times.append(seconds)
        for name, value in logs.items():
            self.history.setdefault(name, []).append(value)

    def __repr__(self) -> str:
        return f"<History epochs={len(self.epoch)} logs={list(self.history)}>"


# ---------------------------------------------------------------- the functional graph


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _topological_nodes(inputs: list[SymbolicTensor],
                       outputs: list[SymbolicTensor]) -> list[SymbolicTensor]:
    """Every layer output between `inputs` and `outputs`, producers first."""
    input_ids = {id(t) for t in inputs}
    order: list[SymbolicTensor] = []
    seen: set[int] = set()

    def visit(tensor: SymbolicTensor) -> None:
        if id(tensor) in seen or id(tensor) in input_ids:
            return
        if tensor.layer is None:
            raise GraphjitError(f"the model's outputs depend on {tensor.name!r}, which is not "
                                "among the model's inputs: pass it in Model(inputs=[...])")
        seen.add(id(tensor))
        for parent in tensor.inputs:
            visit(parent)
        order.append(tensor)

    for output in outputs:
        visit(output)
    return order


def _unique_layers(nodes: list[SymbolicTensor]) -> list[Layer]:
    layers: list[Layer] = []
    for node in nodes:
        if all(node.layer is not layer for layer in layers):
            layers.append(node.layer)
    names = [layer.name for layer in layers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise GraphjitError(f"two different layers are named {duplicates}: layer names must be "
                            "unique within a model")
    return layers


def _split_keys(key: Any, count: int) -> list[Any]:
    """`count` independent keys from one (a chain of `gj.random.split`)."""
    from graphjit import random

    keys = []
    for _ in range(count):
        pair = random.split(key)
        key, sub = pair[0], pair[1]
        keys.append(sub)
    return keys


class Model:
    """A DAG of layers from `inputs` (from `layers.Input`) to `outputs`."""

    def __init__(self, inputs: Any = None, outputs: Any = None, name: str | None = None):
        self.name = name or "model"
        self.optimizer: optimizers_module.Optimizer | None = None
        self._compiled: dict[str, Any] | None = None
        self._opt_state: Tree = None
        if inputs is not None:
            self._set_graph(inputs, outputs)

    # -------------------------------------------------------------- structure
    def _set_graph(self, inputs: Any, outputs: Any) -> None:
        if outputs is None:
            raise GraphjitError("Model(inputs, outputs) needs outputs")
        self._single_output = not isinstance(outputs, (list, tuple))
        self.inputs: list[SymbolicTensor] = _as_list(inputs)
        self.outputs: list[SymbolicTensor] = _as_list(outputs)
        for tensor in self.inputs + self.outputs:
            if not isinstance(tensor, SymbolicTensor):
                raise GraphjitError(f"Model inputs and outputs must come from layers.Input and "
                                    f"layer calls on them, got {type(tensor).__name__}")
        self._nodes = _topological_nodes(self.inputs, self.outputs)
        self._layers = _unique_layers(self._nodes)

    @property
    def built(self) -> bool:
        return hasattr(self, "_nodes")

    def _ensure_built(self, xs: list[np.ndarray] | None = None) -> None:
        if not self.built:
            raise GraphjitError(f"model {self.name!r} has no inputs yet")

    @property
    def layers(self) -> list[Layer]:
        return list(self._layers) if self.built else []

    @property
    def output_names(self) -> list[str]:
        return [t.layer.name if t.layer is not None else t.name for t in self.outputs]

    def get_layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise GraphjitError(f"no layer named {name!r} in model {self.name!r}")

    # -------------------------------------------------------------- weights as trees
    @property
    def params(self) -> dict[str, dict[str, np.ndarray]]:
        """Trainable weights: {layer name: {weight name: array}}."""
        return {layer.name: dict(layer.params) for layer in self.layers
                if layer.trainable and layer.params}

    @property
    def state(self) -> dict[str, dict[str, np.ndarray]]:
        """Non-trainable weights updated by the forward pass (moving statistics)."""
        return {layer.name: dict(layer.state) for layer in self.layers if layer.state}

    def set_params(self, params: Tree, state: Tree | None = None) -> None:
        """Write weight trees (as from `params`/`state` or a training step) back into the layers."""
        for layer in self.layers:
            if layer.name in params:
                layer.params = {k: np.asarray(v) for k, v in params[layer.name].items()}
            if state and layer.name in state:
                layer.state = {k: np.asarray(v) for k, v in state[layer.name].items()}

    def count_params(self) -> int:
        return sum(layer.count_params() + layer.count_state() for layer in self.layers)

    # -------------------------------------------------------------- the pure forward pass
    def apply(self, params: Tree, state: Tree, inputs: Sequence[Any], training: bool = False,
              key: Any = None, return_losses: bool = False) -> Any:
        """Outputs (a list) and the updated state for these weights: a pure function that traces.

        `params`/`state` map layer names to weight dicts; layers missing from `params` (frozen)
        use their own arrays. `key` is a `gj.random` key, needed when training with Dropout.
        """
        self._ensure_built()
        saved = [(layer.params, layer.state, layer._key) for layer in self.layers]
        try:
            self._bind(params, state, training, key)
            values = {id(t): x for t, x in zip(self.inputs, inputs, strict=True)}
            for node in self._nodes:
                args = [values[id(t)] for t in node.inputs]
                values[id(node)] = node.layer(args if node.list_input else args[0],
                                              training=training)
            outputs = [values[id(t)] for t in self.outputs]
            new_state = {layer.name: dict(layer.state) for layer in self.layers if layer.state}
            added = [loss for layer in self.layers for loss in layer._losses]
        finally:
            for layer, (layer_params, layer_state, layer_key) in zip(self.layers, saved):
                layer.params, layer.state, layer._key = layer_params, layer_state, layer_key
                layer._losses = []
        return (outputs, new_state, added) if return_losses else (outputs, new_state)

    def _bind(self, params: Tree, state: Tree, training: bool, key: Any) -> None:
        random_layers = [layer for layer in self.layers if layer.uses_rng]
        keys = [None] * len(random_layers)
        if training and random_layers:
            if key is None:
                raise GraphjitError(f"model {self.name!r} has layers that need a random key "
                                    "while training (Dropout): pass key=gj.random.key(seed)")
            keys = _split_keys(key, len(random_layers))
        for layer in self.layers:
            layer._losses = []
            layer.params = dict(params.get(layer.name, layer.params))
            layer.state = dict(state.get(layer.name, layer.state))
        for layer, layer_key in zip(random_layers, keys):
            layer._key = layer_key

    def __call__(self, inputs: Any, training: bool = False) -> Any:
        """Run the model on concrete arrays with its current weights."""
        if any(isinstance(t, SymbolicTensor) for t in _as_list(inputs)):
            raise GraphjitError("calling a model on Input tensors (nesting models) is not "
                                "supported; call its layers instead")
        outputs, _ = self.apply(self.params, self.state, _as_list(inputs), training=training)
        return outputs[0] if self._single_output else outputs

    # -------------------------------------------------------------- summary
    def summary(self, print_fn: Callable[[str], None] | None = print) -> str:
        """Print (and return) a table of layers, output shapes and parameter counts."""
        self._ensure_built()
        rows = [(f"{t.name} (Input)", str(t.shape), "0") for t in self.inputs]
        seen: set[int] = set()
        for node in self._nodes:
            if id(node.layer) in seen:
                continue
            seen.add(id(node.layer))
            count = node.layer.count_params() + node.layer.count_state()
            rows.append((f"{node.layer.name} ({type(node.layer).__name__})", str(node.shape),
                         f"{count:,}"))
        widths = [max(len(h), *(len(r[i]) for r in rows)) + 2
                  for i, h in enumerate(("Layer (type)", "Output Shape", "Param #"))]
        rule = "=" * sum(widths)

        def line(cells: Sequence[str]) -> str:
            return "".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

        trainable = sum(layer.count_params() for layer in self.layers if layer.trainable)
        total = self.count_params()
        out = [f'Model: "{self.name}"', rule, line(("Layer (type)", "Output Shape", "Param #")),
               rule, *(line(r) for r in rows), rule, f"Total params: {total:,}",
               f"Trainable params: {trainable:,}", f"Non-trainable params: {total - trainable:,}"]
        text = "\n".join(out)
        if print_fn is not None:
            print_fn(text)
        return text

    # -------------------------------------------------------------- compile
    def compile(self, optimizer: str | optimizers_module.Optimizer = "rmsprop",
                loss: Any = None, metrics: Sequence[Any] | dict | None = None,
                loss_weights: Sequence[float] | dict | None = None) -> None:
        """Choose the optimizer, the loss (one, or one per output) and the metrics."""
        if loss is None:
            raise GraphjitError("compile() needs a loss, e.g. loss='mse'")
        self.optimizer = optimizers_module.get(optimizer)
        names = self.output_names
        loss_list = [losses_module.get(item) for item in self._per_output(loss, "loss")]
        weights = self._per_output(loss_weights if loss_weights is not None else 1.0,
                                   "loss_weights")
        metric_lists = self._metrics_per_output(metrics, loss_list)
        multi = len(names) > 1
        self._compiled = {
            "losses": loss_list, "loss_weights": [float(w) for w in weights],
            "metrics": [[(f"{name}_{m.name}" if multi else m.name, m) for m in ms]
                        for name, ms in zip(names, metric_lists)],
        }
        self._opt_state = None
        self._steps = self._make_steps()
        self._jitted = {kind: gj_jit(step) for kind, step in self._steps.items()}

    def _per_output(self, value: Any, what: str) -> list:
        names = self.output_names
        if isinstance(value, dict):
            missing = [n for n in names if n not in value]
            if missing:
                raise GraphjitError(f"compile({what}=...) has no entry for outputs {missing}")
            return [value[n] for n in names]
        if isinstance(value, (list, tuple)):
            if len(value) != len(names):
                raise GraphjitError(f"compile({what}=...) has {len(value)} entries for "
                                    f"{len(names)} outputs {names}")
            return list(value)
        return [value] * len(names)

    def _metrics_per_output(self, metrics: Any, loss_list: list) -> list[list]:
        names = self.output_names
        if metrics is None:
            per_output: list = [[] for _ in names]
        elif isinstance(metrics, dict):
            per_output = [_as_list(metrics.get(n, [])) for n in names]
        else:
            per_output = [list(metrics) for _ in names]
        return [[metrics_module.get(m, loss) for m in ms]
                for ms, loss in zip(per_output, loss_list)]

    def _require_compiled(self) -> dict[str, Any]:
        if self._compiled is None:
            raise GraphjitError(f"model {self.name!r} is not compiled: call "
                                "model.compile(optimizer=..., loss=...) first")
        return self._compiled

    # -------------------------------------------------------------- the step functions
    def _losses_and_sums(self, outputs: list, targets: list) -> tuple[Any, dict[str, Any]]:
        """Total batch loss, and per-batch sums of every logged per-sample value."""
        config = self._compiled
        total = 0.0
        sums: dict[str, Any] = {}
        multi = len(outputs) > 1
        for name, out, target, loss, weight, metrics in zip(
                self.output_names, outputs, targets, config["losses"], config["loss_weights"],
                config["metrics"]):
            per_sample = loss.per_sample(target, out)
            total = total + weight * np.mean(per_sample)
            if multi:
                sums[f"{name}_loss"] = np.sum(per_sample)
            for metric_name, metric in metrics:
                sums[metric_name] = np.sum(metric(target, out))
        return total, sums

    def _make_steps(self) -> dict[str, Callable]:
        """The undecorated train, eval and predict steps (`compile` jits each of them)."""
        from graphjit import transforms

        optimizer = self.optimizer

        def objective(trainable, state, xs, ys, key):
            outputs, new_state, added = self.apply(trainable, state, xs, training=True, key=key,
                                                   return_losses=True)
            loss, sums = self._losses_and_sums(outputs, ys)
            penalties = added + self._regularization_losses(trainable)
            if penalties:
                loss = loss + sum(penalties[1:], penalties[0])
            return loss, (new_state, sums)

        # Under gj.jit this inlines into the step's graph (forward and backward fuse together);
        # called eagerly it runs op by op on NumPy (the reference interpreter, traced once per
        # batch shape) rather than compiling itself, so `fit(jit=False)` is a NumPy baseline.
        loss_and_grads = gj_jit(transforms.value_and_grad(objective, has_aux=True),
                                target="reference")

        def train_step(params, opt_state, state, xs, ys, key):
            (loss, (new_state, sums)), grads = loss_and_grads(params, state, xs, ys, key)
            params, opt_state = optimizer.update(params, grads, opt_state)
            return self._constrained(params), opt_state, new_state, loss, sums

        def eval_step(params, state, xs, ys):
            outputs, _ = self.apply(params, state, xs, training=False)
            return self._losses_and_sums(outputs, ys)

        def predict_step(params, state, xs):
            outputs, _ = self.apply(params, state, xs, training=False)
            return outputs

        return {"train": train_step, "eval": eval_step, "predict": predict_step}

    # -------------------------------------------------------------- pickling (issue 9)
    # The steps are closures over the model and their jitted forms hold compiled code: both are
    # dropped and rebuilt, so the receiver compiles on first call (or loads the disk cache).
    _REBUILT_ON_UNPICKLE = ("_steps", "_jitted", "_predict_only")

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in self._REBUILT_ON_UNPICKLE}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self._compiled is not None:
            self._steps = self._make_steps()
            self._jitted = {kind: gj_jit(step) for kind, step in self._steps.items()}

    def _regularization_losses(self, trainable: Tree) -> list:
        """Every layer's weight penalties (frozen layers' with their own, constant, weights)."""
        penalties = []
        for layer in self.layers:
            penalties += layer.regularization_losses(trainable.get(layer.name, layer.params))
        return penalties

    def _constrained(self, params: Tree) -> Tree:
        return {name: self.get_layer(name).apply_constraints(weights)
                for name, weights in params.items()}

    def step_function(self, kind: str = "train", jit: bool = True) -> Callable:
        """The step `fit`/`evaluate`/`predict` call: kind 'train' takes (params, opt_state,
        state, xs, ys, key), 'eval' (params, state, xs, ys), 'predict' (params, state, xs).
        Compiled (a `JitFunction`: `.lower(...)`, `.cache_info()`) or the eager form."""
        self._require_compiled()
        if kind not in self._steps:
            raise GraphjitError(f"unknown step {kind!r}; choose one of {sorted(self._steps)}")
        return self._jitted[kind] if jit else self._steps[kind]


    def cache_info(self) -> dict[str, dict[str, int]]:
        """Hits/misses of the compiled train, eval and predict steps."""
        if self._compiled is None:
            return {}
        return {kind: fn.cache_info() for kind, fn in self._jitted.items()}

    # -------------------------------------------------------------- data handling
    def _named(self, data: Any, tensors: list[SymbolicTensor], names: list[str],
               what: str) -> list:
        if isinstance(data, dict):
            missing = [n for n in names if n not in data]
            if missing:
                raise GraphjitError(f"{what} dict has no entries for {missing}")
            return [data[n] for n in names]
        items = _as_list(data)
        if len(items) != len(tensors):
            raise GraphjitError(f"the model has {len(tensors)} {what}s ({names}) but got "
                                f"{len(items)} arrays")
        return items

    def _prepare_inputs(self, x: Any) -> list[np.ndarray]:
        self._ensure_built(_as_list(x) if not isinstance(x, dict) else None)
        items = self._named(x, self.inputs, [t.name for t in self.inputs], "input")
        return [_as_model_array(a, t.dtype) for a, t in zip(items, self.inputs)]

    def _prepare_targets(self, y: Any) -> list[np.ndarray]:
        items = self._named(y, self.outputs, self.output_names, "target")
        return [_as_target_array(a) for a in items]

    # -------------------------------------------------------------- fit / evaluate / predict
    def fit(self, x: Any, y: Any, epochs: int = 1, batch_size: int = 32,
            validation_split: float = 0.0, validation_data: tuple | None = None,
            shuffle: bool = True, verbose: int = 1, jit: bool = True,
            seed: int | None = None) -> History:
        """Train for `epochs`; every step is one compiled graph (or eager with `jit=False`).

        `seed` fixes the shuffling and the Dropout keys. Returns a `History`."""
        self._require_compiled()
        xs, ys = self._prepare_inputs(x), self._prepare_targets(y)
        if validation_data is not None:
            validation_data = (self._prepare_inputs(validation_data[0]),
                               self._prepare_targets(validation_data[1]))
        elif validation_split:
            xs, ys, validation_data = _split_off_validation(xs, ys, validation_split)
        run = _TrainingRun(self, xs, ys, batch_size, shuffle, jit, seed)
        history = History()
        try:
            for epoch in range(epochs):
                if verbose:
                    print(f"Epoch {epoch + 1}/{epochs}")
                bar = ProgressBar(run.steps_per_epoch, verbose)
                logs = run.epoch(bar)
                self.set_params(run.params, run.state)
                if validation_data is not None:
                    val_logs = self._evaluate_arrays(*validation_data, batch_size, jit)
                    logs.update({f"val_{k}": v for k, v in val_logs.items()})
                history.append(epoch, logs, bar.elapsed())
                bar.finish(logs)
        finally:  # an interrupted fit keeps what it learned
            self.set_params(run.params, run.state)
            self._opt_state = run.opt_state
        return history

    def _initial_key(self, rng: np.random.Generator) -> Any:
        if not any(layer.uses_rng for layer in self.layers):
            return None
        from graphjit import random

        return random.key(int(rng.integers(2 ** 31 - 1)))

    def _evaluate_arrays(self, xs: list, ys: list, batch_size: int,
                         use_jit: bool) -> dict[str, float]:
        step = self.step_function("eval", use_jit)
        params, state = self.params, self.state
        totals = _Totals()
        count = _common_length(xs + ys)
        for start in range(0, count, batch_size):
            stop = min(start + batch_size, count)
            loss, sums = step(params, state, [a[start:stop] for a in xs],
                              [a[start:stop] for a in ys])
            totals.add(stop - start, loss, sums)
        return totals.logs()

    def evaluate(self, x: Any, y: Any, batch_size: int = 32, verbose: int = 0,
                 return_dict: bool = False, jit: bool = True) -> Any:
        """Loss and metrics over the data: a float (loss only), a list, or a dict."""
        xs, ys = self._prepare_inputs(x), self._prepare_targets(y)
        self._require_compiled()
        logs = self._evaluate_arrays(xs, ys, batch_size, jit)
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x: Any, batch_size: int = 32, verbose: int = 0, jit: bool = True) -> Any:
        """The model's outputs on `x`, computed in compiled batches."""
        xs = self._prepare_inputs(x)
        count = _common_length(xs)
        if self._compiled is not None:
            step = self.step_function("predict", jit)
        else:  # uncompiled models can still predict
            step = self._uncompiled_predict(jit)
        params, state = self.params, self.state
        chunks: list[list[np.ndarray]] = [[] for _ in self.outputs]
        for start in range(0, count, batch_size):
            outputs = step(params, state, [a[start:start + batch_size] for a in xs])
            for chunk, out in zip(chunks, outputs):
                chunk.append(np.asarray(out))
        results = [np.concatenate(c, axis=0) if c else np.zeros((0,)) for c in chunks]
        if verbose:
            print(f"predicted {count} samples")
        return results[0] if self._single_output else results

    def _uncompiled_predict(self, use_jit: bool) -> Callable:
        if not hasattr(self, "_predict_only"):
            def predict_step(params, state, xs):
                return self.apply(params, state, xs, training=False)[0]

            self._predict_only = (predict_step, gj_jit(predict_step))
        return self._predict_only[1] if use_jit else self._predict_only[0]

    # -------------------------------------------------------------- weights on disk
    def _weight_entries(self) -> dict[str, np.ndarray]:
        """Every weight keyed by layer position, layer type, kind and name."""
        entries = {}
        for index, layer in enumerate(self.layers):
            for kind, weights in (("params", layer.params), ("state", layer.state)):
                for name, value in weights.items():
                    entries[f"{index:03d}.{type(layer).__name__}/{kind}/{name}"] = value
        return entries

    def get_weights(self) -> list[np.ndarray]:
        return [np.array(v) for v in self._weight_entries().values()]

    def save_weights(self, path: str | os.PathLike) -> None:
        """Write every weight to an .npz file (keyed by layer position, type and weight name)."""
        self._ensure_built()
        with open(path, "wb") as handle:
            np.savez(handle, **{k: np.asarray(v) for k, v in self._weight_entries().items()})

    def load_weights(self, path: str | os.PathLike) -> None:
        """Read weights written by `save_weights` into a model of the same architecture."""
        self._ensure_built()
        with np.load(path) as archive:
            saved = {k: archive[k] for k in archive.files}
        expected = self._weight_entries()
        problems = _weight_mismatches(saved, expected)
        if problems:
            raise GraphjitError(f"cannot load {os.fspath(path)!r} into model {self.name!r}: the "
                                "architectures differ:\n  " + "\n  ".join(problems[:10]))
        for index, layer in enumerate(self.layers):
            prefix = f"{index:03d}.{type(layer).__name__}/"
            for kind in ("params", "state"):
                weights = getattr(layer, kind)
                for name in weights:
                    key = f"{prefix}{kind}/{name}"
                    weights[name] = saved[key].astype(expected[key].dtype)
        self._opt_state = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} layers={len(self.layers)}>"


class Sequential(Model):
    """A stack of layers, each feeding the next. Starts with `layers.Input(shape)`, or is built
    from the first data it sees."""

    def __init__(self, layers: Sequence[Layer | SymbolicTensor] | None = None,
                 name: str | None = None):
        super().__init__(name=name or "sequential")
        self._stack: list[Layer] = []
        self._input: SymbolicTensor | None = None
        for layer in layers or []:
            self.add(layer)

    def add(self, layer: Layer | SymbolicTensor) -> None:
        if isinstance(layer, SymbolicTensor):
            if layer.layer is not None or self._stack or self._input is not None:
                raise GraphjitError("a Sequential model takes layers.Input(...) only as its "
                                    "first element")
            self._input = layer
        elif isinstance(layer, Layer):
            self._stack.append(layer)
        else:
            raise GraphjitError(f"Sequential takes layers, got {type(layer).__name__}")
        if self._input is not None:
            self._chain()

    def _chain(self) -> None:
        tensor = self._input
        for layer in self._stack:
            tensor = layer(tensor)
        self._set_graph(self._input, tensor)

    def build(self, input_shape: Sequence[int | None], dtype: Any = np.float32) -> None:
        """Fix the input shape (batch dimension first, e.g. (None, 64)) and build every layer."""
        self._input = Input(tuple(input_shape)[1:], dtype=dtype)
        self._chain()

    @property
    def layers(self) -> list[Layer]:
        return list(self._stack)

    @property
    def output_names(self) -> list[str]:
        if not self._stack:
            raise GraphjitError("this Sequential model has no layers")
        return [self._stack[-1].name]

    def _ensure_built(self, xs: list[np.ndarray] | None = None) -> None:
        if self.built:
            return
        if not self._stack:
            raise GraphjitError("this Sequential model has no layers")
        if xs is None or len(xs) != 1:
            raise GraphjitError("this Sequential model has no input shape yet: start it with "
                                "layers.Input(shape), call model.build((None, ...)), or fit it")
        sample = np.asarray(xs[0])
        self.build((None, *sample.shape[1:]), _model_dtype(sample.dtype))


# ---------------------------------------------------------------- helpers


class _TrainingRun:
    """The loop state of one `fit`: weights, optimizer state, random key and batch order."""

    def __init__(self, model: Model, xs: list[np.ndarray], ys: list[np.ndarray],
                 batch_size: int, shuffle: bool, use_jit: bool, seed: int | None):
        self.xs, self.ys, self.batch_size, self.shuffle = xs, ys, batch_size, shuffle
        self.count = _common_length(xs + ys)
        self.steps_per_epoch = -(-self.count // batch_size)
        self.step = model.step_function("train", use_jit)
        self.rng = np.random.default_rng(seed)
        self.params, self.state = model.params, model.state
        self.opt_state = model._opt_state
        if self.opt_state is None:
            self.opt_state = model.optimizer.init(self.params)
        self.key = model._initial_key(self.rng)

    def _next_key(self) -> Any:
        if self.key is None:
            return None
        self.key, step_key = _split_keys(self.key, 2)
        return step_key

    def epoch(self, bar: ProgressBar) -> dict[str, float]:
        order = self.rng.permutation(self.count) if self.shuffle else np.arange(self.count)
        totals = _Totals()
        for batch, start in enumerate(range(0, self.count, self.batch_size)):
            index = order[start:start + self.batch_size]
            self.params, opt_state, self.state, loss, sums = self.step(
                self.params, self.opt_state, self.state, [a[index] for a in self.xs],
                [a[index] for a in self.ys], self._next_key())
            # 0-d results come back as NumPy scalars: keep the step count an array
            self.opt_state = optimizers_module.tree_map(np.asarray, opt_state)
            totals.add(len(index), loss, sums)
            bar.update(batch + 1, totals.logs())
        return totals.logs()


def _split_off_validation(xs: list[np.ndarray], ys: list[np.ndarray],
                          fraction: float) -> tuple[list, list, tuple[list, list]]:
    """Keras' validation_split: the last `fraction` of the samples, taken before shuffling."""
    split = int(_common_length(xs + ys) * (1.0 - fraction))
    validation = ([a[split:] for a in xs], [a[split:] for a in ys])
    return [a[:split] for a in xs], [a[:split] for a in ys], validation


class _Totals:
    """Sample-weighted running sums of the loss and the logged per-sample values."""

    def __init__(self) -> None:
        self.samples = 0
        self.loss = 0.0
        self.sums: dict[str, float] = {}

    def add(self, count: int, loss: Any, sums: dict[str, Any]) -> None:
        self.samples += count
        self.loss += float(loss) * count
        for name, value in sums.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value)

    def logs(self) -> dict[str, float]:
        n = max(self.samples, 1)
        return {"loss": self.loss / n, **{k: v / n for k, v in self.sums.items()}}


def _model_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.kind == "f":
        return np.dtype(np.float32)
    if dtype.kind in "iub":
        return np.dtype(np.int64)
    raise GraphjitError(f"cannot feed arrays of dtype {dtype} to a model")


def _as_model_array(value: Any, dtype: np.dtype) -> np.ndarray:
    array = np.asarray(value)
    target = dtype if array.dtype.kind == dtype.kind or dtype.kind == "f" else \
        _model_dtype(array.dtype)
    return np.ascontiguousarray(array, dtype=target)


def _as_target_array(value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind == "f":
        return np.ascontiguousarray(array, dtype=np.float32)
    return np.ascontiguousarray(array, dtype=_model_dtype(array.dtype))


def _common_length(arrays: list[np.ndarray]) -> int:
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1:
        raise GraphjitError(f"inputs and targets have different numbers of samples: "
                            f"{sorted(lengths)}")
    return lengths.pop()


def _weight_mismatches(saved: dict[str, np.ndarray], expected: dict[str, Any]) -> list[str]:
    problems = [f"missing from the file: {k}" for k in expected if k not in saved]
    problems += [f"in the file but not in this model: {k}" for k in saved if k not in expected]
    for key in expected.keys() & saved.keys():
        if tuple(saved[key].shape) != tuple(np.shape(expected[key])):
            problems.append(f"{key}: the file has shape {tuple(saved[key].shape)}, this model "
                            f"{tuple(np.shape(expected[key]))}")
    return problems


__all__ = ["Model", "Sequential", "History"]
