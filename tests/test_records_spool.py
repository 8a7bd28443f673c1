"""Spool files: names, atomic writes, the samples CSV beside them (src/migflow/records/spool.py)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from migflow.records.spool import SPOOL_FORMAT, list_spools, read_spool, remove_spool, samples_path, spool_dir, spool_path, write_samples, write_spool


def test_names_beside_the_results_file(tmp_path):
    results = tmp_path / "r.duckdb"
    assert spool_dir(results) == tmp_path / "r.duckdb.spool"
    assert spool_dir(str(results)) == tmp_path / "r.duckdb.spool"
    assert spool_path(results, "20250101-000000-ab12cd") == tmp_path / "r.duckdb.spool" / "20250101-000000-ab12cd.json"
    assert spool_path(results, "../a b/c").name == ".._a_b_c.json", "a run id never leaves the spool directory"
    assert spool_path(results, "").name == "_.json"
    assert samples_path(spool_path(results, "x")) == tmp_path / "r.duckdb.spool" / "x.samples.csv"


def test_a_spool_is_written_whole_private_and_read_back(tmp_path):
    path = spool_path(tmp_path / "r.duckdb", "run-1")
    write_spool(path, {"format": SPOOL_FORMAT, "n": 1})
    write_spool(path, {"format": SPOOL_FORMAT, "n": 2})
    assert read_spool(path) == {"format": SPOOL_FORMAT, "n": 2}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["run-1.json"], "no temporary file left behind"
    assert path.read_text() == '{"format":"migflow-spool/1","n":2}'


def test_a_file_that_is_not_a_spool_is_refused(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"format": "other/1"}))
    with pytest.raises(ValueError, match=r"x\.json: not a migflow spool file \(format 'other/1'\)"):
        read_spool(path)
    path.write_text(json.dumps({"format": "migflow-spool/0"}))
    with pytest.raises(ValueError, match="not a migflow spool file"):
        read_spool(path)
    path.write_text("[1, 2]")
    with pytest.raises((ValueError, AttributeError)):
        read_spool(path)


def test_samples_csv_has_a_header_and_empty_nulls(tmp_path):
    path = spool_path(tmp_path / "r.duckdb", "run-1")
    write_samples(path, ["leg", "ms", "kind"], [{"leg": 1, "ms": 0.5, "kind": None}, {"leg": 2, "ms": 0, "kind": 'a,"b"'}])
    assert samples_path(path).read_text() == 'leg,ms,kind\n1,0.5,\n2,0,"a,""b"""\n'


def test_list_and_remove(tmp_path):
    results = tmp_path / "r.duckdb"
    assert list_spools(results) == []
    for run_id in ("b", "a"):
        write_spool(spool_path(results, run_id), {"format": SPOOL_FORMAT})
        write_samples(spool_path(results, run_id), ["leg"], [])
    (spool_dir(results) / ".a.json.1.tmp").write_text("{}")
    assert list_spools(results) == [spool_path(results, "a"), spool_path(results, "b")]
    remove_spool(spool_path(results, "a"))
    remove_spool(spool_path(results, "a"))  # twice: nothing left to remove is fine
    assert not spool_path(results, "a").exists() and not samples_path(spool_path(results, "a")).exists()
    assert list_spools(results) == [spool_path(results, "b")]


def test_a_filesystem_refusing_to_fsync_a_directory_is_fine(tmp_path, monkeypatch):
    real = os.fsync

    def fsync(fd):
        if Path(f"/proc/self/fd/{fd}").resolve().is_dir():
            raise OSError("not supported")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    path = spool_path(tmp_path / "r.duckdb", "run-1")
    write_spool(path, {"format": SPOOL_FORMAT})
    assert read_spool(path) == {"format": SPOOL_FORMAT}


def test_a_spool_beside_results_in_a_directory_not_made_yet(tmp_path):
    path = spool_path(tmp_path / "new" / "deeper" / "r.duckdb", "run-1")
    write_spool(path, {"format": SPOOL_FORMAT})
    assert read_spool(path) == {"format": SPOOL_FORMAT}
