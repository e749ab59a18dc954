"""MSD_musicnn's embedding on ONNX Runtime: the same network, a faster engine.

``Musicnn.embed`` (classifier/musicnn.py) is the port proved against the original graph.
This module builds the same computation as an ONNX graph — from the same safetensors
weights, at load time: no second copy of the weights, nothing exported or unpickled — and
runs it with ONNX Runtime, whose convolutions reach about twice the throughput of
PyTorch's on the front end's two large timbral convolutions (one input channel,
7 x 38 and 7 x 67 kernels; benchmarks/bench_backbone.py). The embedding agrees with
``Musicnn.embed`` to float32 rounding (tests/classifier/test_musicnn_ort.py).

The front end's filters that provably never fire (398 of its 561:
classifier/musicnn_bounds.py) are left out of the graph and their constant output put in
their place: the embedding is the same bit for bit, with ~4x fewer multiply-adds
(30.5 -> ~10 ms per patch on one Zen 4 core).

Graph, per block (as FreqPooledBlock and MidendLayer compute it):
  front block:  Conv(w * sign, b * sign) -> ReduceMax(freq) -> * sign -> Relu -> * scale + shift
                (live filters only; the dead ones' shifts concatenated, Gather to the order)
  mid-end:      Conv1d(k = 7, pad 3) -> Relu -> * scale + shift (+ the previous layer)
  embedding:    mean over time of concat(front, c1, c2, c3)
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import numpy as np

from classifier import musicnn_bounds, onnx_proto
from classifier.musicnn_spec import (
    BN_EPS,
    EMBEDDING_DIM,
    MSD_MUSICNN,
    N_MELS,
    PATCH_FRAMES,
    WEIGHTS,
)

OPSET = 17
# Patches per call. On ONNX Runtime the cost per patch hardly depends on it (9.4 / 9.0 /
# 9.4 ms at 1, 2, 6 on one Zen 4 core, the pruned graph), but a session's memory arena
# keeps the largest call's buffers, which grow with it (the full graph's timbral conv
# output alone is 9 MB per patch).
PATCH_BATCH = 1
_TIMBRAL = ((7, int(0.4 * N_MELS)), (7, int(0.7 * N_MELS)))  # as Musicnn.__init__
_TEMPORAL = (128, 64, 32)


def _scale_shift(w: dict[str, np.ndarray], prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """A FrozenBN's (scale, shift), computed in float32 as FrozenBN.scale_shift does."""
    scale = w[f"{prefix}.gamma"] / np.sqrt(w[f"{prefix}.var"] + np.float32(BN_EPS))
    return scale, w[f"{prefix}.beta"] - w[f"{prefix}.mean"] * scale


class _Graph:
    """Collects serialized nodes and initialisers (classifier/onnx_proto.py); names are
    generated."""

    def __init__(self) -> None:
        self.nodes: list[bytes] = []
        self.inits: list[bytes] = []
        self._n = 0

    def const(self, value: np.ndarray) -> str:
        name = f"c{len(self.inits)}"
        self.inits.append(onnx_proto.tensor(name, value))
        return name

    def op(self, kind: str, inputs: list[str], **attrs: Any) -> str:
        self._n += 1
        out = f"t{self._n}"
        self.nodes.append(onnx_proto.node(kind, inputs, [out], **attrs))
        return out

    def affine(self, x: str, scale: np.ndarray, shift: np.ndarray) -> str:
        """x * scale + shift per channel of a (B, C, T) tensor."""
        return self.op("Add", [self.op("Mul", [x, self.const(scale.reshape(1, -1, 1))]),
                               self.const(shift.reshape(1, -1, 1))])


