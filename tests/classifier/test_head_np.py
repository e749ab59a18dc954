"""A backbone model's head applied with numpy (classifier/head_np.py) gives the torch
head's answers, and refuses a damaged bundle as ``bundle.load`` does, without torch."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from classifier import modeljson
from classifier.bundle import ModelBroken, ModelMismatch
from classifier.head import BackboneHead
from classifier.head_np import NumpyHead, head_shapes
from classifier.predict import Classifier
from classifier.store import STARTER_DIR

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("hidden", [0, 16])
def test_the_heads_shapes_are_the_torch_modules(hidden: int) -> None:
    kwargs = {"hidden": hidden} if hidden else {}
    assert head_shapes(7, hidden) == modeljson.shapes_on_meta("backbone", 7, 96, 374, kwargs)


@pytest.mark.parametrize("hidden", [0, 16])
def test_numpy_gives_the_torch_heads_probabilities(hidden: int) -> None:
    torch.manual_seed(hidden)
    net = BackboneHead(5, hidden=hidden).eval()
    rng = np.random.default_rng(hidden)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.from_numpy(rng.normal(size=tuple(p.shape)).astype(np.float32)))
        net.set_input_stats(torch.rand(753), torch.rand(753) + 0.5)
        net.temperature.fill_(1.7)
    emb = rng.normal(size=(9, 753)).astype(np.float32)
    with torch.inference_mode():
        want = torch.softmax(net.calibrated(torch.from_numpy(emb)), dim=1).numpy()
    got = NumpyHead({k: v.numpy() for k, v in net.state_dict().items()}).probabilities(emb)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_the_starters_answers_are_the_torch_heads() -> None:
    clf = Classifier.load("starter")
    emb = np.random.default_rng(3).normal(size=753).astype(np.float32)
    net = clf.net
    assert isinstance(net, BackboneHead)
    with torch.inference_mode():
        want = torch.softmax(net.calibrated(torch.from_numpy(emb)[None]), dim=1).numpy()[0]
    got = clf.predict_embedding(emb, 200.0, "mp3")
    assert list(got.probabilities) == clf.labels
    np.testing.assert_allclose(list(got.probabilities.values()), want, atol=2e-6)


def _edited_starter(tmp_path: Path, edit: dict[str, np.ndarray]) -> Path:
    copy = tmp_path / "edited"
    shutil.copytree(STARTER_DIR, copy)
    state = load_file(str(copy / "model.safetensors"))
    save_file({**state, **edit}, str(copy / "model.safetensors"))
    return copy


def test_nan_weights_are_refused_before_anything_runs(tmp_path: Path) -> None:
    state = load_file(str(STARTER_DIR / "model.safetensors"))
    path = _edited_starter(tmp_path, {"out.bias": np.full_like(state["out.bias"], np.nan)})
    with pytest.raises(ModelBroken, match=re.escape("NaN or infinite values (layer 'out.bias')")):
        Classifier.load(path).ready()


def test_weights_that_do_not_fit_the_labels_are_a_mismatch(tmp_path: Path) -> None:
    state = load_file(str(STARTER_DIR / "model.safetensors"))
    path = _edited_starter(tmp_path, {"out.weight": state["out.weight"][:3],
                                      "out.bias": state["out.bias"][:3]})
    wanted = re.escape("the weights have 3 outputs but model.json lists")
    with pytest.raises(ModelMismatch, match=wanted):
        Classifier.load(path).ready()


def test_outputs_that_overflow_are_a_broken_model_not_a_prediction(tmp_path: Path) -> None:
    state = load_file(str(STARTER_DIR / "model.safetensors"))
    path = _edited_starter(tmp_path, {"out.weight": np.full_like(state["out.weight"], 3e38),
                                      "out.bias": np.full_like(state["out.bias"], -3e38)})
    clf = Classifier.load(path)
    clf.ready()
    with pytest.raises(ModelBroken, match="not numbers"):
        clf.predict_embedding(np.ones(753, np.float32), 100.0, "mp3")


def test_a_backbone_models_predictions_need_no_torch() -> None:
    code = ("import sys, numpy as np; from classifier.predict import Classifier; "
            "c = Classifier.load('starter'); c.ready(); "
            "p = c.predict_embedding(np.ones(753, np.float32), 100.0, 'mp3'); "
            "print(p.genre in c.labels, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.split() == ["True", "False"], out.stdout + out.stderr
