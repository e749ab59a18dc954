"""The embedding engine (ONNX Runtime, classifier/musicnn_ort.py) computes what the ported
network computes: against the original MSD_musicnn's stored embeddings (the reference of
test_musicnn.py) and against ``Musicnn.embed`` on patches of real-looking audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from classifier import musicnn_ort
from classifier.head import embed_windows
from classifier.musicnn import load_backbone
from classifier.musicnn_ort import OrtBackbone, embedding_graph, engine, window_patches
from classifier.musicnn_spec import EMBEDDING_DIM

REF = Path(__file__).parent / "data" / "musicnn_reference"


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(REF / "expected.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def test_the_engine_reproduces_the_original_networks_embeddings(
    expected: dict[str, np.ndarray]
) -> None:
    out = OrtBackbone(threads=1).embed(expected["patches"])
    assert out.shape == (2, EMBEDDING_DIM) and out.dtype == np.float32
    diff = np.abs(out - expected["mean_pool"]).max()
    assert diff < 1e-3, f"the embedding differs from the original by {diff:.1e}"


def test_the_engine_agrees_with_the_pytorch_port_to_float_rounding() -> None:
    rng = np.random.default_rng(5)
    # log10(1 + 10000 mel) values of music lie in [0, ~5]; include an edge of zeros
    patches = (rng.gamma(2.0, 0.8, size=(5, 187, 96))).astype(np.float32)
    patches[4, :40] = 0.0
    with torch.inference_mode():
        ours = load_backbone().embed(torch.from_numpy(patches)).numpy()
    for threads in (1, 2):
        out = OrtBackbone(threads=threads).embed(patches)
        assert np.abs(out - ours).max() < 1e-4 * max(1.0, float(np.abs(ours).max()))


def test_a_tracks_embedding_is_the_mean_over_its_windows_patches() -> None:
    rng = np.random.default_rng(6)
    windows = torch.from_numpy(rng.gamma(2.0, 0.8, size=(3, 96, 2 * 187)).astype(np.float32))
    emb = embed_windows(windows)
    per_patch = engine().embed(window_patches(windows.numpy()))
    assert per_patch.shape == (6, EMBEDDING_DIM)
    np.testing.assert_allclose(emb.numpy(), per_patch.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_the_graph_is_built_from_the_packaged_weights_and_nothing_else() -> None:
    from safetensors.numpy import load_file

    from classifier.musicnn_spec import WEIGHTS

    weights = load_file(str(WEIGHTS["msd_musicnn"]))
    broken = dict(weights)
    broken["timbral.0.conv.weight"] = np.zeros_like(weights["timbral.0.conv.weight"])
    assert embedding_graph(weights) != embedding_graph(broken)
    with pytest.raises(ValueError, match="unknown backbone"):
        OrtBackbone("no_such_backbone")


def test_a_process_sets_its_engines_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENRED_TORCH_THREADS", "3")
    assert musicnn_ort.threads() == 3
    musicnn_ort.set_threads(1)
    try:
        assert musicnn_ort.threads() == 1
        assert engine().threads == 1
    finally:
        musicnn_ort.set_threads(None)


def test_the_decode_path_never_imports_torch_onnx_or_sqlalchemy() -> None:
    """A scan's decode processes import daemon.decoding (the pool server's preload) and
    compute embeddings: no torch in them (memory, start-up), nor the onnx package (its
    import took a second: the graph is serialized by classifier/onnx_proto.py) or
    SQLAlchemy (a quarter second; a decode process writes no SQL)."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; import daemon.decode_server, daemon.decoding; "
            "from classifier.predict import track_embedding; "
            "e = track_embedding(np.ones((1, 96, 374), np.float32), 'msd_musicnn'); "
            "print(e.shape, sorted({'torch', 'onnx', 'sqlalchemy'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.split() == ["(753,)", "[]"], out.stdout + out.stderr
