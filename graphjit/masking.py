"""Keras-style masks: `Embedding(mask_zero=True)` (or `Masking`) marks padded timesteps, and the
layers after it (recurrent layers, 1-D pooling, attention) skip them.

Keras hangs the mask on the tensor (`x._keras_mask`). Our values are NumPy arrays or tracers, so
the mask lives beside them in a table keyed by the value's identity (a weak reference, so an entry
goes when its value does). `Layer.__call__` is wrapped once (`install`) so that every layer
  - finds the mask of its input and exposes it to `call` as `self.input_mask`,
  - gives its output a mask: its own `compute_mask(inputs, mask)` when it defines one, otherwise
    the input's mask unchanged when the layer `supports_masking` (elementwise layers, Dense...).
Masks are boolean arrays of shape (batch, timesteps) and trace like any other value.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

_MASKS: dict[int, tuple[weakref.ref, Any]] = {}


def _forget(key: int) -> Callable[[weakref.ref], None]:
    def callback(ref: weakref.ref) -> None:
        entry = _MASKS.get(key)
        if entry is not None and entry[0] is ref:
            del _MASKS[key]
    return callback


def set_mask(value: Any, mask: Any) -> None:
    """Attach `mask` (or None, to clear) to `value`."""
    key = id(value)
    if mask is None:
        _MASKS.pop(key, None)
        return
    try:
        ref = weakref.ref(value, _forget(key))
    except TypeError:  # a Python scalar or other value without weak references: no mask
        return
    _MASKS[key] = (ref, mask)


def get_mask(value: Any) -> Any:
    """The mask attached to `value`, or None. A list of values gives a list of masks."""
    if isinstance(value, (list, tuple)):
        masks = [get_mask(v) for v in value]
        return None if all(m is None for m in masks) else masks
    entry = _MASKS.get(id(value))
    if entry is None or entry[0]() is not value:
        return None
    return entry[1]


def _mask_fits(output: Any, mask: Any) -> bool:
    shape = getattr(output, "shape", None)
    mask_shape = getattr(mask, "shape", None)
    return (shape is not None and mask_shape is not None and len(shape) > len(mask_shape)
            and tuple(shape[:len(mask_shape)]) == tuple(mask_shape))


def install(layer_class: type) -> None:
    """Wrap `layer_class.__call__` (the base Layer's) with mask lookup and propagation."""
    original = layer_class.__call__
    if getattr(original, "_propagates_masks", False):
        return

    def __call__(self, inputs, *args, **kwargs):
        from .layers import _is_symbolic

        if _is_symbolic(inputs):
            return original(self, inputs, *args, **kwargs)
        mask = kwargs.pop("mask", None)
        if mask is None:
            mask = get_mask(inputs)
        previous = self.__dict__.get("input_mask")
        self.input_mask = mask
        try:
            outputs = original(self, inputs, *args, **kwargs)
        finally:
            self.input_mask = previous
        compute_mask = getattr(self, "compute_mask", None)
        if compute_mask is not None:
            out_mask = compute_mask(inputs, mask)
        elif getattr(self, "supports_masking", False) and not isinstance(mask, list):
            out_mask = mask if _mask_fits(outputs, mask) else None
        else:
            out_mask = None
        if isinstance(outputs, (list, tuple)):
            masks = out_mask if isinstance(out_mask, (list, tuple)) else [out_mask] + [None] * (
                len(outputs) - 1)
            for output, output_mask in zip(outputs, masks):
                set_mask(output, output_mask)
        elif out_mask is not None:
            set_mask(outputs, out_mask)
        return outputs

    __call__._propagates_masks = True  # type: ignore[attr-defined]
    __call__.__doc__ = original.__doc__
    layer_class.__call__ = __call__


__all__ = ["set_mask", "get_mask", "install"]
