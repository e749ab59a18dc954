"""What a model bundle may hold, checked before anything is built from it.

A model.json comes from a file anyone could have edited, and its numbers size what gets
allocated: ``n_mels`` the mel filters, ``hop_length`` the frames per clip, ``hidden`` the
layers. So every value is checked against a bound here (the feature parameters) or in
``classifier/archs.py`` (``ARCH_OPTIONS``, per architecture), the network is first built
on PyTorch's "meta" device (shapes, no memory) to count its weights, and the shapes in
model.safetensors' header are compared with it before a byte of weights is read. A value
out of bounds, a layer that differs, NaN weights: each is a ModelMismatch (or
ModelBroken) naming what is wrong, never a crash or gigabytes allocated.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

MAX_META_BYTES = 16 << 20
MAX_LABELS = 1_000
MAX_LABEL_LENGTH = 64
MAX_VERSION_LENGTH = 100
MAX_FRAMES = 20_000  # time frames per clip: 30 s at the paper's hop gives 323

# feature_params key -> (type, lowest, highest)
FEATURE_BOUNDS: dict[str, tuple[type, float, float]] = {
    "sample_rate": (int, 4_000, 192_000),
    "clip_seconds": (float, 0.5, 120.0),
    "n_fft": (int, 32, 16_384),
    "hop_length": (int, 16, 16_384),
    "n_mels": (int, 1, 1_024),
}


class SchemaError(ValueError):
    """A model.json value is of the wrong type or out of bounds; the message names it."""


def check_number(name: str, value: Any, kind: type, low: float, high: float) -> None:
    """``value`` is a finite number of ``kind`` from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SchemaError(f"{name} must be a number, not {_shown(value)}")
    if not math.isfinite(value):
        raise SchemaError(f"{name} must be finite, not {value!r}")
    if kind is int and not float(value).is_integer():
        raise SchemaError(f"{name} must be a whole number, not {value!r}")
    if not low <= value <= high:
        raise SchemaError(f"{name} must be from {low:g} to {high:g}, not {value!r}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def _check_text(name: str, value: Any, most: int) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > most:
        raise SchemaError(f"{name} must be a name of 1 to {most} characters, not "
                          f"{_shown(value)}")
    if not value.isprintable():
        raise SchemaError(f"{name} {value!a} holds control or invisible characters")


def check_meta(data: dict[str, Any]) -> None:
    """Raise SchemaError for the first value of a parsed model.json out of its bounds:
    version, labels, feature parameters (and the frames per clip they make), arch name."""
    from classifier.bundle import FORMAT_VERSION

    fmt = data.get("format_version", FORMAT_VERSION)
    if isinstance(fmt, int) and not isinstance(fmt, bool) and fmt > FORMAT_VERSION:
        raise SchemaError(f"format_version {fmt} is newer than this genred's "
                          f"({FORMAT_VERSION}); upgrade genred")
    for key in ("version", "labels", "feature_params", "arch"):
        if key not in data:
            raise SchemaError(f"{key!r} is missing")
    _check_text("version", data["version"], MAX_VERSION_LENGTH)
    if any(c in data["version"] for c in "/\\") or data["version"].startswith("."):
        raise SchemaError(f"version {data['version']!a} must not hold '/' or start with '.'")
    labels = data["labels"]
    if not isinstance(labels, list) or not 1 <= len(labels) <= MAX_LABELS:
        raise SchemaError(f"labels must be a list of 1 to {MAX_LABELS} names")
    for i, label in enumerate(labels):
        _check_text(f"labels[{i}]", label, MAX_LABEL_LENGTH)
    params = data["feature_params"]
    if not isinstance(params, dict):
        raise SchemaError("feature_params must be an object")
    for key, (kind, low, high) in FEATURE_BOUNDS.items():
        if key in params:
            check_number(f"feature_params.{key}", params[key], kind, low, high)
    if all(k in params for k in ("sample_rate", "clip_seconds", "hop_length")):
        frames = 1 + round(params["sample_rate"] * params["clip_seconds"]) // int(
            params["hop_length"])
        if frames > MAX_FRAMES:
            raise SchemaError(f"feature_params make {frames} frames per clip; at most "
                              f"{MAX_FRAMES} (raise hop_length or shorten clip_seconds)")
    if not isinstance(data["arch"], str) or len(data["arch"]) > 64:
        raise SchemaError(f"arch must be an architecture name, not {_shown(data['arch'])}")
    kwargs = data.get("arch_kwargs")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise SchemaError("arch_kwargs must be an object")


