"""Saved state as plain data plus arrays: files that cannot run code when they are read.

A state tree (dicts, lists, strings, numbers, None, numpy arrays and torch tensors) is split
into a JSON text and a flat ``{name: array}`` mapping (:func:`split_arrays`), which ``np.savez``
or ``torch.save`` store, and which ``np.load(allow_pickle=False)`` and
``torch.load(weights_only=True)`` read back without unpickling any object; :func:`join_arrays`
rebuilds the tree. Nothing else is accepted on either side: a value of another type is an error
naming its path in the tree.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

import numpy as np

from .errors import ConfigError

_ARRAY, _TENSOR, _TUPLE, _FLOAT = "__ndarray__", "__tensor__", "__tuple__", "__float__"


def split_arrays(tree: Any) -> tuple[str, dict[str, np.ndarray]]:
    """``(json_text, arrays)`` for ``tree``; arrays are numpy (tensors are converted and marked)."""
    arrays: dict[str, np.ndarray] = {}

    def walk(v: Any, where: str) -> Any:
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            return int(v)
        if isinstance(v, (float, np.floating)):
            v = float(v)
            return v if math.isfinite(v) else {_FLOAT: repr(v)}
        if isinstance(v, np.bool_):
            return bool(v)
        if isinstance(v, np.ndarray):
            if v.dtype == object:
                raise ConfigError(f"state {where}: object arrays cannot be saved safely")
            name = f"a{len(arrays)}"
            arrays[name] = v
            return {_ARRAY: name}
        if type(v).__module__.startswith("torch") and hasattr(v, "detach"):
            name = f"a{len(arrays)}"
            arrays[name] = v.detach().cpu().numpy()
            return {_TENSOR: name, "dtype": str(v.dtype).removeprefix("torch.")}
        if isinstance(v, Mapping):
            out = {}
            for k, x in v.items():
                if not isinstance(k, str):
                    raise ConfigError(f"state {where}: key {k!r} is not a string")
                out[k] = walk(x, f"{where}.{k}")
            return out
        if isinstance(v, tuple):
            return {_TUPLE: [walk(x, f"{where}[{i}]") for i, x in enumerate(v)]}
        if isinstance(v, list):
            return [walk(x, f"{where}[{i}]") for i, x in enumerate(v)]
        raise ConfigError(f"state {where}: a {type(v).__name__} cannot be saved safely")

    return json.dumps(walk(tree, "$")), arrays


def join_arrays(text: str, arrays: Mapping[str, Any]) -> Any:
    """The tree :func:`split_arrays` split (``arrays`` may hold numpy arrays or tensors)."""
    import torch

    def walk(v: Any) -> Any:
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            if _ARRAY in v:
                a = arrays[v[_ARRAY]]
                return a.numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
            if _TENSOR in v:
                a = arrays[v[_TENSOR]]
                t = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.array(a))
                dtype = getattr(torch, str(v.get("dtype", "float32")), None)
                if not isinstance(dtype, torch.dtype):
                    raise ValueError(f"unknown tensor dtype {v.get('dtype')!r}")
                return t.to(dtype)
            if _TUPLE in v:
                return tuple(walk(x) for x in v[_TUPLE])
            if _FLOAT in v:
                return float(v[_FLOAT])
            return {k: walk(x) for k, x in v.items()}
        return v

    try:
        return walk(json.loads(text))
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"damaged saved state ({type(exc).__name__}: {exc})") from None
