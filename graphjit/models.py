"""Models: the Functional API (`Model(inputs, outputs)`, any DAG of layers) and `Sequential`,
with Keras' compile / fit / evaluate / predict.

The forward pass is the pure function `model.apply(params, state, inputs, training, key)`. `fit`
builds one training step over (params, opt_state, state, x, y, key[, sample_weights]) -- forward,
loss, backward (`gj.value_and_grad`) and the optimizer update -- and compiles it with one `gj.jit`,
so each batch shape is traced and compiled once (the last, smaller batch of an epoch is a second
cache entry that every later epoch reuses). `fit(..., jit=False)` calls the same undecorated step
eagerly. Data is checked on the host before anything traces (graphjit/data.py); callbacks run
around the steps (graphjit/callbacks.py); `save`/`load_model` live in graphjit/saving.py.
"""
from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from graphjit.compiler.dtypes import is_supported
from graphjit.compiler.errors import GraphjitError

from . import data as data_module
from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from .jit import jit as gj_jit
from .layers import Input, Layer, SymbolicTensor
from .callbacks import History
from .progress import auto_verbose

Tree = Any

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
        self.stop_training = False
        self.history: History | None = None
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

    @property
    def input(self) -> Any:
        """The model's Input tensor (a list for several), as Keras' `model.input`."""
        self._ensure_built()
        return self.inputs[0] if len(self.inputs) == 1 else list(self.inputs)

    @property
    def output(self) -> Any:
        self._ensure_built()
        return self.outputs[0] if self._single_output else list(self.outputs)

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
                loss: Any = None, loss_weights: Sequence[float] | dict | None = None,
                metrics: Sequence[Any] | dict | None = None,
                weighted_metrics: Sequence[Any] | dict | None = None,
                run_eagerly: bool = False, jit_compile: bool | str = "auto") -> None:
        """Choose the optimizer, the loss (one, or one per output) and the metrics (Keras'
        argument order). `weighted_metrics` are weighted by `sample_weight`/`class_weight`,
        `metrics` are not. Compiling again resets the optimizer state, as in Keras."""
        if loss is None:
            raise GraphjitError("compile() needs a loss, e.g. loss='mse'")
        self._ensure_built_if_possible()
        self.optimizer = optimizers_module.get(optimizer)
        names = self.output_names
        loss_list = [losses_module.get(item) for item in self._per_output(loss, "loss")]
        weights = self._per_output(loss_weights if loss_weights is not None else 1.0,
                                   "loss_weights")
        plain = self._metrics_per_output(metrics, loss_list)
        weighted = self._metrics_per_output(weighted_metrics, loss_list)
        multi = len(names) > 1
        per_output = []
        for name, plain_metrics, weighted_ones in zip(names, plain, weighted):
            entries, taken = [], set()
            for metric, is_weighted in [(m, False) for m in plain_metrics] + \
                    [(m, True) for m in weighted_ones]:
                label = f"{name}_{metric.name}" if multi else metric.name
                if label in taken:  # Keras: a weighted copy of a metric gets a prefix
                    label = f"{name}_weighted_{metric.name}" if multi else \
                        f"weighted_{metric.name}"
                taken.add(label)
                entries.append((label, metric, is_weighted))
            per_output.append(entries)
        self._compiled = {"losses": loss_list, "loss_weights": [float(w) for w in weights],
                          "metrics": per_output}
        self._compile_config = {"optimizer": self.optimizer, "loss": loss,
                                "loss_weights": loss_weights, "metrics": metrics,
                                "weighted_metrics": weighted_metrics}
        self._run_eagerly = bool(run_eagerly) or jit_compile is False
        self._opt_state = None
        self._drop_steps()

    def _ensure_built_if_possible(self) -> None:
        """Functional models are built at construction; a Sequential waits for data."""

    def _per_output(self, value: Any, what: str) -> list:
        names = self.output_names
        if isinstance(value, dict):
            missing = [n for n in names if n not in value]
            unknown = [k for k in value if k not in names]
            if missing or unknown:
                raise GraphjitError(f"compile({what}=...) must have one entry per output "
                                    f"{names}: missing {missing}, unknown {unknown}")
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
            unknown = [k for k in metrics if k not in names]
            if unknown:
                raise GraphjitError(f"compile(metrics=...) names outputs {unknown}, but the "
                                    f"model's outputs are {names}")
            per_output = [_as_list(metrics.get(n, [])) for n in names]
        elif isinstance(metrics, (list, tuple)) and len(names) > 1 and \
                all(isinstance(m, (list, tuple, dict)) or m is None for m in metrics):
            per_output = [_as_list(m or []) for m in metrics]
        else:
            per_output = [_as_list(metrics) for _ in names]
        return [[metrics_module.get(m, loss) for m in ms]
                for ms, loss in zip(per_output, loss_list)]

    def _require_compiled(self) -> dict[str, Any]:
        if self._compiled is None:
            raise GraphjitError(f"model {self.name!r} is not compiled: call "
                                "model.compile(optimizer=..., loss=...) first")
        return self._compiled

    # -------------------------------------------------------------- the step functions
    def _losses_and_sums(self, outputs: list, targets: list,
                         sample_weights: list | None) -> tuple[Any, dict[str, Any]]:
        """Total batch loss, and per-batch sums of every logged per-sample value.

        Keras' reduction: each output's loss is mean(per-sample loss * sample weight) over the
        batch; unweighted metrics average over samples, weighted ones over the weights."""
        config = self._compiled
        total = 0.0
        sums: dict[str, Any] = {}
        multi = len(outputs) > 1
        for index, (name, out, target, loss, weight, metrics) in enumerate(zip(
                self.output_names, outputs, targets, config["losses"], config["loss_weights"],
                config["metrics"])):
            per_sample = _per_sample(_named_call(loss.per_sample, target, out,
                                                 f"loss {loss.name!r} of output {name!r}"))
            sw = None
            if sample_weights is not None:
                sw = sample_weights[index].astype(per_sample.dtype)
                per_sample = per_sample * sw
            total = total + weight * np.mean(per_sample)
            if multi:
                sums[f"{name}_loss"] = np.sum(per_sample)
            for label, metric, is_weighted in metrics:
                values = _per_sample(_named_call(metric, target, out,
                                                 f"metric {metric.name!r} of output {name!r}"))
                if is_weighted and sw is not None:
                    values = values * sw.astype(values.dtype)
                    sums[f"{WEIGHT_SUM}{label}"] = np.sum(sw)
                sums[label] = np.sum(values)
        return total, sums

    def _penalties(self, params: Tree, added: list) -> list:
        return added + self._regularization_losses(params)

    def _make_steps(self) -> dict[str, Callable]:
        """The undecorated train, eval and predict steps (compiled lazily by `step_function`)."""
        from graphjit import transforms

        optimizer = self.optimizer

        def objective(trainable, state, xs, ys, key, sample_weights):
            outputs, new_state, added = self.apply(trainable, state, xs, training=True, key=key,
                                                   return_losses=True)
            loss, sums = self._losses_and_sums(outputs, ys, sample_weights)
            penalties = self._penalties(trainable, added)
            if penalties:
                loss = loss + sum(penalties[1:], penalties[0])
            return loss, (new_state, sums)

        # Under gj.jit this inlines into the step's graph (forward and backward fuse together);
        # called eagerly it runs op by op on NumPy (the reference interpreter, traced once per
        # batch shape) rather than compiling itself, so `fit(jit=False)` is a NumPy baseline.
        loss_and_grads = gj_jit(transforms.value_and_grad(objective, has_aux=True),
                                target="reference")

        # train = gradients then apply_gradients; data-parallel training (graphjit.distribute)
        # runs the two halves on each replica with an allreduce of the gradients between them
        def gradients_step(params, state, xs, ys, key, sample_weights=None):
            (loss, (new_state, sums)), grads = loss_and_grads(params, state, xs, ys, key,
                                                              sample_weights)
            return grads, new_state, loss, sums

        def apply_gradients_step(params, opt_state, grads):
            params, opt_state = optimizer.update(params, grads, opt_state)
            return self._constrained(params), opt_state

        def train_step(params, opt_state, state, xs, ys, key, sample_weights=None):
            grads, new_state, loss, sums = gradients_step(params, state, xs, ys, key,
                                                          sample_weights)
            params, opt_state = apply_gradients_step(params, opt_state, grads)
            return params, opt_state, new_state, loss, sums

        def eval_step(params, state, xs, ys, sample_weights=None):
            outputs, _, added = self.apply(params, state, xs, training=False,
                                           return_losses=True)
            loss, sums = self._losses_and_sums(outputs, ys, sample_weights)
            penalties = self._penalties(params, added)
            if penalties:
                loss = loss + sum(penalties[1:], penalties[0])
            return loss, sums

        def predict_step(params, state, xs):
            outputs, _ = self.apply(params, state, xs, training=False)
            return outputs

        return {"train": train_step, "eval": eval_step, "predict": predict_step,
                "gradients": gradients_step, "apply_gradients": apply_gradients_step}

    def _regularization_losses(self, trainable: Tree) -> list:
        """Every layer's weight penalties (frozen layers' with their own, constant, weights)."""
        penalties = []
        for layer in self.layers:
            penalties += layer.regularization_losses(trainable.get(layer.name, layer.params))
        return penalties

    def _constrained(self, params: Tree) -> Tree:
        return {name: self.get_layer(name).apply_constraints(weights)
                for name, weights in params.items()}

    def _drop_steps(self) -> None:
        for attribute in ("_steps", "_jitted", "_predict_only"):
            self.__dict__.pop(attribute, None)

    def step_function(self, kind: str = "train", jit: bool = True) -> Callable:
        """The step `fit`/`evaluate`/`predict` call: kind 'train' takes (params, opt_state,
        state, xs, ys, key[, sample_weights]), 'eval' (params, state, xs, ys[,
        sample_weights]), 'predict' (params, state, xs). Compiled (a `JitFunction`:
        `.lower(...)`, `.cache_info()`) or the eager form."""
        self._require_compiled()
        if "_steps" not in self.__dict__:  # built lazily: after compile, or after unpickling
            self._steps = self._make_steps()
            self._jitted = {name: gj_jit(step) for name, step in self._steps.items()}
        if kind not in self._steps:
            raise GraphjitError(f"unknown step {kind!r}; choose one of {sorted(self._steps)}")
        return self._jitted[kind] if jit else self._steps[kind]

    def make_train_function(self, jit: bool = True) -> Callable:
        """The train step `fit` calls once per batch, with the signature of
        `step_function("train")`. A seam: data-parallel training wraps or replaces it."""
        return self.step_function("train", jit)

    def cache_info(self) -> dict[str, dict[str, int]]:
        """Hits/misses of the compiled train, eval and predict steps."""
        if self._compiled is None or "_jitted" not in self.__dict__:
            return {}
        return {kind: fn.cache_info() for kind, fn in self._jitted.items()}

    # The steps are closures over the model and their jitted forms hold compiled code: both are
    # dropped when pickling and rebuilt on first use, so the receiver compiles on its first call
    # (or loads the disk cache).
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for attribute in ("_steps", "_jitted", "_predict_only"):
            state.pop(attribute, None)
        return state

    # -------------------------------------------------------------- data handling
    def _named(self, data: Any, names: list[str], what: str) -> list:
        if isinstance(data, dict):
            missing = [n for n in names if n not in data]
            unknown = [k for k in data if k not in names]
            if missing or unknown:
                raise GraphjitError(f"{what} must have one entry per name {names}: missing "
                                    f"{missing}, unknown {unknown}")
            return [data[n] for n in names]
        items = list(data) if isinstance(data, (list, tuple)) and len(names) > 1 else [data]
        if isinstance(data, (list, tuple)) and len(names) == 1 and len(data) == 1 and \
                np.ndim(data[0]) >= 1 and not np.isscalar(data[0]) and \
                isinstance(data[0], np.ndarray):
            items = [data[0]]  # [x] for a one-input model
        if len(items) != len(names):
            kind, _, argument = what.partition(" ")
            raise GraphjitError(f"the model has {len(names)} {kind}s {names} but {argument} "
                                f"holds {len(items)} array{'s' if len(items) != 1 else ''}")
        return items

    def _prepare_inputs(self, x: Any, what: str = "x") -> list[np.ndarray]:
        if x is None:
            raise GraphjitError(f"{what} is None: pass the input data")
        if not self.built:
            self._ensure_built(None if isinstance(x, dict) else
                               [np.asarray(a) for a in _as_list(x)])
        names = [t.name for t in self.inputs]
        items = self._named(x, names, f"input {what}")
        return [_as_input_array(a, t, f"{what}" if len(names) == 1 else f"{what}[{name!r}]",
                                self.name)
                for a, t, name in zip(items, self.inputs, names)]

    def _prepare_targets(self, y: Any, what: str = "y") -> list[np.ndarray]:
        if y is None:
            raise GraphjitError(f"{what} is None: fit and evaluate need targets (or pass a "
                                "generator yielding (x, y) batches)")
        names = self.output_names
        items = self._named(y, names, f"output {what}")
        config = self._require_compiled()
        return [_check_target(_as_target_array(a, f"{what}"), out, loss, name)
                for a, out, loss, name in zip(items, self.outputs, config["losses"], names)]

    def _prepare_sample_weights(self, sample_weight: Any, class_weight: Any,
                                ys: list[np.ndarray]) -> list[np.ndarray] | None:
        if sample_weight is not None and class_weight is not None:
            raise GraphjitError("pass sample_weight or class_weight, not both (as in Keras)")
        names = self.output_names
        if class_weight is not None:
            if len(names) > 1:
                raise GraphjitError("class_weight is supported for models with one output only; "
                                    "pass sample_weight per output instead")
            return [_class_weights(class_weight, ys[0])]
        if sample_weight is None:
            return None
        if isinstance(sample_weight, dict) or (isinstance(sample_weight, (list, tuple))
                                               and len(names) > 1):
            items = self._named(sample_weight, names, "output sample_weight")
        else:
            items = [sample_weight] * len(names)
        weights = []
        for item, y, name in zip(items, ys, names):
            sw = np.asarray(item, dtype=np.float32)
            if sw.ndim == 2 and sw.shape[1] == 1:
                sw = sw[:, 0]
            if sw.ndim != 1 or len(sw) != len(y):
                raise GraphjitError(f"sample_weight for output {name!r} must have shape "
                                    f"({len(y)},), one weight per sample; got {sw.shape}")
            if not np.isfinite(sw).all():
                raise GraphjitError(f"sample_weight for output {name!r} holds NaN or inf")
            weights.append(np.ascontiguousarray(sw))
        return weights

    def _array_batches(self, x: Any, y: Any, sample_weight: Any, class_weight: Any,
                       batch_size: int, shuffle: bool, steps: int | None,
                       what: str) -> data_module.ArrayBatches:
        xs, ys = self._prepare_inputs(x, what), self._prepare_targets(y, _target_name(what))
        sws = self._prepare_sample_weights(sample_weight, class_weight, ys)
        batches = data_module.ArrayBatches(xs, ys, sws, batch_size, shuffle, steps)
        if batches.count == 0:
            raise GraphjitError(f"{what} holds 0 samples: there is nothing to train or evaluate "
                                "on")
        return batches

    def _batch_converter(self, class_weight: Any, what: str, needs_targets: bool) -> Callable:
        """Checks and casts one (x, y, sample_weight) batch from a generator or Sequence."""

        def convert(batch: Any) -> tuple:
            x, y, sw = data_module.unpack(batch, what)
            xs = self._prepare_inputs(x, f"a batch of {what}")
            if not needs_targets:
                return xs, None, None
            ys = self._prepare_targets(y, f"the targets of a batch of {what}")
            sws = self._prepare_sample_weights(sw, class_weight, ys)
            data_module.common_length(xs + ys + (sws or []),
                                      [f"x[{i}]" for i in range(len(xs))]
                                      + [f"y[{i}]" for i in range(len(ys))]
                                      + [f"sample_weight[{i}]" for i in range(len(sws or []))])
            return xs, ys, sws

        return convert

    def _batches(self, x: Any, y: Any, sample_weight: Any, class_weight: Any, batch_size: Any,
                 shuffle: bool, steps: int | None, what: str, needs_targets: bool = True) -> Any:
        """A batch source for arrays, a generator or a Sequence, with every argument checked."""
        if data_module.is_batch_source(x):
            if y is not None:
                raise GraphjitError(f"{what} is a generator or Sequence, which yields the "
                                    "targets itself: do not pass y")
            if batch_size is not None:
                raise GraphjitError(f"{what} is a generator or Sequence, which makes its own "
                                    "batches: do not pass batch_size")
            if sample_weight is not None:
                raise GraphjitError(f"{what} is a generator or Sequence: yield (x, y, "
                                    "sample_weight) batches instead of passing sample_weight")
            return data_module.SourceBatches(
                x, steps, shuffle, what, self._batch_converter(class_weight, what,
                                                               needs_targets))
        size = data_module.check_batch_size(batch_size)
        if not needs_targets:
            xs = self._prepare_inputs(x, what)
            return data_module.ArrayBatches(xs, None, None, size, False, steps)
        return self._array_batches(x, y, sample_weight, class_weight, size, shuffle, steps, what)

    # -------------------------------------------------------------- fit / evaluate / predict
    def fit(self, x: Any = None, y: Any = None, batch_size: int | None = None, epochs: int = 1,
            verbose: int | str = "auto", callbacks: Sequence[Any] | None = None,
            validation_split: float = 0.0, validation_data: Any = None, shuffle: bool = True,
            class_weight: dict | None = None, sample_weight: Any = None,
            initial_epoch: int = 0, steps_per_epoch: int | None = None,
            validation_steps: int | None = None, validation_batch_size: int | None = None,
            validation_freq: int | Sequence[int] = 1, *, jit: bool | None = None,
            seed: int | None = None, distribute: Any = None) -> Any:
        """Train for `epochs` (Keras' signature and defaults); every step is one compiled graph
        (or eager with `jit=False`). `seed` fixes the shuffling and the Dropout keys.
        `distribute`: a data-parallel strategy (`gj.distribute.DaskDataParallel(client)`) whose
        replicas each run the step on a shard of every batch, gradients averaged between them.
        Returns the `History` callback (also `model.history`)."""
        from . import callbacks as callbacks_module

        self._require_compiled()
        verbose = auto_verbose(verbose)
        use_jit = self._use_jit(jit)
        epochs = data_module.check_count(epochs, "epochs", allow_none=False)
        initial_epoch = data_module.check_count(initial_epoch, "initial_epoch",
                                                allow_none=False)
        steps_per_epoch = data_module.check_count(steps_per_epoch, "steps_per_epoch", 1)
        validation_steps = data_module.check_count(validation_steps, "validation_steps", 1)
        _check_fraction(validation_split)
        if validation_split and data_module.is_batch_source(x):
            raise GraphjitError("validation_split needs arrays; with a generator or Sequence "
                                "pass validation_data instead")
        if validation_split and validation_data is None:
            x, y, sample_weight, validation_data = _split_off_validation(
                self, x, y, sample_weight, validation_split)
        train = self._batches(x, y, sample_weight, class_weight, batch_size, shuffle,
                              steps_per_epoch, "x")
        validation = None
        if validation_data is not None:
            validation = self._validation_batches(validation_data, validation_batch_size or
                                                  batch_size, validation_steps)
        validate_on = _validation_epochs(validation_freq, epochs)

        cbs = callbacks_module.CallbackList(callbacks, add_history=True,
                                            add_progbar=verbose != 0, model=self,
                                            verbose=verbose, epochs=epochs, steps=train.steps)
        self.stop_training = False
        run = _TrainingRun(self, use_jit, seed, distribute)
        logs: dict[str, float] = {}
        self.__dict__.pop("_resume_epoch", None)
        cbs.on_train_begin()
        # BackupAndRestore resumes after the last epoch it backed up
        initial_epoch = self.__dict__.pop("_resume_epoch", initial_epoch)
        run.reload()  # on_train_begin may have restored weights and optimizer state
        try:
            for epoch in range(initial_epoch, epochs):
                run.reload()  # callbacks may have set weights or the learning rate
                cbs.on_epoch_begin(epoch)
                totals = run.epoch(train, cbs)
                if totals.steps == 0:
                    _warn_ran_out(epoch)
                    break
                self.set_params(run.params, run.state)
                self._merge_opt_state(run.opt_state)
                logs = totals.logs()
                if validation is not None and (epoch + 1) in validate_on:
                    val_logs = self._evaluate_batches(validation, cbs, use_jit, run.rng)
                    logs.update({f"val_{k}": v for k, v in val_logs.items()})
                cbs.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
        finally:  # an interrupted fit keeps what it learned
            self.set_params(run.params, run.state)
            self._merge_opt_state(run.opt_state)
            train.close()
            if validation is not None:
                validation.close()
        cbs.on_train_end(logs)
        return cbs.history

    def _use_jit(self, jit: bool | None) -> bool:
        if jit is None:
            return not getattr(self, "_run_eagerly", False)
        return bool(jit)

    def _validation_batches(self, validation_data: Any, batch_size: Any,
                            steps: int | None) -> Any:
        if data_module.is_batch_source(validation_data):
            return self._batches(validation_data, None, None, None, None, False, steps,
                                 "validation_data")
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise GraphjitError("validation_data must be a tuple (x_val, y_val) or (x_val, "
                                "y_val, sample_weight_val), a generator or a Sequence")
        vx, vy, vsw = (*validation_data, None)[:3]
        return self._batches(vx, vy, vsw, None, batch_size, False, steps, "validation_data")

    def _initial_key(self, rng: np.random.Generator) -> Any:
        if not any(layer.uses_rng for layer in self.layers):
            return None
        from graphjit import random

        return random.key(int(rng.integers(2 ** 31 - 1)))

    def _evaluate_batches(self, batches: Any, cbs: Any, use_jit: bool,
                          rng: np.random.Generator | None = None) -> dict[str, float]:
        step = self.step_function("eval", use_jit)
        params, state = self.params, self.state
        totals = _Totals(self._compiled)
        cbs.on_test_begin()
        for batch, (xs, ys, sws) in enumerate(batches.epoch(rng or np.random.default_rng(0))):
            cbs.on_test_batch_begin(batch)
            if sws is None:
                loss, sums = step(params, state, xs, ys)
            else:
                loss, sums = step(params, state, xs, ys, sws)
            totals.add(len(xs[0]), loss, sums)
            cbs.on_test_batch_end(batch, totals.lazy_logs())
        logs = totals.logs()
        cbs.on_test_end(logs)
        return logs

    def evaluate(self, x: Any = None, y: Any = None, batch_size: int | None = None,
                 verbose: int | str = "auto", sample_weight: Any = None,
                 steps: int | None = None, callbacks: Sequence[Any] | None = None,
                 return_dict: bool = False, *, jit: bool | None = None) -> Any:
        """Loss and metrics over the data (Keras' signature): the loss alone when there are no
        metrics, else a list [loss, ...] in log order, or a dict with `return_dict=True`."""
        from . import callbacks as callbacks_module

        self._require_compiled()
        verbose = auto_verbose(verbose)
        steps = data_module.check_count(steps, "steps", 1)
        batches = self._batches(x, y, sample_weight, None, batch_size, False, steps, "x")
        cbs = callbacks_module.CallbackList(callbacks, add_progbar=verbose != 0, model=self,
                                            verbose=verbose, steps=batches.steps, mode="test")
        try:
            logs = self._evaluate_batches(batches, cbs, self._use_jit(jit))
        finally:
            batches.close()
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x: Any, batch_size: int | None = None, verbose: int | str = "auto",
                steps: int | None = None, callbacks: Sequence[Any] | None = None, *,
                jit: bool | None = None) -> Any:
        """The model's outputs on `x` (arrays, a generator or a Sequence), in compiled
        batches (Keras' signature)."""
        from . import callbacks as callbacks_module

        verbose = auto_verbose(verbose)
        steps = data_module.check_count(steps, "steps", 1)
        if data_module.is_batch_source(x):
            batches = self._batches(x, None, None, None, batch_size, False, steps, "x",
                                    needs_targets=False)
        else:
            size = data_module.check_batch_size(batch_size)
            xs = self._prepare_inputs(x)
            batches = data_module.ArrayBatches(xs, None, None, size, False, steps)
        use_jit = self._use_jit(jit)
        step = self.step_function("predict", use_jit) if self._compiled is not None else \
            self._uncompiled_predict(use_jit)
        cbs = callbacks_module.CallbackList(callbacks, add_progbar=verbose != 0, model=self,
                                            verbose=verbose, steps=batches.steps,
                                            mode="predict")
        params, state = self.params, self.state
        chunks: list[list[np.ndarray]] = [[] for _ in self.outputs]
        cbs.on_predict_begin()
        try:
            for batch, (xs, _, _) in enumerate(batches.epoch(np.random.default_rng(0))):
                if len(xs[0]) == 0:
                    continue
                cbs.on_predict_batch_begin(batch)
                outputs = step(params, state, xs)
                for chunk, out in zip(chunks, outputs):
                    chunk.append(np.asarray(out))
                cbs.on_predict_batch_end(batch, {"outputs": outputs})
        finally:
            batches.close()
        cbs.on_predict_end()
        results = [np.concatenate(c, axis=0) if c else
                   np.zeros((0, *(d or 0 for d in t.shape[1:])), t.dtype)
                   for c, t in zip(chunks, self.outputs)]
        return results[0] if self._single_output else results

    def _uncompiled_predict(self, use_jit: bool) -> Callable:
        if "_predict_only" not in self.__dict__:
            def predict_step(params, state, xs):
                return self.apply(params, state, xs, training=False)[0]

            self._predict_only = (predict_step, gj_jit(predict_step))
        return self._predict_only[1] if use_jit else self._predict_only[0]

    def predict_on_batch(self, x: Any) -> Any:
        return self.predict(x, batch_size=max(len(np.asarray(_as_list(x)[0])), 1), verbose=0)

    def train_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None,
                       class_weight: dict | None = None, return_dict: bool = False) -> Any:
        """One training step on this batch; the logs (as `evaluate` returns them)."""
        count = len(np.asarray(_as_list(x if not isinstance(x, dict) else
                                        list(x.values()))[0]))
        history = self.fit(x, y, batch_size=max(count, 1), epochs=1, verbose=0, shuffle=False,
                           sample_weight=sample_weight, class_weight=class_weight)
        logs = {k: v[-1] for k, v in history.history.items()}
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def test_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None,
                      return_dict: bool = False) -> Any:
        count = len(np.asarray(_as_list(x if not isinstance(x, dict) else
                                        list(x.values()))[0]))
        return self.evaluate(x, y, batch_size=max(count, 1), verbose=0,
                             sample_weight=sample_weight, return_dict=return_dict)

    # -------------------------------------------------------------- optimizer state by path
    def _opt_state_for(self, params: Tree) -> Tree:
        """The optimizer state for these trainable weights: each weight's own slots (kept by
        layer and weight name across `trainable` changes), zeros for weights new to it."""
        fresh = self.optimizer.init(params)
        stored = self._opt_state
        fresh["learning_rate"] = np.asarray(self.optimizer.learning_rate, np.float64)
        if stored is None:
            return fresh
        fresh["step"] = np.asarray(stored["step"])
        for slot in self.optimizer.slots:
            kept = stored.get(slot, {})
            for layer_name, weights in fresh[slot].items():
                for weight_name, zeros in weights.items():
                    value = kept.get(layer_name, {}).get(weight_name)
                    if value is not None and np.shape(value) == np.shape(zeros):
                        weights[weight_name] = value
        return fresh

    def _merge_opt_state(self, opt_state: Tree) -> None:
        if opt_state is None:
            return
        stored = self._opt_state or {}
        merged = {"step": np.asarray(opt_state["step"]),
                  "learning_rate": np.asarray(opt_state.get("learning_rate",
                                                            self.optimizer.learning_rate))}
        for slot in self.optimizer.slots:
            table = {name: dict(weights) for name, weights in stored.get(slot, {}).items()}
            for layer_name, weights in opt_state.get(slot, {}).items():
                table.setdefault(layer_name, {}).update(
                    {k: np.asarray(v) for k, v in weights.items()})
            merged[slot] = table
        self._opt_state = merged

    # -------------------------------------------------------------- weights (Keras' API)
    @property
    def weights(self) -> list[np.ndarray]:
        return [w for layer in self.layers for w in layer.weights]

    @property
    def trainable_weights(self) -> list[np.ndarray]:
        return [w for layer in self.layers for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self) -> list[np.ndarray]:
        return [w for layer in self.layers for w in layer.non_trainable_weights]

    @property
    def trainable(self) -> bool:
        return all(layer.trainable for layer in self.layers)

    @trainable.setter
    def trainable(self, value: bool) -> None:
        for layer in self.layers:
            layer.trainable = bool(value)

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Replace every weight, in `get_weights()` order (layer by layer, Keras' order)."""
        weights = list(weights)
        expected = sum(len(layer.weights) for layer in self.layers)
        if len(weights) != expected:
            raise GraphjitError(f"model {self.name!r} has {expected} weights, got "
                                f"{len(weights)} arrays")
        position = 0
        pending = []
        for layer in self.layers:
            count = len(layer.weights)
            pending.append((layer, weights[position:position + count]))
            position += count
        for layer, chunk in pending:  # check every shape before changing anything
            for value, current in zip(chunk, layer.weights):
                if np.shape(value) != np.shape(current):
                    raise GraphjitError(f"model {self.name!r}, layer {layer.name!r}: a weight of "
                                        f"shape {np.shape(current)} got an array of shape "
                                        f"{np.shape(value)}")
        for layer, chunk in pending:
            if chunk:
                layer.set_weights(chunk)

    def save(self, filepath: str | os.PathLike, overwrite: bool = True) -> None:
        """The whole model in one zip archive (Keras' `.keras`): the architecture as JSON, the
        weights and the optimizer state as .npz. Nothing is pickled; see `gj.models.load_model`."""
        from . import saving

        saving.save_model(self, filepath, overwrite=overwrite)

    def get_config(self) -> dict[str, Any]:
        from . import saving

        return saving.model_config(self)

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: dict | None = None) -> Model:
        from . import saving

        return saving.model_from_config(config, custom_objects)

    def to_json(self, **kwargs: Any) -> str:
        """The architecture (no weights) as a JSON string; `model_from_json` rebuilds it."""
        import json

        return json.dumps(self.get_config(), **kwargs)

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
        """Copies of every weight, layer by layer (each layer's in Keras' order)."""
        return [w for layer in self.layers for w in layer.get_weights()]

    def save_weights(self, path: str | os.PathLike) -> None:
        """Write every weight to an .npz file (keyed by layer position, type and weight name),
        or, for a name ending in `.h5` (`m.weights.h5`), in Keras 3's HDF5 layout (needs
        h5py), which Keras' own `load_weights` reads."""
        self._ensure_built()
        if os.fspath(path).endswith(".h5"):
            from . import saving

            saving.save_keras_weights(self, os.fspath(path))
            return
        with open(os.fspath(path), "wb") as handle:
            np.savez(handle, **{k: np.asarray(v) for k, v in self._weight_entries().items()})

    def load_weights(self, path: str | os.PathLike) -> None:
        """Read weights written by `save_weights` into a model of the same architecture; also
        Keras 3's `.weights.h5` files and the weights of a `.keras` archive (Keras' or ours),
        wherever the shapes agree (h5 needs h5py)."""
        self._ensure_built()
        name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
        if name is not None and (name.endswith(".h5") or name.endswith(".keras")):
            self._load_foreign_weights(name)
            return
        saved = read_npz(path, "weights file")
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

    def _load_foreign_weights(self, path: str) -> None:
        import io

        from . import saving

        if path.endswith(".h5"):
            saving.load_keras_weights(self, path, path)
            return
        files = saving._read_weights_of_archive(path)
        if "model.weights.npz" in files:  # written by graphjit's model.save
            saving.load_archive_weights(self, files, path)
        else:  # a Keras archive
            saving.load_keras_weights(self, io.BytesIO(files["model.weights.h5"]), path)

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
        if sample.ndim < 1:
            raise GraphjitError(f"cannot build Sequential {self.name!r} from a scalar input")
        # integer data feeds an integer input only when the first layer takes ids (Embedding);
        # otherwise (uint8 images...) it is cast to the first layer's float dtype
        first = self._stack[0]
        integer = sample.dtype.kind in "iub" and getattr(first, "accepts_integers", False)
        dtype = _model_dtype(sample.dtype) if integer or sample.dtype.kind not in "iub" else \
            first.dtype
        if dtype.kind == "f" and first.dtype.kind == "f":
            dtype = first.dtype
        self.build((None, *sample.shape[1:]), dtype)



