"""Bundles: safetensors + JSON, atomic saves, identical predictions after a reload,
ModelMismatch when a bundle does not fit; the model store; the bundled starter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from classifier import bundle
from classifier.bundle import BundleError, BundleMeta, ModelMismatch
from classifier.features import FeatureParams
from classifier.model import build
from classifier.predict import Classifier
from classifier.store import STARTER_DIR, ModelNotFound, ModelStore
from tests.classifier.conftest import Trained


def _tiny_meta(version: str = "v1", labels: tuple[str, ...] = ("A", "B")) -> BundleMeta:
    return BundleMeta(version=version, labels=list(labels), params=FeatureParams(),
                      arch="pooled", arch_kwargs={"channels": 8, "hidden": 8})


def _tiny_net(n_labels: int = 2):  # -> nn.Module
    p = FeatureParams()
    return build("pooled", n_labels, p.n_mels, p.frames, channels=8, hidden=8)


def test_reloaded_bundle_gives_identical_predictions(
    synth_model: Trained, fresh_songs: list[tuple[Path, str]], tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(synth_model.path, copy)
    first = Classifier.load(synth_model.path)
    second = Classifier.load(copy)
    for path, _ in fresh_songs[:4]:
        info, feats = first.features(path)
        a = first.predict_features(info, feats)
        b = second.predict_features(info, feats)
        assert a.probabilities == b.probabilities
        assert a.genre == b.genre and a.model == b.model == synth_model.result.version


def test_bundle_holds_only_safetensors_and_json(synth_model: Trained) -> None:
    names = {p.name for p in synth_model.path.iterdir()}
    assert {"model.safetensors", "model.json", "metrics.json", "confusion.png",
            "curve.png"} <= names
    assert not any(n.endswith((".pt", ".pth", ".pkl", ".pickle")) for n in names)
    meta = json.loads((synth_model.path / "model.json").read_text())
    for key in ("labels", "feature_params", "arch", "metrics", "training", "version",
                "parent", "created_at"):
        assert key in meta
    assert meta["training"]["songs"]["train"]  # per-genre song counts
    assert meta["feature_params"]["n_mels"] == 323
    # every architecture setting is saved, so changing a default never breaks old bundles
    assert {"channels", "hidden", "dropout"} <= set(meta["arch_kwargs"])


def test_features_computed_with_other_params_are_a_model_mismatch(synth_model: Trained) -> None:
    other = FeatureParams(n_mels=128)
    with pytest.raises(ModelMismatch, match="feature parameters"):
        bundle.load(synth_model.path, expect_params=other)


def test_labels_that_do_not_fit_the_weights_are_a_model_mismatch(tmp_path: Path) -> None:
    out = bundle.save(tmp_path / "b", _tiny_net(2), _tiny_meta())
    meta = json.loads((out / "model.json").read_text())
    meta["labels"] = ["A", "B", "C"]
    (out / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelMismatch, match="3 labels"):
        bundle.load(out)
    with pytest.raises(ModelMismatch, match="labels"):
        bundle.load(bundle.save(tmp_path / "c", _tiny_net(2), _tiny_meta()),
                    expect_labels=["A", "C"])


def test_unknown_feature_params_in_a_bundle_are_a_model_mismatch(tmp_path: Path) -> None:
    out = bundle.save(tmp_path / "b", _tiny_net(2), _tiny_meta())
    meta = json.loads((out / "model.json").read_text())
    meta["feature_params"]["fmax"] = 8000
    (out / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelMismatch, match="fmax"):
        bundle.read_meta(out)


def test_damaged_weights_give_a_bundle_error_not_a_crash(tmp_path: Path) -> None:
    out = bundle.save(tmp_path / "b", _tiny_net(2), _tiny_meta())
    (out / "model.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(BundleError):
        bundle.load(out)
    with pytest.raises(BundleError, match="not a model bundle"):
        bundle.load(tmp_path)


def test_a_failed_save_leaves_the_previous_bundle_untouched(tmp_path: Path) -> None:
    out = bundle.save(tmp_path / "b", _tiny_net(2), _tiny_meta("old"))
    with pytest.raises(RuntimeError), bundle.staged(out) as tmp:
        bundle.write(tmp, _tiny_net(2), _tiny_meta("new"))
        raise RuntimeError("killed mid-save")
    assert bundle.read_meta(out).version == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no staging dir left
    bundle.save(out, _tiny_net(2), _tiny_meta("new"))
    assert bundle.read_meta(out).version == "new"


def test_store_lists_activates_and_resolves_versions(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    assert store.active() == store.bundled() == STARTER_DIR
    target = store.new_version_dir()
    bundle.save(target, _tiny_net(2), _tiny_meta(target.name))
    assert store.resolve(target.name) == target
    assert store.resolve(str(target)) == target.absolute()
    store.activate(target.name)
    assert store.active() == target
    assert (tmp_path / "models" / "ACTIVE").read_text().strip() == target.name
    versions = [v.version for v in store.versions()]
    assert target.name in versions
    store.activate("starter")
    assert store.active() == STARTER_DIR
    with pytest.raises(ModelNotFound):
        store.resolve("no-such-version")


def test_store_with_an_active_version_that_vanished_falls_back_to_the_starter(
    tmp_path: Path,
) -> None:
    store = ModelStore(tmp_path)
    (tmp_path / "ACTIVE").write_text("20260101T000000Z-abcdef\n")
    assert store.active() == STARTER_DIR


def test_bundled_starter_model_loads_and_is_small() -> None:
    if not bundle.is_bundle(STARTER_DIR):
        pytest.fail("the starter model is missing from classifier/starter")
    size = (STARTER_DIR / "model.safetensors").stat().st_size
    assert size <= 25 * 1024 * 1024
    clf = Classifier.load()
    assert clf.path == STARTER_DIR and len(clf.labels) >= 2
    p = clf.params  # its own front end (the backbone's: 96 mel bands, 3 s patches)
    probs = clf.probabilities(np.zeros((3, p.n_mels, p.frames), dtype=np.float32) + 1.0)
    assert probs.shape[1] == len(clf.labels)  # a backbone head: one row for the track
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
