"""A model on disk: a directory with ``model.safetensors`` (weights) and ``model.json``
(labels, feature parameters, architecture, metrics, training-data summary, version id,
parent version, creation time). Never pickle: weights load with safetensors only.

Saving is atomic: everything is written into a hidden sibling directory, then renamed
into place, so a crash never leaves a half bundle where a bundle is expected.
Training reports (metrics.json, PNGs) are written into the same staging directory.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from classifier.features import FeatureParams

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"
FORMAT_VERSION = 1


class BundleError(Exception):
    """A model bundle is missing, unreadable or not a genred bundle; the message says which."""


class ModelMismatch(BundleError):
    """A bundle does not fit what it is used with: its feature parameters, labels or
    weights do not match (e.g. features computed with other settings, a damaged file), or
    its model.json holds values out of bounds (classifier/modeljson.py)."""


class ModelBroken(BundleError):
    """A bundle loads but cannot give answers: NaN or infinite weights, or outputs that
    are not finite numbers. No prediction of it may be recorded."""


def new_version_id() -> str:
    """UTC time + a short random hash, e.g. ``20261125T091500Z-3fa9c1``; sorts by time."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


@dataclass
class BundleMeta:
    version: str
    labels: list[str]
    params: FeatureParams
    arch: str
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)  # data dir, per-genre songs, ...
    parent: str | None = None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "version": self.version,
            "labels": list(self.labels),
            "feature_params": self.params.as_dict(),
            "arch": self.arch,
            "arch_kwargs": self.arch_kwargs,
            "metrics": self.metrics,
            "training": self.training,
            "parent": self.parent,
            "created_at": self.created_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], where: Path) -> BundleMeta:
        """Raises ModelMismatch for a model.json out of modeljson's bounds."""
        from classifier.modeljson import SchemaError, check_meta

        try:
            check_meta(data)
        except SchemaError as e:
            raise ModelMismatch(f"{where / META_FILE}: {e}") from e
        try:
            labels = data["labels"]
            if not labels or not all(isinstance(x, str) for x in labels):
                raise ModelMismatch(f"{where}: labels must be a non-empty list of names")
            if len(set(labels)) != len(labels):
                raise ModelMismatch(f"{where}: labels are not unique: {labels}")
            return cls(
                version=str(data["version"]),
                labels=list(labels),
                params=FeatureParams.from_dict(dict(data["feature_params"])),
                arch=str(data["arch"]),
                arch_kwargs=dict(data.get("arch_kwargs") or {}),
                metrics=dict(data.get("metrics") or {}),
                training=dict(data.get("training") or {}),
                parent=data.get("parent"),
                created_at=str(data.get("created_at", "")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ModelMismatch(f"{where}: not a bundle this genred can use ({e})") from e


def is_bundle(path: Path) -> bool:
    return (path / META_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def read_meta(path: str | Path) -> BundleMeta:
    """The bundle's metadata. Raises BundleError / ModelMismatch."""
    path = Path(path)
    if not is_bundle(path):
        raise BundleError(f"{path}: not a model bundle (needs {META_FILE} and {WEIGHTS_FILE})")
    from classifier.modeljson import MAX_META_BYTES

    try:
        with (path / META_FILE).open("rb") as fh:
            raw = fh.read(MAX_META_BYTES + 1)
        if len(raw) > MAX_META_BYTES:
            raise BundleError(f"{path / META_FILE}: larger than {MAX_META_BYTES >> 20} MiB")
        data = json.loads(raw.decode("utf-8"))
    except RecursionError as e:
        raise BundleError(f"{path / META_FILE}: unreadable (values nested too deeply)") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{path / META_FILE}: unreadable ({e})") from e
    if not isinstance(data, dict):
        raise BundleError(f"{path / META_FILE}: not a JSON object")
    return BundleMeta.from_json(data, path)


def per_genre_scores(path: str | Path, metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A bundle's per-genre scores ({genre: {precision, recall, f1, support}}): from its
    headline ``metrics`` (model.json) when they hold them, else from the held-out test
    report its training wrote (metrics.json); {} when neither says. What `genred models
    show` and the models page show; no torch."""
    scores = metrics.get("per_genre")
    if not (isinstance(scores, dict) and scores):
        try:
            report = json.loads((Path(path) / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        test = report.get("test") if isinstance(report, dict) else None
        scores = test.get("per_genre") if isinstance(test, dict) else None
    if not isinstance(scores, dict):
        return {}
    return {str(g): v for g, v in scores.items() if isinstance(v, dict)}


def load(
    path: str | Path,
    expect_params: FeatureParams | None = None,
    expect_labels: list[str] | None = None,
) -> tuple[BundleMeta, nn.Module]:
    """The bundle's metadata and its network (eval mode, weights loaded). Raises
    ModelMismatch when the feature params or labels differ from the expected ones or the
    weights do not fit the architecture and labels; BundleError when unreadable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from classifier import model as cnn
    from classifier import modeljson

    path = Path(path)
    meta = read_meta(path)
    if expect_params is not None and meta.params != expect_params:
        raise ModelMismatch(
            f"{path}: feature parameters {meta.params.as_dict()} differ from the expected "
            f"{expect_params.as_dict()}"
        )
    if expect_labels is not None and list(expect_labels) != meta.labels:
        raise ModelMismatch(f"{path}: labels {meta.labels} differ from {list(expect_labels)}")
    where = f"{path}: {meta.arch} with {len(meta.labels)} labels"
    try:
        modeljson.check_arch(meta.arch, meta.arch_kwargs)
        expected = modeljson.shapes_on_meta(meta.arch, len(meta.labels), meta.params.n_mels,
                                            meta.params.frames, meta.arch_kwargs)
    except (modeljson.SchemaError, TypeError, ValueError, RuntimeError) as e:
        raise ModelMismatch(f"{path / META_FILE}: cannot build architecture {meta.arch!r}: "
                            f"{e}") from e
    try:
        differs = modeljson.compare_shapes(expected, modeljson.header_shapes(
            path / WEIGHTS_FILE), len(meta.labels))
        if differs is not None:
            raise ModelMismatch(f"{path}: the weights do not fit model.json: {differs}")
        state = load_file(str(path / WEIGHTS_FILE))
    except (OSError, SafetensorError) as e:
        raise BundleError(f"{path / WEIGHTS_FILE}: unreadable ({e})") from e
    net = cnn.build(meta.arch, len(meta.labels), meta.params.n_mels, meta.params.frames,
                    **modeljson.build_kwargs(meta.arch_kwargs))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:  # dtypes: the shapes were compared above
        first = str(e).splitlines()[0]
        raise ModelMismatch(f"{where}: the weights do not fit ({first})") from e
    broken = modeljson.first_non_finite(net)
    if broken is not None:
        raise ModelBroken(f"{path}: the weights hold NaN or infinite values (layer "
                          f"{broken!r}); the model is damaged: activate another one "
                          "(genred models activate) or retrain")
    net.eval()
    return meta, net


def write(directory: Path, net: nn.Module, meta: BundleMeta) -> None:
    """Write weights + metadata into ``directory`` (use inside :func:`staged`)."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE))
    (directory / WEIGHTS_FILE).chmod(0o644)  # safetensors creates it 0600
    text = json.dumps(meta.to_json(), indent=2, sort_keys=False)
    (directory / META_FILE).write_text(text + "\n", encoding="utf-8")


@contextmanager
def staged(out_dir: str | Path) -> Iterator[Path]:
    """Yield an empty hidden directory next to ``out_dir``; when the block succeeds, it is
    renamed to ``out_dir`` (an existing ``out_dir`` is replaced only then). On error the
    staging directory is removed and ``out_dir`` is left as it was."""
    out = Path(out_dir).expanduser().absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.part-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        yield tmp
        _fsync_dir_files(tmp)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_dir_files(directory: Path) -> None:
    for p in directory.iterdir():
        if p.is_file():
            with p.open("rb") as fh:
                os.fsync(fh.fileno())


def _replace_dir(tmp: Path, out: Path) -> None:
    if not out.exists():
        tmp.rename(out)
        return
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
        tmp.rename(out)
        return
    old = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
    out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def save(out_dir: str | Path, net: nn.Module, meta: BundleMeta) -> Path:
    """Write a bundle atomically to ``out_dir``; returns the path."""
    out = Path(out_dir).expanduser().absolute()
    with staged(out) as tmp:
        write(tmp, net, meta)
    log.info("saved model %s to %s", meta.version, out)
    return out