# ---------------------------------------------------------------- helpers

WEIGHT_SUM = "__weight_sum__/"  # per-batch sums of sample weights, for weighted metrics


class _TrainingRun:
    """The loop state of one `fit`: weights, optimizer state, random key and batch order."""

    def __init__(self, model: Model, use_jit: bool, seed: int | None, distribute: Any = None):
        self.model = model
        self.step = (model.make_train_function(use_jit) if distribute is None
                     else distribute.train_function(model, use_jit))
        self.rng = np.random.default_rng(seed)
        self.key = model._initial_key(self.rng)
        self.params = self.state = self.opt_state = None
        self.reload()

    def reload(self) -> None:
        """Take the weights, trainable set and optimizer state from the model."""
        model = self.model
        self.params, self.state = model.params, model.state
        self.opt_state = model._opt_state_for(self.params)
        self._learning_rate = float(model.optimizer.learning_rate)

    def _next_key(self) -> Any:
        if self.key is None:
            return None
        self.key, step_key = _split_keys(self.key, 2)
        return step_key

    def _sync_learning_rate(self) -> None:
        # the learning rate is an input of the compiled step: changing it never recompiles
        current = float(self.model.optimizer.learning_rate)
        if current != self._learning_rate:
            self._learning_rate = current
            self.opt_state = dict(self.opt_state, learning_rate=np.asarray(current, np.float64))

    def epoch(self, batches: Any, cbs: Any) -> _Totals:
        totals = _Totals(self.model._compiled)
        for batch, (xs, ys, sws) in enumerate(batches.epoch(self.rng)):
            cbs.on_train_batch_begin(batch)
            self._sync_learning_rate()
            args = (self.params, self.opt_state, self.state, xs, ys, self._next_key())
            if sws is not None:
                args += (sws,)
            self.params, opt_state, self.state, loss, sums = self.step(*args)
            # 0-d results come back as NumPy scalars: keep the step count an array
            self.opt_state = optimizers_module.tree_map(np.asarray, opt_state)
            totals.add(len(xs[0]), loss, sums)
            cbs.on_train_batch_end(batch, totals.lazy_logs())
            if self.model.stop_training:
                break
        return totals