def _front_block(g: _Graph, x: str, w: dict[str, np.ndarray], prefix: str,
                 kernel: tuple[int, int], time_pad: tuple[int, int],
                 input_range: tuple[float, float] | None) -> str:
    """A front block's (B, C, T) output; with ``input_range``, the filters proved never to
    fire on it (classifier/musicnn_bounds.py) are not computed: their channels are their
    BN shift, put back in place."""
    scale, shift = _scale_shift(w, f"{prefix}.bn")
    sign = np.where(scale >= 0, 1.0, -1.0).astype(np.float32)
    weight, bias = w[f"{prefix}.conv.weight"], w[f"{prefix}.conv.bias"]
    off = (musicnn_bounds.inactive_filters(weight, bias, *input_range)
           if input_range is not None else np.zeros(len(bias), bool))
    if off.all():
        off[0] = False  # keep one filter computed: the constants take the live output's shape
    live = np.flatnonzero(~off)
    y = g.op("Conv", [x, g.const(weight[live] * sign[live].reshape(-1, 1, 1, 1)),
                      g.const(bias[live] * sign[live])],
             kernel_shape=list(kernel), pads=[time_pad[0], 0, time_pad[1], 0])  # (B, C, T, F')
    pooled = g.op("ReduceMax", [y], axes=[3], keepdims=0)
    signed = g.op("Mul", [pooled, g.const(sign[live].reshape(1, -1, 1))])
    out = g.affine(g.op("Relu", [signed]), scale[live], shift[live])
    if not off.any():
        return out
    # (B, n_off, T) of the constants: the live output's shape with n_off channels
    shape = g.op("Shape", [out])
    wanted = g.op("Concat", [g.op("Slice", [shape, g.const(np.array([0], np.int64)),
                                            g.const(np.array([1], np.int64))]),
                             g.const(np.array([int(off.sum())], np.int64)),
                             g.op("Slice", [shape, g.const(np.array([2], np.int64)),
                                            g.const(np.array([3], np.int64))])], axis=0)
    constants = g.op("Expand", [g.const(shift[off].reshape(1, -1, 1)), wanted])
    both = g.op("Concat", [out, constants], axis=1)
    order = np.argsort(np.concatenate([live, np.flatnonzero(off)])).astype(np.int64)
    return g.op("Gather", [both, g.const(order)], axis=1)


def _midend_layer(g: _Graph, x: str, w: dict[str, np.ndarray], prefix: str) -> str:
    scale, shift = _scale_shift(w, f"{prefix}.bn")
    y = g.op("Conv", [x, g.const(w[f"{prefix}.conv.weight"]), g.const(w[f"{prefix}.conv.bias"])],
             kernel_shape=[7], pads=[3, 3])
    return g.affine(g.op("Relu", [y]), scale, shift)


