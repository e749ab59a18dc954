"""The stored form of paths and the one folder rule, on a real SQLite catalogue."""

from __future__ import annotations

import os
import random

from sqlalchemy import Engine, select, text
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateTable

from storage import catalogue, moves
from storage.paths import MARK, from_db, in_folder, is_gone, is_inside, to_db
from storage.schema import Track

FOLDERS = ["Jazz", "jazz", "JAZZ", "Jazz0", "Jazz.x", "Jazz Funk", "a%b", "aXYb", "a_b", "aXb",
           "a[b]", "ab", "a*b", "aZZb", "a\\b", "a\\\\b"]


def test_valid_utf8_paths_are_stored_unchanged() -> None:
    for path in ["/m/Jazz/a.flac", "/m/Björk/Homogenic/01 – Hunter.ogg", "/m/日本/曲.mp3",
                 "/m/a%b_[c]*\\d/e.flac", "/m/emoji 🎷.opus"]:
        assert to_db(path) == path and from_db(path) == path


def test_any_bytes_come_back_byte_for_byte() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        raw = bytes(rng.choice([*range(0x20, 0x7f), *range(0x80, 0x100)])
                    for _ in range(rng.randint(0, 12)))
        raw += rng.choice([b"", "\uffff".encode(), b"\xef\xbf", "é".encode()])
        name = os.fsdecode(raw)
        stored = to_db(name)
        stored.encode("utf-8")  # storable in any UTF-8 text column
        assert os.fsencode(from_db(stored)) == raw
    assert to_db(os.fsdecode(b"bad\xffname.ogg")) == f"bad{MARK}ffname.ogg"


def test_the_stored_form_keeps_folder_prefixes() -> None:
    folder, rest = os.fsdecode(b"/m/\xe9t\xe9"), os.fsdecode(b"x\xff/y.ogg")
    assert to_db(folder + "/" + rest) == to_db(folder) + "/" + to_db(rest)
    assert "/" not in to_db(os.fsdecode(bytes(range(0x80, 0x100))))


def _select(engine: Engine, folder: str) -> list[str]:
    with Session(engine) as s:
        return list(s.scalars(select(Track.path).where(in_folder(Track.path, folder))
                              .order_by(Track.path)))


def test_a_folder_selects_exactly_its_tracks(engine: Engine) -> None:
    paths = [f"/m/{f}/t.flac" for f in FOLDERS] + ["/m/Jazz/Live/t.flac", "/m/Jazz",
                                                    os.fsdecode(b"/m/Jazz/\xff.ogg")]
    for path in paths:
        catalogue.mark_pending(engine, path)
    assert _select(engine, "/m/Jazz") == sorted(["/m/Jazz", "/m/Jazz/Live/t.flac",
                                                 "/m/Jazz/t.flac",
                                                 os.fsdecode(b"/m/Jazz/\xff.ogg")],
                                                key=to_db)
    for folder in FOLDERS[1:]:
        assert _select(engine, f"/m/{folder}") == [f"/m/{folder}/t.flac"], folder
        assert [t.path for t in catalogue.tracks_under(engine, f"/m//{folder}/")] == [
            f"/m/{folder}/t.flac"], folder
    assert _select(engine, "/m/Jazz/t.flac") == ["/m/Jazz/t.flac"]  # a file is itself
    assert len(_select(engine, "/")) == len(paths)
    assert is_inside("/m/Jazz/t.flac", "/m/Jazz") and not is_inside("/m/Jazz0/t", "/m/Jazz")
    assert is_inside("/m/x", "/")


def test_the_folder_rule_is_a_range_on_the_path_index(engine: Engine) -> None:
    query = select(Track.id).where(in_folder(Track.path, "/m/Jazz"))
    sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    assert "LIKE" not in sql.upper() and "GLOB" not in sql.upper()
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            # A tiny table is scanned whatever the indexes: ask whether the path index
            # can serve the range at all (it can only under the column's "C" collation).
            conn.execute(text("SET enable_seqscan = off"))
            plan = " ".join(str(r[0]) for r in conn.execute(text("EXPLAIN " + sql)))
            assert "Index" in plan and "tracks_path_key" in plan, plan
            assert "Seq Scan" not in plan, plan
            return
        plan = " ".join(str(r[-1]) for r in conn.execute(text("EXPLAIN QUERY PLAN " + sql)))
    assert "USING" in plan and "INDEX" in plan and "SCAN tracks" not in plan, plan


def test_other_databases_compare_paths_in_binary_order() -> None:
    table = Track.__table__
    assert 'COLLATE "C"' in str(CreateTable(table).compile(dialect=postgresql.dialect()))
    assert "utf8mb4_bin" in str(CreateTable(table).compile(dialect=mysql.dialect()))


def test_a_path_that_cannot_be_looked_at_is_not_gone(tmp_path: os.PathLike[str]) -> None:
    folder = os.path.join(tmp_path, "f")
    os.mkdir(folder)
    assert is_gone(os.path.join(folder, "nothing.ogg"))
    assert is_gone(os.path.join(folder, "nothing", "deeper.ogg"))
    open(os.path.join(folder, "file"), "w").close()
    assert is_gone(os.path.join(folder, "file", "below-a-file.ogg"))  # ENOTDIR
    assert not is_gone(os.path.join(folder, "file"))


def test_an_older_catalogue_keeps_a_name_holding_u_ffff(tmp_path: os.PathLike[str]) -> None:
    from storage.db import create, open_catalogue, upgrade

    url = f"sqlite:///{os.path.join(tmp_path, 'old.db')}"
    old = create(url)
    upgrade(old, "0002")  # before paths were escaped: a U+FFFF was stored as it is
    odd, plain = f"/m/odd{MARK}name.ogg", "/m/Jazz/a.flac"
    with old.begin() as conn:
        for i, path in enumerate([odd, plain], 1):
            conn.execute(text("INSERT INTO tracks (id, path, status, first_seen, last_seen, "
                              "updated_at) VALUES (:id, :path, 'ok', '2026-01-01', "
                              "'2026-01-01', '2026-01-01')"), {"id": i, "path": path})
    old.dispose()
    engine = open_catalogue(url)
    assert [t.path for t in catalogue.tracks_under(engine, "/m")] == sorted(
        [odd, plain], key=to_db)
    assert catalogue.get_track(engine, odd) is not None
    with engine.connect() as conn:  # the plain one is byte-for-byte what it was
        assert conn.execute(text("SELECT path FROM tracks WHERE id = 2")).scalar() == plain


def test_an_error_reason_naming_an_odd_path_is_stored(engine: Engine) -> None:
    odd = os.fsdecode(b"/m/bad\xffname.ogg")
    catalogue.mark_pending(engine, "/m/a.ogg")
    assert moves.mark_missing(engine, "/m/a.ogg", f"renamed to {odd}")
    catalogue.record_error(engine, odd, f"cannot read {odd}: I/O error")
    assert catalogue.get_track(engine, "/m/a.ogg").error == \
        "renamed to /m/bad\\xffname.ogg"  # type: ignore[union-attr]
    assert catalogue.get_track(engine, odd).error == \
        "cannot read /m/bad\\xffname.ogg: I/O error"  # type: ignore[union-attr]
