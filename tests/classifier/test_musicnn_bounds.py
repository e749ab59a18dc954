"""The front-end filters genred leaves out never fire (classifier/musicnn_bounds.py): the
proof's figures, patches built to push every pruned filter as high as any input can, and
the engine's fallback to the full graph outside the proof's bound."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from classifier import musicnn_bounds
from classifier.musicnn import load_backbone
from classifier.musicnn_bounds import LOGMEL_BOUND, inactive_filters, input_interval, within_bound
from classifier.musicnn_ort import (
    _TEMPORAL,
    _TIMBRAL,
    OrtBackbone,
    _scale_shift,
    embedding_graph,
)
from classifier.musicnn_spec import MSD_MUSICNN, N_MELS, PATCH_FRAMES, WEIGHTS

REF = Path(__file__).parent / "data" / "musicnn_reference"
BLOCKS = ([(f"timbral.{i}", k, 3) for i, k in enumerate(_TIMBRAL)]
          + [(f"temporal.{i}", (k, 1), (k - 1) // 2) for i, k in enumerate(_TEMPORAL)])


@pytest.fixture(scope="module")
def weights() -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return {k: v.astype(np.float32) for k, v in load_file(str(WEIGHTS[MSD_MUSICNN])).items()}


@pytest.fixture(scope="module")
def sessions(weights: dict[str, np.ndarray]) -> tuple[object, object]:
    import onnxruntime as ort

    def session(prune: bool) -> object:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        return ort.InferenceSession(embedding_graph(weights, prune), options,
                                    providers=["CPUExecutionProvider"])

    return session(False), session(True)


def _input_affine(weights: dict[str, np.ndarray]) -> tuple[float, float]:
    scale, shift = _scale_shift(weights, "input_bn")
    return float(scale.reshape(())), float(shift.reshape(()))


def _pruned(weights: dict[str, np.ndarray], block: str) -> np.ndarray:
    lo, hi = input_interval(*_input_affine(weights))
    return inactive_filters(weights[f"{block}.conv.weight"], weights[f"{block}.conv.bias"],
                            lo, hi)


def test_the_proof_leaves_out_most_of_the_front_end(weights: dict[str, np.ndarray]) -> None:
    counts = {block: int(_pruned(weights, block).sum()) for block, _, _ in BLOCKS}
    assert counts == {"timbral.0": 164, "timbral.1": 183, "temporal.0": 26,
                      "temporal.1": 15, "temporal.2": 10}
    # no filter is pruned whose bound is not below zero, whatever the summation order
    for block, _, _ in BLOCKS:
        w = weights[f"{block}.conv.weight"].astype(np.float64).reshape(
            len(weights[f"{block}.conv.bias"]), -1)
        lo, hi = input_interval(*_input_affine(weights))
        upper = weights[f"{block}.conv.bias"] + np.maximum(w * lo, w * hi).sum(axis=1)
        assert (upper[_pruned(weights, block)] < 0).all()


def _worst_cases(weights: dict[str, np.ndarray]) -> np.ndarray:
    """Patches in which every pruned filter sees, somewhere, the input that maximises its
    convolution: the bound where its weight times the input scale is positive, else 0."""
    in_scale, _ = _input_affine(weights)
    patches: list[np.ndarray] = []
    for block, (kt, kf), _pad in BLOCKS:
        w = weights[f"{block}.conv.weight"][:, 0]  # (C, kt, kf)
        worst = np.where(w * in_scale > 0, LOGMEL_BOUND, 0.0).astype(np.float32)
        todo = list(np.flatnonzero(_pruned(weights, block)))
        while todo:
            patch = np.zeros((PATCH_FRAMES, N_MELS), np.float32)
            if kf > 1:  # timbral: 7-frame blocks down the patch, one filter each
                for row in range(0, PATCH_FRAMES - kt + 1, kt + 1):
                    if not todo:
                        break
                    patch[row:row + kt, :kf] = worst[todo.pop()]
            else:  # temporal: a (k, 1) column per mel band, one filter each
                for band in range(N_MELS):
                    if not todo:
                        break
                    patch[:kt, band] = worst[todo.pop()][:, 0]
            patches.append(patch)
    return np.stack(patches)


def test_worst_case_inputs_leave_every_pruned_filter_silent(
        weights: dict[str, np.ndarray], sessions: tuple[object, object]) -> None:
    patches = _worst_cases(weights)
    assert within_bound(patches)
    # the PyTorch port (the reference, never pruned): each pruned channel is its BN shift
    net = load_backbone().eval()
    with torch.inference_mode():
        x = net.input_bn(torch.from_numpy(patches).unsqueeze(1))
        for block, _, _ in BLOCKS:
            module = dict(net.named_modules())[block]
            out = module(x)  # (B, C, T)
            _, shift = module.bn.scale_shift()
            dead = torch.from_numpy(_pruned(weights, block))
            assert torch.equal(out[:, dead], shift[dead].view(1, -1, 1).expand_as(out[:, dead]))
    full, pruned = sessions
    a = full.run(["embedding"], {"patches": patches})[0]  # type: ignore[attr-defined]
    b = pruned.run(["embedding"], {"patches": patches})[0]  # type: ignore[attr-defined]
    np.testing.assert_array_equal(a, b)


def test_the_pruned_graph_gives_the_same_embedding_bit_for_bit(
        sessions: tuple[object, object]) -> None:
    with np.load(REF / "expected.npz", allow_pickle=False) as data:
        real = data["patches"].astype(np.float32)  # the original network's test patches
    rng = np.random.default_rng(7)
    patches = np.concatenate([real, rng.gamma(2.0, 0.8, (4, PATCH_FRAMES, N_MELS)),
                              rng.uniform(0, LOGMEL_BOUND, (2, PATCH_FRAMES, N_MELS)),
                              np.zeros((1, PATCH_FRAMES, N_MELS))]).astype(np.float32)
    full, pruned = sessions
    for i in range(len(patches)):
        one = patches[i : i + 1]
        np.testing.assert_array_equal(full.run(["embedding"], {"patches": one})[0],  # type: ignore[attr-defined]
                                      pruned.run(["embedding"], {"patches": one})[0])  # type: ignore[attr-defined]


def test_outside_the_bound_the_engine_runs_the_full_graph(
        sessions: tuple[object, object]) -> None:
    full, _ = sessions
    engine = OrtBackbone(threads=1)
    rng = np.random.default_rng(8)
    inside = rng.gamma(2.0, 0.8, (1, PATCH_FRAMES, N_MELS)).astype(np.float32)
    engine.embed(inside)
    assert engine._full is None  # a log-mel: the pruned graph alone
    for outside in (inside * 100, inside - 1.0):  # above the bound; negative
        np.testing.assert_array_equal(
            engine.embed(outside), full.run(["embedding"], {"patches": outside})[0])  # type: ignore[attr-defined]
    assert engine._full is not None
    assert np.isnan(engine.embed(np.full((1, PATCH_FRAMES, N_MELS), np.nan, np.float32))).all()


def test_within_bound_is_the_proofs_domain() -> None:
    ok = np.full((2, 3), 1.5, np.float32)
    assert within_bound(ok) and within_bound(np.zeros((0, 3), np.float32))
    assert within_bound(np.array([0.0, LOGMEL_BOUND], np.float32))
    assert not within_bound(np.array([0.0, LOGMEL_BOUND * 1.01], np.float32))
    assert not within_bound(np.array([-1e-6, 1.0], np.float32))
    assert not within_bound(np.array([np.nan, 1.0], np.float32))
    # every finite float32 mel power gives a log-mel inside the bound
    top = np.log10(1.0 + 10000.0 * float(np.finfo(np.float32).max))
    assert top < musicnn_bounds.LOGMEL_BOUND


def test_a_block_whose_every_filter_is_dead_still_builds_and_agrees(
        weights: dict[str, np.ndarray]) -> None:
    import onnxruntime as ort

    dead = dict(weights)
    dead["temporal.2.conv.weight"] = np.zeros_like(weights["temporal.2.conv.weight"])
    dead["temporal.2.conv.bias"] = np.full_like(weights["temporal.2.conv.bias"], -1.0)
    patches = np.random.default_rng(9).gamma(2.0, 0.8, (2, PATCH_FRAMES, N_MELS)).astype(
        np.float32)
    out = [ort.InferenceSession(embedding_graph(dead, prune), providers=["CPUExecutionProvider"])
           .run(["embedding"], {"patches": patches})[0] for prune in (False, True)]
    np.testing.assert_array_equal(out[0], out[1])