def check_arch(arch: str, kwargs: dict[str, Any]) -> None:
    """The options are ones ``arch`` takes, each within its ARCH_OPTIONS bound."""
    from classifier import archs as cnn

    if arch not in cnn.ARCHS:
        raise SchemaError(f"unknown architecture {arch!r}; this genred knows "
                          f"{', '.join(cnn.ARCHS)}")
    bounds = cnn.ARCH_OPTIONS.get(arch)
    for key, value in kwargs.items():
        name = f"arch_kwargs.{key}"
        bound = bounds.get(key) if bounds is not None else None
        if bounds is not None and bound is None:
            raise SchemaError(f"{name}: not an option of architecture {arch!r} (it takes "
                              f"{', '.join(sorted(bounds))})")
        if bound is None:  # an architecture without declared bounds: numbers only
            values = value if isinstance(value, list) else [value]
            for v in values:
                check_number(name, v, float, -1e6, 1e6)
            continue
        if bound.length is not None:
            if not isinstance(value, list) or len(value) != bound.length:
                raise SchemaError(f"{name} must be a list of {bound.length} numbers, not "
                                  f"{_shown(value)}")
            for i, v in enumerate(value):
                check_number(f"{name}[{i}]", v, bound.kind, bound.low, bound.high)
        else:
            check_number(name, value, bound.kind, bound.low, bound.high)


def shapes_on_meta(arch: str, n_labels: int, n_mels: int, frames: int,
                   kwargs: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The state-dict shapes of the network, built on the meta device (no memory)."""
    import torch

    from classifier import archs
    from classifier import model as cnn

    with torch.device("meta"):
        net = cnn.build(arch, n_labels, n_mels, frames, **build_kwargs(kwargs))
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    total = sum(math.prod(s) for s in shapes.values())
    if total > archs.MAX_PARAMETERS:
        raise SchemaError(f"the architecture would hold {total:,} weights; at most "
                          f"{archs.MAX_PARAMETERS:,}")
    return shapes


def build_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Whole numbers stored as floats (``64.0``) as ints: torch layers need ints."""
    def whole(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, list):
            return [whole(x) for x in v]
        return v

    return {k: whole(v) for k, v in kwargs.items()}


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) or "a scalar"


def compare_shapes(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]],
                   n_labels: int) -> str | None:
    """What differs between the architecture's layers and the weights file's, in words,
    or None when they match."""
    for key, shape in expected.items():
        if key not in found:
            return f"the weights have no layer {key!r} (the architecture needs it)"
        if found[key] != shape:
            if key.startswith("out.") and found[key][1:] == shape[1:]:
                return (f"the weights have {found[key][0]} outputs but model.json lists "
                        f"{n_labels} labels")
            return (f"layer {key!r} is {_dims(found[key])} in the weights but "
                    f"{_dims(shape)} in the architecture model.json describes")
    extra = sorted(set(found) - set(expected))
    if extra:
        return f"the weights have layers the architecture does not: {', '.join(extra[:3])}"
    return None


def header_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a safetensors file's header (no tensor is read)."""
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118


def first_non_finite(net: nn.Module) -> str | None:
    """The first parameter or buffer holding NaN or infinity, or None."""
    import torch

    for key, tensor in net.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return key
    return None