def embedding_graph(weights: dict[str, np.ndarray], prune: bool = True) -> bytes:
    """The serialized ONNX model: input "patches" (B, 187, 96) -> "embedding" (B, 753).
    ``prune``: leave out the front-end filters proved never to fire on inputs within
    ``musicnn_bounds.LOGMEL_BOUND`` (the same embedding there, ~4x fewer multiply-adds)."""
    w = {k: v.astype(np.float32) for k, v in weights.items()}
    g = _Graph()
    in_scale, in_shift = _scale_shift(w, "input_bn")
    input_range = (musicnn_bounds.input_interval(float(in_scale.reshape(())),
                                                 float(in_shift.reshape(())))
                   if prune else None)
    x = g.op("Unsqueeze", ["patches", g.const(np.array([1], np.int64))])
    x = g.op("Add", [g.op("Mul", [x, g.const(in_scale.reshape(1, 1, 1, 1))]),
                     g.const(in_shift.reshape(1, 1, 1, 1))])
    blocks = [_front_block(g, x, w, f"timbral.{i}", k, (3, 3), input_range)
              for i, k in enumerate(_TIMBRAL)]
    blocks += [_front_block(g, x, w, f"temporal.{i}", (k, 1), ((k - 1) // 2, k // 2),
                            input_range) for i, k in enumerate(_TEMPORAL)]
    front = g.op("Concat", blocks, axis=1)
    c1 = _midend_layer(g, front, w, "midend.0")
    c2 = g.op("Add", [_midend_layer(g, c1, w, "midend.1"), c1])
    c3 = g.op("Add", [_midend_layer(g, c2, w, "midend.2"), c2])
    feats = g.op("Concat", [front, c1, c2, c3], axis=1)
    g.nodes.append(onnx_proto.node("ReduceMean", [feats], ["embedding"], axes=[2],
                                   keepdims=0))
    graph = onnx_proto.graph(
        g.nodes, "msd_musicnn_embedding", g.inits,
        [onnx_proto.value_info("patches", onnx_proto.FLOAT, ["batch", PATCH_FRAMES, N_MELS])],
        [onnx_proto.value_info("embedding", onnx_proto.FLOAT, ["batch", EMBEDDING_DIM])])
    # IR version 8: readable by any ONNX Runtime since 1.10
    return onnx_proto.model(graph, OPSET, ir_version=8, producer="genred")


class OrtBackbone:
    """The backbone's embedding on ONNX Runtime with ``threads`` intra-op threads: the
    pruned graph (dead filters left out, classifier/musicnn_bounds.py) for patches within
    the bound its proof holds on — every log-mel — and the full graph, built when first
    needed, for any other input."""

    def __init__(self, name: str = MSD_MUSICNN, threads: int = 1) -> None:
        from safetensors.numpy import load_file

        if name not in WEIGHTS:
            raise ValueError(f"unknown backbone {name!r}; one of {', '.join(WEIGHTS)}")
        self.threads = threads
        self._weights = load_file(str(WEIGHTS[name]))
        self.session = self._session(prune=True)
        self._full: Any = None

    def _session(self, prune: bool) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # warnings of graph rewrites are not the user's
        return ort.InferenceSession(embedding_graph(self._weights, prune), options,
                                    providers=["CPUExecutionProvider"])

    def embed(self, patches: np.ndarray) -> np.ndarray:
        """(B, EMBEDDING_DIM) float32 embeddings of (B, 187, 96) float32 patches."""
        x = np.ascontiguousarray(patches, dtype=np.float32)
        session = self.session
        if not musicnn_bounds.within_bound(x):
            if self._full is None:
                self._full = self._session(prune=False)
            session = self._full
        return np.asarray(session.run(["embedding"], {"patches": x})[0])


_threads: int | None = None


def set_threads(n: int | None) -> None:
    """Threads of the sessions this process makes from now on (a scan's decode processes:
    one each); None: the default of :func:`threads`."""
    global _threads
    _threads = n


def default_threads() -> int:
    """GENRED_TORCH_THREADS, else the cores, at most 4: more threads than cores only thrash
    on a shared machine (torch's too: classifier.predict.set_torch_threads)."""
    wanted = int(os.environ.get("GENRED_TORCH_THREADS", "0") or 0)
    return wanted if wanted > 0 else min(4, os.cpu_count() or 1)


def threads() -> int:
    """The engine's threads here: as set (:func:`set_threads`), else the default."""
    return _threads if _threads is not None else default_threads()


@lru_cache(maxsize=2)
def engine_for(name: str, n_threads: int) -> OrtBackbone:
    return OrtBackbone(name, n_threads)


def engine(name: str = MSD_MUSICNN) -> OrtBackbone:
    """This process's session of backbone ``name`` on :func:`threads` threads."""
    return engine_for(name, threads())


def window_patches(x: np.ndarray) -> np.ndarray:
    """(K, n_mels, frames) log-mel windows -> (K * frames // 187, 187, n_mels) patches."""
    k, n_mels, frames = x.shape
    if frames % PATCH_FRAMES:
        raise ValueError(f"windows of {frames} frames are not whole {PATCH_FRAMES}-frame patches")
    p = frames // PATCH_FRAMES
    return x.reshape(k, n_mels, p, PATCH_FRAMES).transpose(0, 2, 3, 1).reshape(
        k * p, PATCH_FRAMES, n_mels)


def embed_windows(x: np.ndarray, name: str = MSD_MUSICNN) -> np.ndarray:
    """(EMBEDDING_DIM,) float32 track embedding of its (K, n_mels, frames) log-mel windows:
    the mean of its patches' embeddings."""
    session = engine(name)
    patches = np.ascontiguousarray(window_patches(np.asarray(x, dtype=np.float32)))
    parts = [session.embed(patches[i : i + PATCH_BATCH])
             for i in range(0, len(patches), PATCH_BATCH)]
    return np.concatenate(parts).mean(axis=0)
