"""Tampered model bundles are refused with a reason before anything is built, and a model
whose outputs are not numbers never gets to print or record one (issue 14, items 11, 15)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from classifier import bundle
from classifier.bundle import BundleError, ModelBroken, ModelMismatch
from tests.audiogen import make_track
from tests.storage.modelkit import tiny_bundle

GENRED = Path(sys.executable).with_name("genred")


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("models") / "good")


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_track(tmp_path_factory.mktemp("music") / "song.wav", "Pulse", 6.0, seed=1)


def _edited(good: Path, tmp_path: Path, edit: Any) -> Path:
    copy = tmp_path / "edited"
    shutil.copytree(good, copy)
    meta = json.loads((copy / "model.json").read_text())
    edit(meta)
    (copy / "model.json").write_text(json.dumps(meta))
    return copy


def _set(section: str, key: str, value: Any) -> Any:
    def edit(meta: dict[str, Any]) -> None:
        meta[section][key] = value
    return edit


def _env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    return {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local/share"), "XDG_CACHE_HOME": str(home / ".cache"),
            "GENRED_CONFIG": "", "GENRED_DB": f"sqlite:///{tmp_path / 'catalogue.db'}",
            "GENRED_CLIPS_PER_TRACK": "1", "GENRED_WORKERS": "1"}


def _genred(tmp_path: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(GENRED), *map(str, args)], env=_env(tmp_path),
                          capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize(("edit", "named"), [
    (_set("arch_kwargs", "hidden", 2e9), "arch_kwargs.hidden"),
    (_set("arch_kwargs", "channels", -5), "arch_kwargs.channels"),
    (_set("arch_kwargs", "dropout", float("nan")), "arch_kwargs.dropout"),
    (_set("arch_kwargs", "kernels", 3), "arch_kwargs.kernels"),
    (_set("feature_params", "n_fft", 0), "feature_params.n_fft"),
    (_set("feature_params", "hop_length", 0), "feature_params.hop_length"),
    (_set("feature_params", "sample_rate", 0), "feature_params.sample_rate"),
    (_set("feature_params", "n_mels", 10**12), "feature_params.n_mels"),
    (_set("feature_params", "clip_seconds", "long"), "feature_params.clip_seconds"),
    (lambda meta: meta.update(labels=["Rock\x1b[2J"]), "labels[0]"),
    (lambda meta: meta.update(labels=[]), "labels"),
    (lambda meta: meta.update(version="../../elsewhere"), "version"),
])
def test_a_model_json_out_of_bounds_is_refused_naming_the_value(
    good: Path, tmp_path: Path, edit: Any, named: str,
) -> None:
    path = _edited(good, tmp_path, edit)
    with pytest.raises(ModelMismatch, match=named.replace("[", r"\[").replace("]", r"\]")):
        bundle.load(path)


def test_absurd_sizes_within_each_bound_still_cannot_build_a_giant_network(
    good: Path, tmp_path: Path,
) -> None:
    def huge(meta: dict[str, Any]) -> None:
        # the paper's flattening layer: 512 channels x ~5000 frames x 4096 units
        meta.update(arch="paper", arch_kwargs={"channels": [16, 512], "hidden": 4096})
        meta["feature_params"].update(clip_seconds=30.0, hop_length=34)

    with pytest.raises(ModelMismatch, match="weights; at most"):
        bundle.load(_edited(good, tmp_path, huge))


def test_a_model_json_nested_200000_deep_is_unreadable_not_a_crash(
    good: Path, tmp_path: Path,
) -> None:
    copy = tmp_path / "deep"
    shutil.copytree(good, copy)
    (copy / "model.json").write_text('{"metrics": ' + "[" * 200_000 + "]" * 200_000 + "}")
    with pytest.raises(BundleError, match="nested too deeply"):
        bundle.read_meta(copy)
    proc = _genred(tmp_path, "models", "show", copy)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "nested too deeply" in proc.stderr


def test_a_layer_that_differs_is_named_not_blamed_on_the_labels(
    good: Path, tmp_path: Path,
) -> None:
    path = _edited(good, tmp_path, _set("arch_kwargs", "hidden", 64))
    with pytest.raises(ModelMismatch) as caught:
        bundle.load(path)
    message = str(caught.value)
    assert "'fc.weight' is 128x128 in the weights but 64x128" in message, message
    assert "labels" not in message.split("weights do not fit")[-1]


def _nan_bundle(good: Path, tmp_path: Path) -> Path:
    import torch
    from safetensors.torch import load_file, save_file

    copy = tmp_path / "nan"
    shutil.copytree(good, copy)
    state = load_file(str(copy / "model.safetensors"))
    save_file({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
               for k, v in state.items()}, str(copy / "model.safetensors"))
    return copy


def test_all_nan_weights_are_refused_by_classify_and_scan_with_a_reason(
    good: Path, song: Path, tmp_path: Path,
) -> None:
    nan = _nan_bundle(good, tmp_path)
    with pytest.raises(ModelBroken, match="NaN"):
        bundle.load(nan)
    proc = _genred(tmp_path, "classify", "--format", "json", "--model", nan, song)
    assert proc.returncode == 1, proc.stdout
    assert "NaN" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert "NaN" not in proc.stdout  # nothing printed that is not JSON
    proc = _genred(tmp_path, "scan", "--model", nan, song.parent)
    assert proc.returncode == 1, proc.stdout
    assert "NaN" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert "NOT NULL" not in proc.stderr


def test_a_model_whose_outputs_overflow_never_records_a_prediction(
    good: Path, song: Path, tmp_path: Path,
) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    copy = tmp_path / "overflow"
    shutil.copytree(good, copy)
    state = load_file(str(copy / "model.safetensors"))
    state["out.weight"] = torch.full_like(state["out.weight"], 3e38)  # finite, but inf out
    state["out.bias"] = torch.full_like(state["out.bias"], -3e38)
    save_file(state, str(copy / "model.safetensors"))
    proc = _genred(tmp_path, "scan", "--model", copy, song.parent)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "not numbers" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = _genred(tmp_path, "query", "--format", "json")
    assert proc.returncode == 0 and "NaN" not in proc.stdout, proc.stdout
