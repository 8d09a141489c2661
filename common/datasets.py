"""Dataset download: cache, then mirror, then the original host; verified before use.

    from common.datasets import fetch, fetch_file
    folder = fetch("beibei")                       # every registered file of a dataset
    path = fetch_file("agnn-ml100k", "uiinfo.pkl")  # one file

Where files come from, in order:
1. the cache, ``$REPRO_DATA_DIR`` or ``~/.cache/recsys-repro`` (``<cache>/<dataset>/<path>``),
   if the file is there and verifies;
2. the mirror, ``$REPRO_DATA_MIRROR``: a local folder laid out like ``../shared/data``
   (``<mirror>/<dataset>/<path>``, archives already unpacked) or an http(s) base URL with the
   same layout;
3. the original URL in :mod:`common.registry` (for archive members: the archive, then the member).

Every file is written to a temporary name in the cache and renamed only after its sha256 (or
git blob id) matches. A file with no known checksum is accepted on size and format only, and the
log says so. A cached file that fails its checksum is never used: :class:`ChecksumError` names
the file and both hashes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Iterable, Optional

from tqdm.auto import tqdm

from common.cli import DataError, run_cli
from common.registry import DATASETS, Archive, Dataset, FileSpec

log = logging.getLogger("common.datasets")

CACHE_ENV = "REPRO_DATA_DIR"
MIRROR_ENV = "REPRO_DATA_MIRROR"
DEFAULT_CACHE = Path.home() / ".cache" / "recsys-repro"
_CHUNK = 1 << 20


class DatasetError(DataError):
    """Base class of the errors below (user errors: one paragraph, exit code 3, no traceback)."""


class UnknownDatasetError(DatasetError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ChecksumError(DatasetError):
    pass


class DatasetUnavailableError(DatasetError, FileNotFoundError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def mirror() -> Optional[str]:
    return os.environ.get(MIRROR_ENV) or None


def get_dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}"
        ) from None


def local_path(name: str, path: str) -> Path:
    """Where a registered file lives in the cache (whether or not it is there yet)."""
    get_dataset(name).file(path)
    return cache_dir() / name / path


# ----------------------------------------------------------------------------- verification
def _hashes(path: Path) -> tuple[str, str]:
    """sha256 and git blob id (SHA-1 of ``blob <size>\\0<bytes>``) in one pass."""
    sha = hashlib.sha256()
    blob = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
            blob.update(chunk)
    return sha.hexdigest(), blob.hexdigest()


def _check_format(path: Path, fmt: str) -> Optional[str]:
    try:
        if fmt == "pickle":
            with open(path, "rb") as f:
                pickle.load(f)
        elif fmt == "text":
            with open(path, "rb") as f:
                head = f.read(65536)
            if b"\0" in head or not head:
                return "expected a non-empty text file"
    except Exception as e:  # noqa: BLE001 - any failure to parse is a format failure
        return f"expected a {fmt} file ({type(e).__name__}: {e})"
    return None


def verify(name: str, spec: FileSpec, path: Path) -> None:
    """Raise :class:`ChecksumError` unless ``path`` is the registered file."""
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        raise ChecksumError(
            f"size mismatch for {name}/{spec.path} at {path}: expected {spec.size} bytes, "
            f"got {size}. The file was not used; delete it and fetch again."
        )
    if spec.sha256 or spec.git_blob:
        sha, blob = _hashes(path)
        if spec.sha256 and sha != spec.sha256:
            raise ChecksumError(
                f"sha256 mismatch for {name}/{spec.path} at {path}: expected {spec.sha256}, "
                f"got {sha}. The file was not used; delete it and fetch again."
            )
        if not spec.sha256 and blob != spec.git_blob:
            raise ChecksumError(
                f"git blob id mismatch for {name}/{spec.path} at {path}: expected "
                f"{spec.git_blob}, got {blob}. The file was not used; delete it and fetch again."
            )
        return
    problem = _check_format(path, spec.fmt)
    if problem:
        raise ChecksumError(f"format check failed for {name}/{spec.path} at {path}: {problem}")
    log.warning(
        "%s/%s: no checksum is known for this file; verified by %s only",
        name, spec.path, "size and format" if spec.size else "format",
    )


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _stamp_value(path: Path) -> str:
    """Size, mtime, inode and ctime of ``path``: a rewrite in place changes the ctime (which ``touch``
    cannot set back) and a replacement changes the inode, so either one makes the file hashed again."""
    st = path.stat()
    return f"{st.st_size} {st.st_mtime_ns} {st.st_ino} {st.st_ctime_ns}"


def _verified_in_cache(name: str, spec: FileSpec, path: Path) -> bool:
    """True if ``path`` exists and verifies; re-hashes unless size, mtime, inode and ctime are unchanged."""
    if not path.is_file():
        return False
    stamp = _stamp(path)
    if stamp.is_file() and stamp.read_text() == _stamp_value(path):
        return True
    verify(name, spec, path)  # raises on mismatch: a corrupt cached file is never used
    stamp.write_text(_stamp_value(path))
    return True


# ----------------------------------------------------------------------------- transfers
def _open_url(url: str, timeout: float = 30.0):
    """Open an http(s) or file URL (tests replace this to simulate no network)."""
    req = urllib.request.Request(url, headers={"User-Agent": "recsys-repro"})
    return urllib.request.urlopen(req, timeout=timeout)


def _download(url: str, dest: Path, desc: str) -> None:
    with _open_url(url) as resp:
        total = int(resp.headers.get("Content-Length") or 0) or None
        with open(dest, "wb") as out, tqdm(
            total=total, unit="B", unit_scale=True, desc=desc, leave=False,
            disable=os.environ.get("REPRO_NO_PROGRESS") == "1",
        ) as bar:
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))


def _tmp_in(folder: Path, stem: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=".part", dir=folder)
    os.close(fd)
    return Path(tmp)


def _install(name: str, spec: FileSpec, tmp: Path, dest: Path) -> None:
    """Verify ``tmp`` and rename it to ``dest``; delete it if it does not verify."""
    try:
        verify(name, spec, tmp)
    except ChecksumError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dest)
    _stamp(dest).write_text(_stamp_value(dest))


def _from_mirror(name: str, spec: FileSpec, dest: Path) -> Optional[str]:
    """Copy from the mirror; returns a reason string when the mirror cannot supply the file."""
    base = mirror()
    if not base:
        return f"no mirror set (${MIRROR_ENV})"
    tmp = _tmp_in(dest.parent, dest.name)
    try:
        if base.startswith(("http://", "https://")):
            url = f"{base.rstrip('/')}/{name}/{spec.path}"
            try:
                _download(url, tmp, f"{name}/{spec.path} (mirror)")
            except (urllib.error.URLError, OSError) as e:
                return f"mirror {url}: {e}"
        else:
            src = Path(base).expanduser() / name / spec.path
            if not src.is_file():
                return f"mirror {src}: not there"
            shutil.copyfile(src, tmp)
        _install(name, spec, tmp, dest)
        log.info("%s/%s: fetched from mirror %s", name, spec.path, base)
        return None
    finally:
        tmp.unlink(missing_ok=True)


def _unpack_member(archive: Archive, archive_path: Path, member: str, out: Path) -> None:
    if archive.kind == "zip":
        with zipfile.ZipFile(archive_path) as z, z.open(member) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
        return
    # Multi-part RAR (MB-GMN's Tmall trn_pv): only external tools read it.
    with tempfile.TemporaryDirectory(dir=out.parent) as tmpdir:
        for tool in (["bsdtar", "-xf", str(archive_path), "-C", tmpdir],
                     ["unrar", "x", "-o+", str(archive_path), tmpdir + "/"],
                     ["7z", "x", f"-o{tmpdir}", str(archive_path)]):
            if shutil.which(tool[0]):
                subprocess.run(tool, check=True, capture_output=True)
                break
        else:
            raise DatasetUnavailableError(
                f"{archive_path} is a RAR archive and none of bsdtar, unrar, 7z is installed; "
                f"install one (e.g. `apt-get install libarchive-tools`) or unpack it by hand to {out}"
            )
        found = list(Path(tmpdir).rglob(Path(member).name))
        if not found:
            raise DatasetUnavailableError(f"{archive_path} does not contain {member}")
        shutil.move(str(found[0]), out)


def _from_upstream(name: str, spec: FileSpec, dest: Path) -> Optional[str]:
    tmp = _tmp_in(dest.parent, dest.name)
    try:
        if spec.url:
            try:
                _download(spec.url, tmp, f"{name}/{spec.path}")
            except (urllib.error.URLError, OSError, ValueError) as e:
                return f"{spec.url}: {e}"
        elif spec.archive:
            arc = spec.archive
            arc_path = cache_dir() / name / ".archives" / arc.name
            if not arc_path.is_file():
                for i, url in enumerate((arc.url,) + arc.parts):
                    part = arc_path if i == 0 else arc_path.with_name(Path(url).name)
                    part_tmp = _tmp_in(part.parent, part.name)
                    try:
                        _download(url, part_tmp, f"{name}/{Path(url).name}")
                        os.replace(part_tmp, part)
                    except (urllib.error.URLError, OSError, ValueError) as e:
                        return f"{url}: {e}"
                    finally:
                        part_tmp.unlink(missing_ok=True)
            _unpack_member(arc, arc_path, spec.member or spec.path, tmp)
        else:
            return "no direct download URL (manual download only)"
        _install(name, spec, tmp, dest)
        log.info("%s/%s: downloaded from the original host", name, spec.path)
        return None
    finally:
        tmp.unlink(missing_ok=True)


def _manual_message(ds: Dataset, spec: FileSpec, dest: Path, reasons: list[str]) -> str:
    if spec.url:
        where = spec.url
    elif spec.archive:
        parts = f" and its further parts {', '.join(spec.archive.parts)}" if spec.archive.parts else ""
        where = f"{spec.archive.url}{parts} (unpack member {spec.member})"
    else:
        where = ds.homepage
    lines = [
        f"dataset file {ds.name}/{spec.path} is not available.",
        *(f"  tried: {r}" for r in reasons),
        f"Download it by hand from {where}",
        f"and put it at {dest}",
        f"(or point ${MIRROR_ENV} at a folder holding {ds.name}/{spec.path}).",
    ]
    if spec.note:
        lines.append(f"Note: {spec.note}.")
    if ds.homepage and ds.homepage != where:
        lines.append(f"Dataset page: {ds.homepage}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- public API
def fetch_file(name: str, path: str) -> Path:
    """Local, verified path of one registered file (fetching it if needed)."""
    ds = get_dataset(name)
    spec = ds.file(path)
    dest = cache_dir() / name / spec.path
    if _verified_in_cache(name, spec, dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    reasons = []
    for source in (_from_mirror, _from_upstream):
        reason = source(name, spec, dest)
        if reason is None:
            return dest
        reasons.append(reason)
    raise DatasetUnavailableError(_manual_message(ds, spec, dest, reasons))


def fetch(name: str, files: Optional[Iterable[str]] = None) -> Path:
    """Fetch a dataset (all its registered files, or only ``files``); returns its folder."""
    ds = get_dataset(name)
    for path in files if files is not None else [f.path for f in ds.files]:
        fetch_file(name, path)
    return cache_dir() / name


def available(name: str, path: str) -> bool:
    """True if the file can be had (cache or mirror or host) -- fetches it as a side effect."""
    try:
        fetch_file(name, path)
        return True
    except DatasetUnavailableError:
        return False


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m common.datasets [NAME ...]``: fetch datasets, or list them with no argument."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("names", nargs="*", help=f"datasets to fetch; known: {', '.join(sorted(DATASETS))}")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.names:
        for ds in DATASETS.values():
            print(f"{ds.name:22s} {', '.join(ds.used_by) or '-':20s} {ds.description}")
        return 0
    status = 0
    for name in args.names:
        ds = get_dataset(name)
        for spec in ds.files:
            try:
                print(f"ok       {fetch_file(name, spec.path)}")
            except DatasetError as e:
                status = DataError.code
                print(f"MISSING  {name}/{spec.path}\n{e}\n")
    return status


if __name__ == "__main__":
    raise SystemExit(run_cli(main, prog="python -m common.datasets"))