def _split_off_validation(model: Model, x: Any, y: Any, sample_weight: Any,
                          fraction: float) -> tuple:
    """Keras' validation_split: the last `fraction` of the samples, taken before shuffling."""
    xs = model._prepare_inputs(x)
    ys = model._prepare_targets(y)
    count = data_module.common_length(xs + ys, [f"x[{i}]" for i in range(len(xs))]
                                      + [f"y[{i}]" for i in range(len(ys))])
    split = int(count * (1.0 - fraction))
    if split == 0 or split == count:
        raise GraphjitError(f"validation_split={fraction} of {count} samples leaves "
                            f"{split} for training and {count - split} for validation; both "
                            "need at least one")
    sws = None
    if sample_weight is not None:
        sws = model._prepare_sample_weights(sample_weight, None, ys)
    head = (lambda arrays: [a[:split] for a in arrays])
    tail = (lambda arrays: [a[split:] for a in arrays])
    validation = (tail(xs), tail(ys), None if sws is None else tail(sws))
    return head(xs), head(ys), None if sws is None else head(sws), validation


def _check_fraction(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or \
            not 0.0 <= float(value) < 1.0:
        raise GraphjitError(f"validation_split must be a fraction in [0, 1), got {value!r}")


def _validation_epochs(freq: Any, epochs: int) -> set[int]:
    """The 1-based epochs after which to validate (Keras' validation_freq)."""
    if isinstance(freq, (int, np.integer)) and not isinstance(freq, bool):
        if freq < 1:
            raise GraphjitError(f"validation_freq must be >= 1, got {freq}")
        return set(range(freq, epochs + 1, int(freq)))
    if isinstance(freq, (list, tuple, set, range)):
        return {int(e) for e in freq}
    raise GraphjitError(f"validation_freq must be an integer or a list of epochs, got {freq!r}")


def _warn_ran_out(epoch: int) -> None:
    import warnings

    warnings.warn(f"the input ran out of data at epoch {epoch + 1}; training stops. A generator "
                  "is iterated across epochs: make it yield at least steps_per_epoch * epochs "
                  "batches, or pass a Sequence-style object", RuntimeWarning, stacklevel=3)


def _target_name(what: str) -> str:
    return "y" if what == "x" else f"the targets of {what}"


class _LazyLogs(Mapping):
    """A batch's running logs, read back from the step's results only when looked at."""

    def __init__(self, totals: _Totals):
        self._totals = totals
        self._logs: dict[str, float] | None = None

    def _get(self) -> dict[str, float]:
        if self._logs is None:
            self._logs = self._totals.logs()
        return self._logs

    def __getitem__(self, key: str) -> float:
        return self._get()[key]

    def __iter__(self):
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __repr__(self) -> str:
        return repr(self._get())


class _Totals:
    """Running sums of the loss (weighted by batch size, as Keras' loss tracker) and of every
    logged per-sample value. Results of the steps are kept as returned and summed on the host
    only when the logs are read."""

    def __init__(self, compiled: dict[str, Any] | None = None) -> None:
        self.samples = 0
        self.steps = 0
        self.loss = 0.0
        self.sums: dict[str, float] = {}
        self._pending: list[tuple[int, Any, dict[str, Any]]] = []

    def add(self, count: int, loss: Any, sums: dict[str, Any]) -> None:
        self.steps += 1
        self._pending.append((count, loss, sums))

    def _fold(self) -> None:
        for count, loss, sums in self._pending:
            self.samples += count
            self.loss += float(loss) * count
            for name, value in sums.items():
                self.sums[name] = self.sums.get(name, 0.0) + float(value)
        self._pending = []

    def lazy_logs(self) -> _LazyLogs:
        return _LazyLogs(self)

    def logs(self) -> dict[str, float]:
        self._fold()
        n = max(self.samples, 1)
        logs = {"loss": self.loss / n}
        for name, value in self.sums.items():
            if name.startswith(WEIGHT_SUM):
                continue
            weights = self.sums.get(WEIGHT_SUM + name)
            logs[name] = value / weights if weights else value / n
        return logs


def _per_sample(values: Any) -> Any:
    """One value per sample: the mean over any axes after the batch axis."""
    if values.ndim <= 1:
        return values
    return np.mean(values, axis=tuple(range(1, values.ndim)))


def _named_call(fn: Callable, target: Any, output: Any, what: str) -> Any:
    try:
        return fn(target, output)
    except GraphjitError as exc:
        raise type(exc)(f"{what} (targets of shape {tuple(target.shape)}, outputs of shape "
                        f"{tuple(output.shape)}): {exc}") from None


def _model_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.kind == "f":
        return np.dtype(np.float32)
    if dtype.kind in "iub":
        return np.dtype(np.int64)
    raise GraphjitError(f"cannot feed arrays of dtype {dtype} to a model")


def _describe_shape(shape: tuple) -> str:
    return "(" + ", ".join("batch" if i == 0 else str(d) for i, d in enumerate(shape)) + \
        ("," if len(shape) == 1 else "") + ")"


def _as_input_array(value: Any, tensor: SymbolicTensor, what: str,
                    model_name: str) -> np.ndarray:
    """`value` checked against the model input's shape and cast to its dtype (so uint8 images
    feed a float32 model, and integer ids an Embedding)."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise GraphjitError(f"{what} has dtype {array.dtype}; a model takes numeric arrays")
    expected = tensor.shape
    if array.ndim != len(expected) or any(
            d is not None and d != got for d, got in zip(expected[1:], array.shape[1:])):
        hint = ""
        if array.ndim == len(expected) - 1:
            hint = " (one sample? add the batch axis: x[None])"
        raise GraphjitError(f"input {tensor.name!r} of model {model_name!r} expects arrays of "
                            f"shape {_describe_shape(expected)}, got {what} of shape "
                            f"{array.shape}{hint}")
    dtype = tensor.dtype
    if not is_supported(dtype):  # Input(dtype="uint8"): the step takes the compiled form
        dtype = np.dtype(np.bool_) if dtype.kind == "b" else _model_dtype(dtype)
    target = dtype if dtype.kind == "f" or array.dtype.kind == dtype.kind else \
        _model_dtype(array.dtype)
    if dtype.kind in "iu" and array.dtype.kind == "f":
        raise GraphjitError(f"input {tensor.name!r} of model {model_name!r} takes integers "
                            f"({dtype}), got {what} of dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=target)


def _as_target_array(value: Any, what: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise GraphjitError(f"{what} has dtype {array.dtype}; targets must be numeric arrays")
    if array.ndim == 0:
        raise GraphjitError(f"{what} is a scalar; targets need one row per sample")
    if array.dtype.kind == "f":
        return np.ascontiguousarray(array, dtype=np.float32)
    return np.ascontiguousarray(array, dtype=_model_dtype(array.dtype))


def _shapes_match(got: tuple, expected: tuple) -> bool:
    return len(got) == len(expected) and all(e is None or e == g for g, e in zip(got, expected))


def _check_target(y: np.ndarray, output: SymbolicTensor, loss: losses_module.Loss,
                  name: str) -> np.ndarray:
    """Keras' checks of targets against the output and the loss, made on the host before the
    step traces: sparse labels in range, one-hot vs integer labels, matching shapes."""
    out = output.shape[1:]
    where = f"targets for output {name!r} (shape {_describe_shape(output.shape)}, loss " \
            f"{loss.name!r})"
    if isinstance(loss, losses_module.SparseCategoricalCrossentropy):
        classes = out[-1] if out else None
        # Keras takes (batch, ...) ids, or (batch, ..., 1): a trailing axis of one is dropped
        sparse = _shapes_match(y.shape[1:], out[:-1]) or (
            _shapes_match(y.shape[1:], (*out[:-1], 1)) and classes != 1)
        if not sparse:
            if _shapes_match(y.shape[1:], out):
                raise GraphjitError(f"{where} look one-hot (shape {y.shape}): the sparse loss "
                                    "takes integer class ids; use "
                                    "loss='categorical_crossentropy', or pass y.argmax(-1)")
            raise GraphjitError(f"{where} must be integer class ids of shape "
                                f"{_describe_shape((None, *out[:-1]))}, got shape {y.shape}")
        if y.dtype.kind == "f":
            if y.size and (not np.isfinite(y).all() or (y != np.round(y)).any()):
                raise GraphjitError(f"{where} must be integer class ids, got non-integer "
                                    "values")
            y = y.astype(np.int64)
        if y.size and classes is not None:
            low, high = int(y.min()), int(y.max())
            if low < 0 or high >= classes:
                bad = low if low < 0 else high
                raise GraphjitError(f"{where}: label {bad} is out of range; the output has "
                                    f"{classes} classes, so labels must be in [0, {classes})")
        return y
    if isinstance(loss, losses_module.CategoricalCrossentropy):
        if not _shapes_match(y.shape[1:], out):
            if _shapes_match(y.shape[1:], out[:-1]) and y.dtype.kind in "iu":
                raise GraphjitError(f"{where} are integer class ids (shape {y.shape}); this loss "
                                    "takes one-hot targets: use "
                                    "loss='sparse_categorical_crossentropy'")
            raise GraphjitError(f"{where} must have shape {_describe_shape(output.shape)}, got "
                                f"{y.shape}")
        return y
    if type(loss) in (losses_module.MeanSquaredError, losses_module.MeanAbsoluteError,
                      losses_module.BinaryCrossentropy):
        if _shapes_match(y.shape[1:], out):
            return y
        if out == (1,) and y.ndim == 1:
            return y.reshape(-1, 1)  # Keras expands (batch,) targets of a one-unit output
        raise GraphjitError(f"{where} must have shape {_describe_shape(output.shape)}, got "
                            f"{y.shape}")
    return y


def _class_weights(class_weight: Any, y: np.ndarray) -> np.ndarray:
    """Keras' class_weight: each sample weighted by its class (one-hot targets by argmax);
    classes missing from the dict weigh 1."""
    if not isinstance(class_weight, dict):
        raise GraphjitError(f"class_weight must be a dict {{class: weight}}, got "
                            f"{type(class_weight).__name__}")
    try:
        table = {int(k): float(v) for k, v in class_weight.items()}
    except (TypeError, ValueError):
        raise GraphjitError("class_weight keys must be class ids (integers) and values "
                            "numbers") from None
    labels = y
    if labels.ndim > 1:
        labels = labels.argmax(-1) if labels.shape[-1] != 1 else labels[..., 0]
    if labels.ndim != 1:
        raise GraphjitError(f"class_weight needs one label per sample, got targets of shape "
                            f"{y.shape}")
    labels = np.round(labels).astype(np.int64)
    weights = np.ones(len(labels), np.float32)
    for label, weight in table.items():
        weights[labels == label] = weight
    return weights


def _weight_mismatches(saved: dict[str, np.ndarray], expected: dict[str, Any]) -> list[str]:
    problems = [f"missing from the file: {k}" for k in expected if k not in saved]
    problems += [f"in the file but not in this model: {k}" for k in saved if k not in expected]
    for key in expected.keys() & saved.keys():
        if tuple(saved[key].shape) != tuple(np.shape(expected[key])):
            problems.append(f"{key}: the file has shape {tuple(saved[key].shape)}, this model "
                            f"{tuple(np.shape(expected[key]))}")
    return problems


def read_npz(path: str | os.PathLike, what: str) -> dict[str, np.ndarray]:
    """Every array of an .npz archive, refusing pickled objects, with errors that say what the
    file was expected to be."""
    name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else repr(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise GraphjitError(f"no {what} at {name!r}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise GraphjitError(f"{name!r} is not a {what} written by graphjit (np.load: "
                            f"{exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise GraphjitError(f"{name!r} is a single .npy array, not a {what} (.npz archive "
                            "written by save_weights)")
    try:
        with archive:
            return {k: archive[k] for k in archive.files}
    except ValueError as exc:  # object arrays: graphjit never writes them, so refuse to unpickle
        raise GraphjitError(f"{name!r} holds pickled Python objects, which graphjit never writes "
                            f"and will not load ({exc})") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as exc:
        raise GraphjitError(f"{name!r} is a damaged {what}: {exc}") from None


def model_from_json(json_string: str, custom_objects: dict | None = None) -> Model:
    """The architecture `model.to_json()` wrote, with freshly initialised weights."""
    import json

    from . import saving

    try:
        config = json.loads(json_string)
    except (TypeError, ValueError) as exc:
        raise saving.SavingError(f"model_from_json needs the JSON of model.to_json(): {exc}") \
            from None
    return saving.model_from_config(config, custom_objects)


def clone_model(model: Model, custom_objects: dict | None = None) -> Model:
    """A model of the same architecture with new layers and freshly initialised weights (Keras'
    `clone_model`); copy the weights with `clone.set_weights(model.get_weights())`."""
    from . import saving

    return saving.model_from_config(model.get_config(), custom_objects)


def load_model(filepath: str | os.PathLike, custom_objects: dict | None = None,
               compile: bool = True) -> Model:
    """Load a model written by `model.save` (architecture, weights, optimizer state)."""
    from . import saving

    return saving.load_model(filepath, custom_objects=custom_objects, compile=compile)


__all__ = ["Model", "Sequential", "History", "load_model", "model_from_json", "clone_model"]
