"""Whole-model saving: `model.save("m.keras")` and `load_model("m.keras")`, Keras 3's layout.

The archive is a zip of
- `config.json`: the architecture (each layer's class name and `get_config()`, the graph of layer
  calls) and the compile arguments (optimizer config, losses and metrics by name);
- `model.weights.npz`: every weight, keyed `layer name/params|state/weight name`;
- `optimizer.npz`: the optimizer's state, keyed `slot/layer name/weight name` (absent before
  the first `fit`);
- `metadata.json`: format and graphjit versions.

Nothing is pickled, and loading never unpickles (`allow_pickle=False`). A `Lambda` layer is stored
as its traced IR (compiler/serialize.py), not as bytecode: it loads without its Python source and,
inside a model's compiled step, inlines into the graph like any other layer. Layers are rebuilt
by registered class name (`graphjit.layers.register`; graphjit's own layers register themselves).
"""
from __future__ import annotations

import importlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np

from graphjit.compiler import serialize
from graphjit.compiler.errors import GraphjitError

from . import layers as layers_module
from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module

FORMAT = "graphjit.keras"
VERSION = 1
# modules whose layers register themselves on import: imported when a class name is unknown
LAYER_MODULES = ("graphjit.layers", "graphjit.convolution", "graphjit.recurrent",
                 "graphjit.attention", "graphjit.preprocessing")
# a Lambda is traced at two batch sizes unlikely to be any other dimension of the model, to check
# that its trace depends on the batch size only through that one dimension
BATCH_PROBES = (1009, 1013)

register_keras_serializable = layers_module.register


class SavingError(GraphjitError):
    """A model that cannot be saved, or an archive that cannot be loaded."""


# ---------------------------------------------------------------- Lambda as traced IR


class SavedFunction:
    """A function of arrays stored as IR traced at batch size `probe`: called on arrays it runs
    the reference interpreter; called on tracers it inlines its nodes into the caller's trace."""

    def __init__(self, graph: Any, probe: int, input_specs: list[tuple[tuple, str]],
                 list_input: bool, name: str = "lambda"):
        self.graph, self.probe = graph, probe
        self.input_specs, self.list_input = input_specs, list_input
        self.__name__ = name
        self._by_batch: dict[int, Any] = {probe: graph}

    def _graph_for(self, batch: int) -> Any:
        if batch not in self._by_batch:
            self._by_batch[batch] = serialize.with_batch_size(self.graph, self.probe, batch)
        return self._by_batch[batch]

    def __call__(self, inputs: Any) -> Any:
        from graphjit.compiler.interpret import interpret
        from graphjit.frontend.tracer import Tracer, cast_node

        values = list(inputs) if self.list_input else [inputs]
        if len(values) != len(self.input_specs):
            raise SavingError(f"saved Lambda {self.__name__!r} takes {len(self.input_specs)} "
                              f"inputs, got {len(values)}")
        for value, (shape, dtype) in zip(values, self.input_specs):
            if tuple(value.shape[1:]) != tuple(shape):
                raise SavingError(f"saved Lambda {self.__name__!r} takes inputs of shape "
                                  f"(batch, {', '.join(map(str, shape))}), got "
                                  f"{tuple(value.shape)}")
        graph = self._graph_for(int(values[0].shape[0]))
        tracers = [v for v in values if isinstance(v, Tracer)]
        if not tracers:
            arrays = [np.asarray(v, dtype=np.dtype(d)) for v, (_, d) in
                      zip(values, self.input_specs)]
            return interpret(graph, arrays)[0]
        ctx = tracers[0]._ctx
        mapping: dict[int, int] = {}
        params = iter(zip(values, self.input_specs))
        for node_id, node in graph.items():
            if node.op.value == "param":
                value, (_, dtype) = next(params)
                mapping[node_id] = cast_node(ctx, ctx.node_of(value), np.dtype(dtype))
            else:
                mapping[node_id] = ctx.graph.add(node.op, [mapping[a] for a in node.args],
                                                 node.attrs, node.source)
        return Tracer(ctx, mapping[graph.outputs[0]])

    def get_config(self) -> dict[str, Any]:
        return {"ir": serialize.graph_to_json(self.graph), "batch_probe": self.probe,
                "inputs": [{"shape": list(s), "dtype": d} for s, d in self.input_specs],
                "list_input": self.list_input, "name": self.__name__}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SavedFunction:
        graph = serialize.graph_from_json(config["ir"])
        specs = [(tuple(i["shape"]), i["dtype"]) for i in config["inputs"]]
        return cls(graph, int(config["batch_probe"]), specs, bool(config["list_input"]),
                   config.get("name", "lambda"))


