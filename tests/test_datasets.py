"""Dataset download: registry, mirror (folder and http), upstream archives, checksums, messages."""

import dataclasses
import functools
import hashlib
import http.server
import logging
import os
import pickle
import threading
import time
import urllib.error
import zipfile
from pathlib import Path

import pytest

from common import datasets as D
from common.registry import DATASETS, Archive, Dataset, FileSpec

MIRROR = os.environ.get("REPRO_DATA_MIRROR")
needs_mirror = pytest.mark.skipif(
    not (MIRROR and Path(MIRROR).is_dir()), reason="no local data mirror (REPRO_DATA_MIRROR)"
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(D.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def offline(monkeypatch):
    """No network: every download attempt fails as it would without a connection."""

    def refuse(url, timeout=30.0):
        if url.startswith("file:"):
            return _real_open(url, timeout)
        raise urllib.error.URLError(f"network unreachable (test): {url}")

    _real_open = D._open_url
    monkeypatch.setattr(D, "_open_url", refuse)


def test_unknown_dataset_lists_known():
    with pytest.raises(D.UnknownDatasetError) as e:
        D.fetch("movielens-1b")
    for name in ("beibei", "ml-1m", "diginetica-srgnn"):
        assert name in str(e.value)


def test_unknown_file_lists_registered():
    with pytest.raises(KeyError, match="uiinfo.pkl"):
        D.fetch_file("agnn-ml100k", "nope.pkl")


def test_registry_is_explicit_about_checksums():
    for ds in DATASETS.values():
        for f in ds.files:
            assert f.url or f.archive or ds.homepage, f"{ds.name}/{f.path} has no source"
            if not (f.sha256 or f.git_blob):
                assert f.note, f"{ds.name}/{f.path}: unknown checksum must be explained in note"
            if f.sha256:
                assert len(f.sha256) == 64


def _mirror_files():
    return [
        (ds.name, f.path)
        for ds in DATASETS.values()
        for f in ds.files
        if MIRROR and (Path(MIRROR) / ds.name / f.path).is_file()
    ]


def _missing_files():
    return [
        (ds.name, f.path)
        for ds in DATASETS.values()
        for f in ds.files
        if MIRROR and Path(MIRROR).is_dir() and not (Path(MIRROR) / ds.name / f.path).is_file()
    ]


@needs_mirror
def test_every_mirror_file_fetches_and_verifies(cache, offline, monkeypatch):
    files = _mirror_files()
    assert len(files) >= 40  # the mirror holds ~45 registered files
    for name, path in files:
        got = D.fetch_file(name, path)
        assert got == cache / name / path and got.is_file()
        spec = DATASETS[name].file(path)
        sha, blob = D._hashes(got)
        assert sha == spec.sha256 or blob == spec.git_blob
    # A second call is served from the cache: it works with the mirror gone.
    monkeypatch.setenv(D.MIRROR_ENV, str(cache / "no-such-mirror"))
    assert D.fetch("beibei") == cache / "beibei"


@needs_mirror
def test_files_missing_from_mirror_give_manual_download_message(cache, offline):
    missing = _missing_files()
    names = {f"{n}/{p}" for n, p in missing}
    assert "ml-1m/ratings.dat" in names and "tmall/trn_buy" in names
    for name, path in missing:
        with pytest.raises(D.DatasetUnavailableError) as e:
            D.fetch_file(name, path)
        msg = str(e.value)
        assert "Download it by hand" in msg and str(cache / name / path) in msg


@needs_mirror
def test_corrupted_cache_file_is_refused(cache, offline):
    path = D.fetch_file("srgnn-sample", "sample_train-item-views.csv")
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(b"X")
    spec = DATASETS["srgnn-sample"].file("sample_train-item-views.csv")
    with pytest.raises(D.ChecksumError) as e:
        D.fetch_file("srgnn-sample", "sample_train-item-views.csv")
    msg = str(e.value)
    assert "sha256 mismatch" in msg and spec.sha256 in msg and str(path) in msg
    assert D._hashes(path)[0] in msg


@needs_mirror
def test_in_place_rewrite_with_size_and_mtime_kept_is_refused(cache, offline):
    """``touch -r`` can restore size and mtime but not ctime: the stamp holds both, so the file is hashed again."""
    path = D.fetch_file("srgnn-sample", "sample_train-item-views.csv")
    assert D.fetch_file("srgnn-sample", "sample_train-item-views.csv") == path  # stamped, not re-hashed
    st = os.stat(path)
    data = bytearray(path.read_bytes())
    data[100] = ord("X") if data[100] != ord("X") else ord("Y")
    time.sleep(0.01)
    with open(path, "r+b") as f:  # in place: same inode, same size
        f.write(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # what `touch -r` does
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns
    with pytest.raises(D.ChecksumError, match="sha256 mismatch"):
        D.fetch_file("srgnn-sample", "sample_train-item-views.csv")


def test_no_mirror_no_network_names_url_and_path(cache, offline, monkeypatch):
    monkeypatch.delenv(D.MIRROR_ENV, raising=False)
    with pytest.raises(D.DatasetUnavailableError) as e:
        D.fetch_file("beibei", "trn_buy")
    msg = str(e.value)
    assert DATASETS["beibei"].file("trn_buy").url in msg
    assert str(cache / "beibei" / "trn_buy") in msg
    assert not (cache / "beibei" / "trn_buy").exists()


def test_mirror_copy_with_wrong_bytes_is_not_used(cache, offline, tmp_path, monkeypatch):
    fake = tmp_path / "mirror" / "srgnn-sample" / "sample_train-item-views.csv"
    fake.parent.mkdir(parents=True)
    fake.write_text("not the real file\n")
    monkeypatch.setenv(D.MIRROR_ENV, str(tmp_path / "mirror"))
    with pytest.raises(D.ChecksumError, match="size mismatch"):
        D.fetch_file("srgnn-sample", "sample_train-item-views.csv")
    folder = cache / "srgnn-sample"
    assert not any(p.name == "sample_train-item-views.csv" for p in folder.iterdir())
    assert not list(folder.glob("*.part"))  # the temporary file is gone too


def _fake_dataset(monkeypatch, ds: Dataset) -> None:
    monkeypatch.setitem(DATASETS, ds.name, ds)


def test_upstream_zip_member_is_unpacked_and_verified(cache, offline, tmp_path, monkeypatch):
    monkeypatch.delenv(D.MIRROR_ENV, raising=False)
    content = b"100000 ratings\n"
    zpath = tmp_path / "toy.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("toy/u.info", content)
        z.writestr("toy/u.other", b"x")
    arc = Archive(zpath.as_uri(), "toy.zip", "zip")
    sha = hashlib.sha256(content).hexdigest()
    _fake_dataset(monkeypatch, Dataset("toy", "toy", (), (
        FileSpec("u.info", sha, len(content), archive=arc, member="toy/u.info"),
        FileSpec("u.bad", "0" * 64, 1, archive=arc, member="toy/u.other"),
    )))
    assert D.fetch_file("toy", "u.info").read_bytes() == content
    assert (cache / "toy" / ".archives" / "toy.zip").is_file()  # archive kept for other members
    with pytest.raises(D.ChecksumError):
        D.fetch_file("toy", "u.bad")
    assert not (cache / "toy" / "u.bad").exists()


def test_unknown_checksum_verified_by_format_and_logged(cache, offline, tmp_path, monkeypatch, caplog):
    monkeypatch.delenv(D.MIRROR_ENV, raising=False)
    good = tmp_path / "good.pkl"
    good.write_bytes(pickle.dumps({"a": 1}))
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"<html>not found</html>")
    _fake_dataset(monkeypatch, Dataset("toy2", "toy", (), (
        FileSpec("good.pkl", url=good.as_uri(), fmt="pickle", note="no checksum"),
        FileSpec("bad.pkl", url=bad.as_uri(), fmt="pickle", note="no checksum"),
    )))
    with caplog.at_level(logging.WARNING, logger="common.datasets"):
        assert D.fetch_file("toy2", "good.pkl").is_file()
    assert "no checksum is known" in caplog.text
    with pytest.raises(D.ChecksumError, match="format check failed"):
        D.fetch_file("toy2", "bad.pkl")


@needs_mirror
def test_http_mirror(cache, monkeypatch):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=MIRROR)
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv(D.MIRROR_ENV, f"http://127.0.0.1:{server.server_address[1]}/")
        path = D.fetch_file("srgnn-sample", "sample_train-item-views.csv")
        assert D._hashes(path)[0] == DATASETS["srgnn-sample"].file("sample_train-item-views.csv").sha256
    finally:
        server.shutdown()


def test_cli_lists_datasets(capsys):
    assert D.main([]) == 0
    out = capsys.readouterr().out
    assert "beibei" in out and "yoochoose1_64-srgnn" in out
