"""Config: TOML < GENRED_* environment < flags, validated with messages naming the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.config import Config, ConfigError, load
from daemon.config_places import config_file, data_dir


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in list(os.environ):
        if var.startswith("GENRED_") or var in ("STATE_DIRECTORY", "CACHE_DIRECTORY"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_without_any_file(tmp_path: Path) -> None:
    cfg = load(environ={})
    assert cfg.source == "defaults"
    assert cfg.retrain.schedule == "0 3 * * *"
    assert cfg.db_url == f"sqlite:///{tmp_path / 'data' / 'genred' / 'catalogue.db'}"
    assert cfg.model_store_path == tmp_path / "data" / "genred" / "models"
    assert cfg.worker_count >= 1


def test_xdg_config_file_is_found_and_named(tmp_path: Path) -> None:
    file = _write(
        tmp_path / "config" / "genred" / "config.toml",
        'watch = ["/srv/music"]\nsettle_seconds = 2\n[retrain]\nmin_new_labels = 7\n',
    )
    cfg = load(environ={})
    assert cfg.source == str(file)
    assert cfg.watch == ("/srv/music",)
    assert cfg.settle_seconds == 2.0
    assert cfg.retrain.min_new_labels == 7


def test_precedence_file_then_environment_then_flags(tmp_path: Path) -> None:
    file = _write(tmp_path / "c.toml", "workers = 1\nclips_per_track = 2\ntag_threshold = 0.1\n")
    env = {"GENRED_WORKERS": "3", "GENRED_CLIPS_PER_TRACK": "4", "GENRED_RETRAIN_EPOCHS": "2"}
    cfg = load(str(file), {"workers": 5, "clips_per_track": None}, environ=env)
    assert cfg.workers == 5  # flag wins
    assert cfg.clips_per_track == 4  # environment beats the file; None flag = not given
    assert cfg.tag_threshold == 0.1  # file beats the default
    assert cfg.retrain.epochs == 2


def test_flag_can_set_nested_retrain_keys() -> None:
    cfg = load(overrides={"retrain_schedule": "*/5 * * * *"}, environ={})
    assert cfg.retrain.schedule == "*/5 * * * *"


def test_genred_config_env_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_file(None) is None
    file = _write(tmp_path / "elsewhere.toml", "write_tags = true\n")
    monkeypatch.setenv("GENRED_CONFIG", str(file))
    cfg = load(environ={})
    assert cfg.write_tags is True and cfg.source == str(file)


def test_environment_watch_list_uses_path_separator() -> None:
    cfg = load(environ={"GENRED_WATCH": "/a:/b"})
    assert cfg.watch == ("/a", "/b")


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("settle_seconds = -1\n", "settle_seconds"),
        ('workers = "many"\n', "workers"),
        ("tag_threshold = 2\n", "tag_threshold"),
        ("write_tags = 3\n", "write_tags"),
        ("clips_per_track = 0\n", "clips_per_track"),
        ('log_level = "LOUD"\n', "log_level"),
        ("watch = [1, 2]\n", "watch"),
        ('[retrain]\nschedule = "nightly"\n', "retrain.schedule"),
        ("[retrain]\nmin_new_labels = -3\n", "retrain.min_new_labels"),
        ("[retrain]\nfrequency = 1\n", "retrain.frequency"),
        ("colour = 1\n", "colour"),
        ("rescan_hours = 0\n", "rescan_hours"),
        ("[retrain]\nepochs = 0\n", "retrain.epochs"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, toml: str, key: str) -> None:
    file = _write(tmp_path / "bad.toml", toml)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load(str(file), environ={})


def test_bad_environment_value_names_the_key() -> None:
    with pytest.raises(ConfigError, match="GENRED_SETTLE_SECONDS: expected a number"):
        load(environ={"GENRED_SETTLE_SECONDS": "soon"})


def test_invalid_toml_and_missing_file_are_clear(tmp_path: Path) -> None:
    file = _write(tmp_path / "broken.toml", "watch = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(str(file), environ={})
    with pytest.raises(ConfigError, match=r"--config: no such file or folder: .*absent\.toml"):
        load(str(tmp_path / "absent.toml"), environ={})
    with pytest.raises(ConfigError, match=r"--config: .* is a folder, not a config file"):
        load(str(tmp_path), environ={})
    with pytest.raises(ConfigError, match="--config: /dev/null is not a regular file"):
        load("/dev/null", environ={})


def test_systemd_state_directory_holds_the_catalogue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/genred")
    assert data_dir() == Path("/var/lib/genred")
    assert Config().db_url == "sqlite:////var/lib/genred/catalogue.db"


def test_effective_is_json_ready_with_resolved_values(tmp_path: Path) -> None:
    import json

    cfg = load(overrides={"watch": ["/m"]}, environ={})
    data = json.loads(json.dumps(cfg.effective()))
    assert data["watch"] == ["/m"]
    assert data["retrain"]["schedule"] == "0 3 * * *"
    assert data["db"] == f"sqlite:///{tmp_path / 'data' / 'genred' / 'catalogue.db'}"
    assert data["model_store"] == str(tmp_path / "data" / "genred" / "models")
    assert data["cache"] == str(tmp_path / "cache" / "genred")
    assert data["model"] is None
    assert data["aliases"]["drum and bass"] == "Drum & Bass"  # the built-in map
    assert data["genre_tree"]["Drum & Bass"] == "Electronic"  # the built-in tree


def test_each_value_knows_where_it_came_from(tmp_path: Path) -> None:
    file = _write(tmp_path / "c.toml", 'workers = 1\ntag_threshold = 0.2\n[retrain]\nepochs = 3\n'
                  '[aliases]\n"Nu  Jazz" = "Jazz"\n"techno" = "Tekno"\n')
    env = {"GENRED_WORKERS": "2", "GENRED_RETRAIN_SCHEDULE": "0 4 * * *"}
    cfg = load(str(file), {"workers": 4, "log_level": None}, environ=env)
    assert [cfg.origin(k) for k in ("workers", "tag_threshold", "log_level")] == [
        "flag", "file", "default"]
    assert [cfg.origin(k) for k in ("retrain.epochs", "retrain.schedule",
                                    "retrain.min_new_labels")] == ["file", "env", "default"]
    data = cfg.effective()
    assert data["aliases"]["nu jazz"] == "Jazz" and data["aliases"]["techno"] == "Tekno"
    assert data["origins"]["aliases.nu jazz"] == "file"
    assert data["origins"]["aliases.techno"] == "file"  # overrides a built-in
    assert data["origins"]["aliases.house"] == "default"
    assert set(data["origins"]) >= {"db", "watch", "retrain.epochs"}


def test_genre_tree_extends_the_built_in_one(tmp_path: Path) -> None:
    file = _write(tmp_path / "c.toml", 'write_parent_genres = true\n[genre_tree]\n'
                  '"Nu Jazz" = "Jazz"\n"Liquid Funk" = "drum and bass"\n"Punk" = "Metal"\n')
    cfg = load(str(file), environ={})
    assert cfg.write_parent_genres
    tree = cfg.effective()["genre_tree"]
    assert tree["Nu Jazz"] == "Jazz" and tree["House"] == "Electronic"
    assert tree["Liquid Funk"] == "Drum & Bass"  # the parent in the tree's spelling
    assert tree["Punk"] == "Metal"  # an entry moves a built-in sub-genre
    assert cfg.tree.ancestors("liquid funk") == ["Drum & Bass", "Electronic"]
    assert cfg.genre_aliases["Nu Jazz"] == "Nu Jazz"  # "nu jazz" is a genre, not a typo


@pytest.mark.parametrize("table, says", [
    ('"A" = "B"\n"B" = "A"', "cycle"),
    ('"Jazz" = "jazz"', "its own parent"),
    ('"House" = "\\u0007"', "control"),
    ('"House" = 3', "must be a table"),
])
def test_a_genre_tree_that_is_no_tree_is_refused(tmp_path: Path, table: str, says: str
                                                 ) -> None:
    file = _write(tmp_path / "c.toml", f"[genre_tree]\n{table}\n")
    with pytest.raises(ConfigError, match=says) as e:
        load(str(file), environ={})
    assert "genre_tree" in str(e.value) and str(file) in str(e.value)


def test_the_anchor_check_thresholds_are_retrain_settings(tmp_path: Path) -> None:
    file = _write(tmp_path / "c.toml", "[retrain]\nmin_anchor_agreement = 0.8\n")
    cfg = load(str(file), environ={"GENRED_RETRAIN_MIN_GENRE_AGREEMENT": "0.5"})
    assert (cfg.retrain.min_anchor_agreement, cfg.retrain.min_genre_agreement) == (0.8, 0.5)
    with pytest.raises(ConfigError, match=r"retrain\.min_anchor_agreement.*from 0 to 1"):
        load(str(_write(tmp_path / "bad.toml", "[retrain]\nmin_anchor_agreement = 1.5\n")),
             environ={})