def trace_lambda(layer: Any) -> SavedFunction:
    """The Lambda's function as batch-size-independent IR, or a clear refusal."""
    from graphjit.frontend.trace import LeafSpec, trace

    if isinstance(layer.function, SavedFunction):
        return layer.function
    if not layer.built:
        raise SavingError(f"Lambda {layer.name!r} has never been called, so its input shape is "
                          "unknown: build the model before saving it")
    list_input = isinstance(layer.input_shape, list)
    shapes = layer.input_shape if list_input else [layer.input_shape]
    dtypes = layer.input_dtypes if list_input else [layer.input_dtypes[0]]
    specs = [(tuple(s[1:]), np.dtype(d).name) for s, d in zip(shapes, dtypes)]

    def traced_at(batch: int) -> Any:
        leaves = [LeafSpec((batch, *s), np.dtype(d)) for s, d in specs]

        def rebuild(values: list) -> tuple[tuple, dict]:
            return ((values if list_input else values[0]),), {}

        try:
            result = trace(layer.function, leaves, rebuild, layer.name)
        except GraphjitError as exc:
            raise SavingError(f"Lambda {layer.name!r} cannot be saved: tracing its function "
                              f"failed: {exc}") from None
        if len(result.graph.outputs) != 1 or result.writebacks:
            raise SavingError(f"Lambda {layer.name!r} cannot be saved: its function must return "
                              "one array and not modify its input")
        return result.graph

    first, second = (traced_at(p) for p in BATCH_PROBES)
    try:
        polymorphic = serialize.same_program(serialize.with_batch_size(first, *BATCH_PROBES),
                                             second)
    except GraphjitError:  # re-specialised, the trace does not even type-check
        polymorphic = False
    if not polymorphic:
        raise SavingError(
            f"Lambda {layer.name!r} cannot be saved as a graph: its computation depends on the "
            "batch size in a way other than its leading dimension (a constant of batch shape, "
            "a reshape that merges the batch axis...). Write it as a custom Layer registered "
            "with @graphjit.layers.register instead")
    name = getattr(layer.function, "__name__", "lambda").replace("<lambda>", "lambda")
    return SavedFunction(first, BATCH_PROBES[0], specs, list_input, name)


# ---------------------------------------------------------------- configs


def _jsonable(config: Any, where: str) -> Any:
    try:
        return json.loads(json.dumps(config, allow_nan=True))
    except TypeError as exc:
        raise SavingError(f"{where} has a config value that is not JSON ({exc}): give the "
                          "layer a get_config() that returns plain values (names, numbers, "
                          "lists)") from None


def layer_config(layer: Any) -> dict[str, Any]:
    config = layer.get_config()
    if isinstance(layer, layers_module.Lambda):
        config = dict(config, function=trace_lambda(layer).get_config())
    for key, value in config.items():
        if callable(value) and not isinstance(value, type):
            raise SavingError(f"layer {layer.name!r} ({type(layer).__name__}): config entry "
                              f"{key!r} is a Python function ({getattr(value, '__name__', value)})"
                              ", which a saved model cannot hold; use a built-in name, or a "
                              "registered custom layer")
    return {"class_name": layers_module.registered_name(type(layer)),
            "config": _jsonable(config, f"layer {layer.name!r}")}


def _tensor_spec(tensor: Any) -> dict[str, Any]:
    return {"name": tensor.name, "shape": list(tensor.shape[1:]), "dtype": tensor.dtype.name}


def model_config(model: Any) -> dict[str, Any]:
    """The architecture as JSON-able data (Keras' `get_config` of a model)."""
    from .models import Sequential

    if isinstance(model, Sequential):
        built = model._input is not None
        return {"class_name": "Sequential", "config": {
            "name": model.name, "layers": [layer_config(layer) for layer in model.layers],
            "input": _tensor_spec(model._input) if built else None}}
    if type(model).__name__ != "Model" and type(model).__module__ != "graphjit.models":
        raise SavingError(f"cannot save a {type(model).__name__}: save Sequential or "
                          "functional Model(inputs, outputs) models")
    model._ensure_built()
    refs: dict[int, list] = {id(t): ["input", i] for i, t in enumerate(model.inputs)}
    nodes = []
    for position, node in enumerate(model._nodes):
        nodes.append({"layer": node.layer.name, "inputs": [refs[id(t)] for t in node.inputs],
                      "list_input": node.list_input})
        refs[id(node)] = ["node", position]
    return {"class_name": "Functional", "config": {
        "name": model.name, "inputs": [_tensor_spec(t) for t in model.inputs],
        "layers": [layer_config(layer) for layer in model.layers], "nodes": nodes,
        "outputs": [refs[id(t)] for t in model.outputs],
        "single_output": model._single_output}}


def _layer_class(name: str, custom_objects: dict | None) -> type:
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    try:
        return layers_module.get_registered(name)
    except GraphjitError:
        for module in LAYER_MODULES:  # graphjit's other layer families register on import
            try:
                importlib.import_module(module)
            except ImportError:
                continue
        return layers_module.get_registered(name)


def layer_from_config(record: dict[str, Any], custom_objects: dict | None = None) -> Any:
    cls = _layer_class(record["class_name"], custom_objects)
    config = dict(record["config"])
    if cls is layers_module.Lambda:
        config["function"] = SavedFunction.from_config(config["function"])
    try:
        return cls.from_config(config)
    except GraphjitError:
        raise
    except Exception as exc:
        raise SavingError(f"layer {config.get('name')!r} ({record['class_name']}) could not be "
                          f"rebuilt from its config: {type(exc).__name__}: {exc}. Its "
                          "get_config() must return its constructor's arguments") from None


def model_from_config(config: dict[str, Any], custom_objects: dict | None = None) -> Any:
    """Rebuild the architecture (fresh weights) from `model_config`'s data."""
    from .layers import Input
    from .models import Model, Sequential

    kind, body = config["class_name"], config["config"]
    layers = [layer_from_config(r, custom_objects) for r in body["layers"]]
    if kind == "Sequential":
        model = Sequential(name=body["name"])
        if body.get("input") is not None:
            spec = body["input"]
            model.add(Input(tuple(spec["shape"]), dtype=spec["dtype"], name=spec["name"]))
        for layer in layers:
            model.add(layer)
        return model
    if kind != "Functional":
        raise SavingError(f"unknown model class {kind!r} in the archive")
    by_name = {layer.name: layer for layer in layers}
    inputs = [Input(tuple(s["shape"]), dtype=s["dtype"], name=s["name"]) for s in body["inputs"]]
    tensors: list = []

    def resolve(ref: list) -> Any:
        return inputs[ref[1]] if ref[0] == "input" else tensors[ref[1]]

    # A layer with several outputs (an RNN with return_state=True) records one node for itself
    # and one selector node per output; called again here it makes fresh selectors, which stand
    # in for the saved ones (same names) when their nodes come up.
    made_by_call: dict[str, Any] = {}
    for node in body["nodes"]:
        if node["layer"] in made_by_call:
            tensors.append(made_by_call.pop(node["layer"]))
            continue
        args = [resolve(r) for r in node["inputs"]]
        result = by_name[node["layer"]](args if node["list_input"] else args[0])
        if isinstance(result, list):
            made_by_call.update({t.layer.name: t for t in result})
            result = result[0].inputs[0]  # the node of the layer itself
        tensors.append(result)
    outputs = [resolve(r) for r in body["outputs"]]
    return Model(inputs, outputs[0] if body["single_output"] else outputs, name=body["name"])


# ---------------------------------------------------------------- compile arguments


def _function_name(fn: Any) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def _loss_config(loss: Any) -> Any:
    if isinstance(loss, str):
        return loss
    if isinstance(loss, losses_module.FunctionLoss):
        return {"function": _function_name(loss.function)}
    if isinstance(loss, losses_module.Loss):
        return {"class_name": type(loss).__name__, "config": {"from_logits": loss.from_logits}}
    if callable(loss):
        return {"function": _function_name(loss)}
    raise SavingError(f"cannot save the loss {loss!r}")


def _loss_from_config(data: Any, custom_objects: dict) -> Any:
    if isinstance(data, str):
        return data
    if "function" in data:
        return _custom(data["function"], custom_objects, "loss")
    classes = {cls.__name__: cls for cls in losses_module.LOSSES.values()}
    if data["class_name"] not in classes:
        return _custom(data["class_name"], custom_objects, "loss")
    return classes[data["class_name"]](**data.get("config", {}))


def _metric_config(metric: Any) -> Any:
    if isinstance(metric, str):
        return metric
    if isinstance(metric, metrics_module.Metric):
        return metric.name if metric.name in metrics_module.METRICS else \
            {"function": metric.name}
    if callable(metric):
        return {"function": _function_name(metric)}
    raise SavingError(f"cannot save the metric {metric!r}")


def _metric_from_config(data: Any, custom_objects: dict) -> Any:
    return data if isinstance(data, str) else _custom(data["function"], custom_objects, "metric")


def _custom(name: str, custom_objects: dict, what: str) -> Any:
    if name not in custom_objects:
        raise SavingError(f"the saved model was compiled with the custom {what} {name!r}: pass "
                          f"load_model(..., custom_objects={{{name!r}: fn}}), or "
                          "compile=False")
    return custom_objects[name]


def _tree(value: Any, leaf: Callable) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):
        return {"dict": {k: _tree(v, leaf) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return {"list": [_tree(v, leaf) for v in value]}
    return {"leaf": leaf(value)}


def _untree(data: Any, leaf: Callable) -> Any:
    if data is None:
        return None
    if "dict" in data:
        return {k: _untree(v, leaf) for k, v in data["dict"].items()}
    if "list" in data:
        return [_untree(v, leaf) for v in data["list"]]
    return leaf(data["leaf"])


def compile_config(model: Any) -> dict[str, Any] | None:
    args = getattr(model, "_compile_config", None)
    if model._compiled is None or args is None:
        return None
    return {"optimizer": optimizers_module.serialize(model.optimizer),
            "loss": _tree(args["loss"], _loss_config),
            "loss_weights": _tree(args["loss_weights"], float),
            "metrics": _tree(args["metrics"], _metric_config),
            "weighted_metrics": _tree(args["weighted_metrics"], _metric_config)}


def compile_from_config(model: Any, config: dict[str, Any], custom_objects: dict) -> None:
    model.compile(optimizer=optimizers_module.deserialize(config["optimizer"]),
                  loss=_untree(config["loss"], lambda d: _loss_from_config(d, custom_objects)),
                  loss_weights=_untree(config["loss_weights"], float),
                  metrics=_untree(config["metrics"],
                                  lambda d: _metric_from_config(d, custom_objects)),
                  weighted_metrics=_untree(config["weighted_metrics"],
                                           lambda d: _metric_from_config(d, custom_objects)))


# ---------------------------------------------------------------- weights and optimizer state


def weight_entries(model: Any) -> dict[str, np.ndarray]:
    return {f"{layer.name}/{kind}/{name}": np.asarray(value)
            for layer in model.layers
            for kind, weights in (("params", layer.params), ("state", layer.state))
            for name, value in weights.items()}


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _read_npz_bytes(raw: bytes, what: str, path: str) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise SavingError(f"{path!r}: the {what} inside the archive is damaged or holds pickled "
                          f"objects ({exc})") from None


def set_weight_entries(model: Any, saved: dict[str, np.ndarray], path: str) -> None:
    expected = weight_entries(model)
    problems = [f"missing from the file: {k}" for k in expected if k not in saved]
    problems += [f"in the file but not in this model: {k}" for k in saved if k not in expected]
    problems += [f"{k}: the file has shape {saved[k].shape}, this model {expected[k].shape}"
                 for k in expected.keys() & saved.keys() if saved[k].shape != expected[k].shape]
    if problems:
        raise SavingError(f"cannot load the weights of {path!r} into model {model.name!r}: the "
                          "architectures differ:\n  " + "\n  ".join(sorted(problems)[:10]))
    for layer in model.layers:
        for kind in ("params", "state"):
            table = getattr(layer, kind)
            for name in table:
                table[name] = saved[f"{layer.name}/{kind}/{name}"].astype(
                    np.asarray(table[name]).dtype)


def optimizer_entries(opt_state: Any) -> dict[str, np.ndarray]:
    if opt_state is None:
        return {}
    entries = {}
    for key, value in opt_state.items():
        if isinstance(value, dict):
            for layer_name, weights in value.items():
                for name, array in weights.items():
                    entries[f"{key}/{layer_name}/{name}"] = np.asarray(array)
        else:
            entries[key] = np.asarray(value)
    return entries


def optimizer_state_from(entries: dict[str, np.ndarray]) -> Any:
    if not entries:
        return None
    state: dict[str, Any] = {}
    for key, value in entries.items():
        # slot/layer name/weight name, where a weight name may hold "/" itself (the weights
        # of wrapped layers: Bidirectional's forward_lstm/kernel)
        parts = key.split("/", 2)
        if len(parts) == 1:
            state[key] = value
        elif len(parts) == 3:
            state.setdefault(parts[0], {}).setdefault(parts[1], {})[parts[2]] = value
        else:
            raise SavingError(f"unexpected optimizer state entry {key!r}")
    return state


def _positions(model: Any) -> dict[str, str]:
    """Layer name -> its position ("000", "001"...): a backup is keyed by position, so it loads
    into an identically built model whose automatic layer names differ."""
    return {layer.name: f"{index:03d}" for index, layer in enumerate(model.layers)}


def _rename_layers(entries: dict[str, np.ndarray], names: dict[str, str],
                   layer_part: int) -> dict[str, np.ndarray]:
    renamed = {}
    for key, value in entries.items():
        parts = key.split("/", layer_part + 1)
        if len(parts) > layer_part + 1:
            parts[layer_part] = names.get(parts[layer_part], parts[layer_part])
        renamed["/".join(parts)] = value
    return renamed


def save_training_state(model: Any, path: str) -> None:
    """The weights and the optimizer state in one .npz (BackupAndRestore), written atomically."""
    positions = _positions(model)
    arrays = {f"weights/{k}": v for k, v in
              _rename_layers(weight_entries(model), positions, 0).items()}
    arrays.update({f"optimizer/{k}": v for k, v in _rename_layers(
        optimizer_entries(model._opt_state), positions, 1).items()})
    temporary = path + ".tmp"
    with open(temporary, "wb") as handle:
        handle.write(_npz_bytes(arrays))
    os.replace(temporary, path)


def restore_training_state(model: Any, path: str) -> None:
    with open(path, "rb") as handle:
        arrays = _read_npz_bytes(handle.read(), "backup", path)
    names = {position: name for name, position in _positions(model).items()}
    weights = {k.removeprefix("weights/"): v for k, v in arrays.items() if k.startswith("weights/")}
    set_weight_entries(model, _rename_layers(weights, names, 0), path)
    optimizer = {k.removeprefix("optimizer/"): v for k, v in arrays.items()
                 if k.startswith("optimizer/")}
    model._opt_state = optimizer_state_from(_rename_layers(optimizer, names, 1))
    if model._opt_state is not None and "learning_rate" in model._opt_state:
        model.optimizer.learning_rate = float(model._opt_state["learning_rate"])


# ---------------------------------------------------------------- Keras' .weights.h5 layout
# Keras 3 stores a Sequential/Functional model's weights as HDF5 groups
# `layers/<snake_case class name>[_<n>]/.../vars/<i>`: layers are numbered per class in
# `model.layers` order (names are not used: they differ between two builds of one model), `i`
# runs over a layer's own variables in `get_weights()` order, and sub-layers nest under the
# attribute that holds them (an RNN's `cell`, Bidirectional's `forward_layer`/`backward_layer`,
# TimeDistributed's `layer`, MultiHeadAttention's `_query_dense`...). h5py is an optional
# dependency (`pip install 'graphjit[h5]'`), imported only here.


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise SavingError("reading or writing Keras .weights.h5 files needs h5py: pip install "
                          "'graphjit[h5]' (or pip install h5py)") from None
    return h5py


def _keras_groups(layer: Any) -> list[tuple[str, list[tuple[str, str]]]]:
    """(sub-path under the layer's group, [(kind, weight name)] in Keras' variable order)."""
    from . import recurrent

    def own(table_owner: Any, prefix: str = "") -> list[tuple[str, str]]:
        return [("params", prefix + k) for k in table_owner.params] + \
            [("state", prefix + k) for k in table_owner.state]

    if isinstance(layer, recurrent.RNN):
        return [("cell", own(layer))]
    if isinstance(layer, recurrent.Bidirectional):
        groups = []
        for attribute, sub in (("forward_layer", layer.forward_layer),
                               ("backward_layer", layer.backward_layer)):
            prefix = f"{sub.name}/"
            for path, names in _keras_groups(sub):
                groups.append((f"{attribute}/{path}".rstrip("/"),
                               [(kind, prefix + name) for kind, name in names]))
        return groups
    if isinstance(layer, recurrent.TimeDistributed):
        return [(f"layer/{path}".rstrip("/"), names) for path, names in _keras_groups(layer.layer)]
    if type(layer).__name__ == "MultiHeadAttention":
        parts = (("_query_dense", "query"), ("_key_dense", "key"), ("_value_dense", "value"),
                 ("_output_dense", "attention_output"))
        return [(attribute, [("params", f"{part}/{w}") for w in ("kernel", "bias")
                             if f"{part}/{w}" in layer.params]) for attribute, part in parts]
    return [("", own(layer))]


def _keras_layer_paths(model: Any) -> list[tuple[Any, str]]:
    counts: dict[str, int] = {}
    paths = []
    for layer in model.layers:
        name = layers_module._snake_case(type(layer).__name__)
        index = counts.get(name, -1) + 1
        counts[name] = index
        paths.append((layer, f"layers/{name}" + (f"_{index}" if index else "")))
    return paths


def _fits(saved_shape: tuple, expected_shape: tuple) -> bool:
    """Equal shapes, or equal up to axes of size one (Keras' Normalization keeps (3,) where
    graphjit keeps the broadcastable (1, 3))."""
    return saved_shape == expected_shape or (
        tuple(d for d in saved_shape if d != 1) == tuple(d for d in expected_shape if d != 1))


def load_keras_weights(model: Any, source: Any, path: str) -> None:
    """Set every weight from a Keras 3 `.weights.h5` file (or the `model.weights.h5` inside a
    Keras `.keras` archive, given as a file object); all checked before anything changes."""
    h5py = _h5py()
    try:
        handle = h5py.File(source, "r")
    except OSError as exc:
        raise SavingError(f"{path!r} is not an HDF5 weights file ({exc})") from None
    updates: list[tuple[dict, str, np.ndarray]] = []
    problems: list[str] = []
    with handle:
        if "layers" not in handle and "_layer_checkpoint_dependencies" in handle:
            root = "_layer_checkpoint_dependencies"  # files written by Keras 2.13
        else:
            root = "layers"
        for layer, layer_path in _keras_layer_paths(model):
            layer_path = layer_path.replace("layers", root, 1)
            for sub_path, names in _keras_groups(layer):
                if not names:
                    continue
                group_path = f"{layer_path}/{sub_path}/vars" if sub_path else f"{layer_path}/vars"
                group = handle.get(group_path)
                if group is None or len(group) != len(names):
                    found = 0 if group is None else len(group)
                    problems.append(f"layer {layer.name!r} ({type(layer).__name__}): {group_path} "
                                    f"holds {found} weights, this layer has {len(names)}")
                    continue
                for index, (kind, name) in enumerate(names):
                    table = getattr(layer, kind)
                    value = np.asarray(group[str(index)])
                    expected = np.shape(table[name])
                    if not _fits(value.shape, expected):
                        problems.append(f"layer {layer.name!r} weight {name!r}: the file has "
                                        f"shape {value.shape}, this layer {expected}")
                        continue
                    updates.append((table, name, value.reshape(expected).astype(
                        np.asarray(table[name]).dtype)))
    if problems:
        raise SavingError(f"cannot load the Keras weights of {path!r} into model "
                          f"{model.name!r}: the architectures differ:\n  " +
                          "\n  ".join(problems[:10]))
    for table, name, value in updates:
        table[name] = value


def save_keras_weights(model: Any, path: str) -> None:
    """Write every weight in Keras 3's `.weights.h5` layout (readable by Keras'
    `model.load_weights` for the same architecture)."""
    h5py = _h5py()
    temporary = path + ".tmp"
    with h5py.File(temporary, "w") as handle:
        handle.create_group("vars")
        for layer, layer_path in _keras_layer_paths(model):
            handle.create_group(layer_path).create_group("vars")
            for sub_path, names in _keras_groups(layer):
                if not sub_path:
                    group = handle[f"{layer_path}/vars"]
                else:
                    group = handle.require_group(f"{layer_path}/{sub_path}").require_group("vars")
                for index, (kind, name) in enumerate(names):
                    group[str(index)] = np.asarray(getattr(layer, kind)[name])
    os.replace(temporary, path)


# ---------------------------------------------------------------- save / load


def save_model(model: Any, filepath: str | os.PathLike, overwrite: bool = True) -> None:
    """Write `model` as one zip archive (see the module docstring); atomic on the same disk."""
    path = os.fspath(filepath)
    if not overwrite and os.path.exists(path):
        raise SavingError(f"{path!r} exists and overwrite=False")
    config = {"format": FORMAT, "version": VERSION, "model": model_config(model),
              "compile": compile_config(model)}
    from graphjit import __version__

    metadata = {"format": FORMAT, "version": VERSION, "graphjit_version": __version__}
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as raw, zipfile.ZipFile(raw, "w",
                                                              zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("metadata.json", json.dumps(metadata, indent=1))
            archive.writestr("config.json", json.dumps(config, indent=1))
            archive.writestr("model.weights.npz", _npz_bytes(weight_entries(model)))
            entries = optimizer_entries(model._opt_state)
            if entries:
                archive.writestr("optimizer.npz", _npz_bytes(entries))
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _read_archive(path: str) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            missing = {"config.json", "model.weights.npz"} - names
            if missing:
                raise SavingError(f"{path!r} is a zip archive but not a saved graphjit model: "
                                  f"it has no {sorted(missing)}")
            return {name: archive.read(name) for name in names}
    except FileNotFoundError:
        raise SavingError(f"no saved model at {path!r}") from None
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise SavingError(f"{path!r} is not a saved model archive (or it is damaged): "
                          f"{exc}") from None


def _read_weights_of_archive(path: str) -> dict[str, bytes]:
    """The weights file of a `.keras` zip: graphjit's model.weights.npz or Keras'
    model.weights.h5."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            for name in ("model.weights.npz", "model.weights.h5"):
                if name in names:
                    files = {name: archive.read(name)}
                    if "config.json" in names:
                        files["config.json"] = archive.read("config.json")
                    return files
    except FileNotFoundError:
        raise SavingError(f"no saved model at {path!r}") from None
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise SavingError(f"{path!r} is not a .keras archive (or it is damaged): {exc}") \
            from None
    raise SavingError(f"{path!r} is a zip archive without model weights (model.weights.npz "
                      "or model.weights.h5)")


def load_archive_weights(model: Any, files: dict[str, bytes], path: str) -> None:
    """The weights of one of our archives into `model`, matching layers by position (as Keras'
    `load_weights` does), so a second build of the same architecture, whose automatic layer
    names differ, takes them."""
    saved = _read_npz_bytes(files["model.weights.npz"], "weights", path)
    try:
        records = json.loads(files.get("config.json", b"{}"))["model"]["config"]["layers"]
        saved_names = [record["config"]["name"] for record in records]
    except (ValueError, KeyError, TypeError):
        saved_names = []
    if len(saved_names) == len(model.layers):
        current = {old: layer.name for old, layer in zip(saved_names, model.layers)}
        saved = _rename_layers(saved, current, 0)
    set_weight_entries(model, saved, path)


def load_model(filepath: str | os.PathLike, custom_objects: dict | None = None,
               compile: bool = True, safe_mode: bool = True) -> Any:
    """The model `model.save` wrote: architecture, weights and (with `compile`) the compile
    arguments and optimizer state, so training continues where it stopped. `custom_objects`
    maps names to custom layer classes, losses and metrics not registered globally."""
    path = os.fspath(filepath)
    files = _read_archive(path)
    try:
        config = json.loads(files["config.json"])
    except (ValueError, UnicodeDecodeError) as exc:
        raise SavingError(f"{path!r}: config.json is not valid JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise SavingError(f"{path!r} was not written by graphjit's model.save")
    if config.get("version") != VERSION:
        raise SavingError(f"{path!r} has format version {config.get('version')}; this graphjit "
                          f"reads version {VERSION}")
    custom_objects = dict(custom_objects or {})
    try:
        model = model_from_config(config["model"], custom_objects)
    except (KeyError, TypeError, IndexError) as exc:
        raise SavingError(f"{path!r}: the architecture in config.json is damaged "
                          f"({type(exc).__name__}: {exc})") from None
    set_weight_entries(model, _read_npz_bytes(files["model.weights.npz"], "weights", path), path)
    if compile and config.get("compile") is not None:
        compile_from_config(model, config["compile"], custom_objects)
        if "optimizer.npz" in files:
            model._opt_state = optimizer_state_from(
                _read_npz_bytes(files["optimizer.npz"], "optimizer state", path))
            if "learning_rate" in model._opt_state:
                model.optimizer.learning_rate = float(model._opt_state["learning_rate"])
    return model


__all__ = ["save_model", "load_model", "register_keras_serializable", "SavedFunction",
           "model_config", "model_from_config", "SavingError"]
