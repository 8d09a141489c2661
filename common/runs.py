"""Run records shared by every ``main.py``: config, per-epoch metrics, summary, comparison table.

A run folder holds

* ``config.json``   -- the run's arguments (written at the start);
* ``metrics.jsonl`` -- one JSON object per epoch (``{"epoch": 3, "hr@10": ..., ...}``);
* ``summary.json``  -- ``{paper, dataset, metrics, published, reference, epochs, seed,
  wall_seconds, hardware, ...}`` (written at the end);
* ``tb/``           -- TensorBoard scalars (``tensorboard --logdir <run>/tb``).

Every file is written atomically (temporary file + rename), so an interrupted run never leaves a
half-written record; ``RunRecord(..., resume=True)`` keeps the history already logged and adds the
wall time already spent. Nothing here depends on a deep-learning framework.

Run-folder rules (the same in every paper):

* a run into a folder that already holds files refuses unless ``--resume`` (continue) or
  ``--overwrite`` (clear it, TensorBoard events included) is given: :func:`prepare_out`;
* temporary files left by a killed write (``.<name>.*.tmp``) are removed when a run starts;
* files are created with the usual permissions (0666 minus the umask, 0644 by default);
* JSON is strict: a non-finite number is written as ``null``; ``summary.json`` has a ``status``
  (``finished`` or ``diverged``, with the last finite epoch);
* a full disk or a read-only folder raises :class:`common.cli.OutputError` naming the folder, and
  the file being written keeps its previous content.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

from common.cli import Diverged, OutputError, output_error

__all__ = ["atomic_path", "write_json", "strict_json", "hardware", "comparison_table", "RunRecord",
           "ScalarWriter", "prepare_out", "remove_stale_tmp", "git_commit", "command_line"]

_UMASK = os.umask(0)
os.umask(_UMASK)
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

        with atomic_path(ckpt) as tmp:
            torch.save(state, tmp)
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as e:
        if e.errno in _WRITE_ERRNOS:
            raise output_error(e, path.parent) from e
        raise
    except RuntimeError as e:  # torch.save reports a full disk as "unexpected pos ..."
        if _disk_nearly_full(path.parent):
            raise output_error(OSError(errno.ENOSPC, "No space left on device", str(path)), path.parent) from e
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _disk_nearly_full(folder: Path, margin: int = 64 << 20) -> bool:
    try:
        return shutil.disk_usage(folder).free < margin
    except OSError:
        return False


def strict_json(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (strict JSON has no NaN/Infinity)."""
    if isinstance(obj, Mapping):
        return {str(k): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    return strict_json(_jsonable(obj))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(strict_json(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def remove_stale_tmp(folder: str | os.PathLike) -> list[Path]:
    """Delete the ``.<name>.*.tmp`` files a killed :func:`atomic_path` write left in ``folder``."""
    folder = Path(folder)
    gone = []
    if folder.is_dir():
        for p in folder.rglob(".*.tmp"):
            if p.is_file():
                p.unlink(missing_ok=True)
                gone.append(p)
    return gone


def prepare_out(out: str | os.PathLike, resume: bool = False, overwrite: bool = False) -> Path:
    """Check the run folder before anything is written; clear it for ``overwrite``.

    Refuses (:class:`common.cli.OutputError`) a folder that already holds files unless ``resume`` or
    ``overwrite``; removes stale temporary files. Creates nothing: the folder appears with the first
    record written.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a folder: choose another --out.")
    if out.is_dir():
        if overwrite:
            if any(out.iterdir()) and not any((out / n).exists() for n in ("config.json", "metrics.jsonl",
                                                                              "summary.json")):
                raise OutputError(
                    f"--overwrite would delete everything in {out}, which does not look like a run folder (no "
                    f"config.json, metrics.jsonl or summary.json): choose a run folder or a new --out.")
            for child in out.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        else:
            remove_stale_tmp(out)
            if not resume and any(out.iterdir()):
                raise OutputError(
                    f"the run folder {out} already holds a run. Add --resume to continue it from its last "
                    f"finished epoch, --overwrite to delete it and start again, or choose another --out.")
    return out


def git_commit(root: Optional[Path] = None) -> Optional[str]:
    """The checkout's HEAD commit, with ``+dirty`` when tracked files differ from it; None outside git."""
    root = root or Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        if not head:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def command_line(argv: Optional[list[str]] = None) -> str:
    """The command that started this process, as ``python -m <module> <args>`` where it was one."""
    argv = list(sys.argv[1:] if argv is None else argv)
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    head = ["python", "-m", spec.name] if spec is not None and spec.name else ["python", sys.argv[0]]
    return shlex.join(head + [str(a) for a in argv])


def _jsonable(x: Any) -> Any:
    if hasattr(x, "item"):  # numpy / torch scalars
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def hardware(device: str = "cpu") -> str:
    """One line describing where the run happened, e.g. ``'AMD EPYC, 2 cores, Linux (cpu)'``."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    where = str(device)
    if where.startswith("cuda"):
        try:
            import torch

            if torch.cuda.is_available():
                where = f"{where}: {torch.cuda.get_device_name(torch.device(where))}"
        except Exception:  # pragma: no cover - naming the GPU is best effort
            pass
    return f"{cpu}, {cores} cores, {platform.system()} ({where})"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    if isinstance(v, (list, tuple)) and as_range(v):
        return f"{v[0]}-{v[1]}"
    return str(v)


def as_range(v: Any) -> Optional[tuple[float, float]]:
    """A reference range (``[lo, hi]`` or ``"lo-hi"``) as two floats, else None."""
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
        return float(v[0]), float(v[1])
    if isinstance(v, str):
        parts = v.replace("–", "-").split("-")
        if len(parts) == 2:
            try:
                return float(parts[0]), float(parts[1])
            except ValueError:
                return None
    return None


def delta(value: Any, published: Any = None, reference: Any = None) -> str:
    """``value`` against the published number where there is one, otherwise the reference:
    ``+0.0123 (published)``, ``-0.0040 (reference)``, ``inside``/``outside`` a reference range, or ``-``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "-"
    for v, name in ((published, "published"), (reference, "reference")):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return f"{value - v:+.4f} ({name})"
        rng = as_range(v)
        if rng is not None:
            return f"{'inside' if rng[0] <= value <= rng[1] else 'outside'} {name} range"
    return "-"


def comparison_table(
    metrics: Mapping[str, float],
    published: Optional[Mapping[str, Any]] = None,
    reference: Optional[Mapping[str, Any]] = None,
    published_source: str = "",
    reference_source: str = "",
) -> str:
    """Markdown table: metric | published | reference | this run | delta.

    A published or reference value may be a number, a range (``[lo, hi]`` or ``"lo-hi"``) or a
    string such as ``"not available offline"``. Delta is this run minus the published number where
    there is one, otherwise minus the reference (each cell names which); a reference range gives
    ``inside`` or ``outside``.
    """
    published, reference = published or {}, reference or {}
    rows = [("metric", "published", "reference", "this run", "delta (vs published, else reference)")]
    for name, value in metrics.items():
        pub, ref = published.get(name), reference.get(name)
        rows.append((name, _fmt(pub), _fmt(ref), _fmt(value), delta(value, pub, ref)))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    out = [line(rows[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows[1:]]
    if published_source:
        out.append(f"published: {published_source}")
    if reference_source:
        out.append(f"reference: {reference_source}")
    return "\n".join(out)


class ScalarWriter:
    """Minimal TensorBoard scalar writer.

    Writes the event-file format with tensorboard's record writer and protos only: unlike
    tensorboard's ``EventFileWriter`` (which goes through ``tf.io.gfile``) it never imports
    TensorFlow, so PyTorch runs stay free of it.
    """

    def __init__(self, logdir: str | os.PathLike):
        import socket

        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        logdir = Path(logdir)
        logdir.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        self._file = open(logdir / name, "ab")
        self._records = RecordWriter(self._file)
        self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event) -> None:
        self._records.write(event.SerializeToString())

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2

        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value))])
        self._write(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def add_scalars(self, values: Mapping[str, float], step: int, prefix: str = "") -> None:
        for tag, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.add_scalar(prefix + tag, value, step)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class RunRecord:
    """The record of one run in ``out_dir``.

        rec = RunRecord(out, paper="mpm", dataset="ml-100k", config=vars(args), resume=args.resume)
        for epoch in range(rec.next_epoch, epochs + 1):
            ...
            rec.log_epoch(epoch, {"hr@10": hr, "ndcg@10": ndcg, "loss": loss})
        rec.finish(final_metrics, published=..., reference=..., epochs=epochs, seed=seed)
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        paper: str,
        dataset: str,
        config: Mapping[str, Any],
        resume: bool = False,
        tensorboard: bool = True,
        overwrite: bool = False,
        setting: str = "",
        argv: Optional[list[str]] = None,
    ):
        self.dir = prepare_out(out_dir, resume=resume, overwrite=overwrite)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.paper, self.dataset, self.setting = paper, dataset, setting
        self.config = dict(config)
        self.history: list[dict[str, Any]] = []
        self._wall_before = 0.0
        self.command = command_line(argv)
        self.commit = git_commit()
        # Every command that wrote to this run (a resumed run may span several commits), oldest first.
        self.sessions: list[dict[str, Any]] = []
        if resume:
            self.sessions = list((self._read_json("state.json") or {}).get("sessions", []))
        if resume and (self.dir / "metrics.jsonl").is_file():
            with open(self.dir / "metrics.jsonl") as f:
                self.history = [json.loads(line) for line in f if line.strip()]
            state = self._read_json("state.json") or {}
            self._wall_before = float(state.get("wall_seconds", 0.0))
        self.sessions.append({"command": self.command, "git_commit": self.commit,
                              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        self._start = time.time()
        write_json(self.dir / "config.json", {"paper": paper, "dataset": dataset, "setting": setting,
                                              **self.config, "command": self.command, "git_commit": self.commit})
        self.tb = ScalarWriter(self.dir / "tb") if tensorboard else None
        self.status = "running"

    def __enter__(self) -> "RunRecord":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if isinstance(exc, Diverged):
            self.mark_diverged(exc)
        elif self.tb is not None and exc is not None:
            self.tb.close()
        return False  # never swallow the exception

    def mark_diverged(self, exc: Diverged) -> None:
        """Write ``summary.json`` with ``"status": "diverged"``, the last finite epoch and the reason."""
        finite = [h["epoch"] for h in self.history if h.get("epoch", 0) >= 1]
        self.status = "diverged"
        self._write_summary({
            "status": "diverged",
            "diverged": {"epoch": exc.epoch, "step": exc.step, "what": exc.what,
                         "value": exc.value if exc.value is None else str(exc.value), "message": str(exc)},
            "last_finite_epoch": max(finite, default=None),
            "metrics": {},
        })
        if self.tb is not None:
            self.tb.close()
            self.tb = None

    def _write_summary(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        summary = {
            "paper": self.paper,
            "dataset": self.dataset,
            "setting": self.setting,
            "status": self.status,
            **fields,
            "wall_seconds": round(self.wall_seconds, 2),
            "hardware": fields.get("hardware") or hardware(self.config.get("device", "cpu") or "cpu"),
            "command": self.command,
            "git_commit": self.commit,
        }
        if len(self.sessions) > 1:
            summary["sessions"] = self.sessions
        write_json(self.dir / "summary.json", summary)
        return summary

    def _read_json(self, name: str) -> Optional[dict]:
        p = self.dir / name
        return json.loads(p.read_text()) if p.is_file() else None

    @property
    def wall_seconds(self) -> float:
        return self._wall_before + time.time() - self._start

    @property
    def next_epoch(self) -> int:
        """First epoch not yet logged (epochs are numbered from 1; 0 may log the untrained model)."""
        done = [h["epoch"] for h in self.history if h.get("epoch", 0) >= 1]
        return max(done, default=0) + 1

    def log_epoch(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        """Record one epoch (replacing an entry for the same epoch, e.g. after ``--resume``)."""
        entry = {"epoch": int(epoch), **{k: _plain(v) for k, v in metrics.items()}}
        self.history = [h for h in self.history if h.get("epoch") != epoch] + [entry]
        self.history.sort(key=lambda h: h["epoch"])
        with atomic_path(self.dir / "metrics.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(strict_json(h), allow_nan=False) + "\n" for h in self.history))
        write_json(self.dir / "state.json", {"wall_seconds": self.wall_seconds, "last_epoch": epoch,
                                             "sessions": self.sessions})
        if self.tb is not None:
            self.tb.add_scalars(entry, step=epoch)

    def best(self, key: str, mode: str = "max") -> Optional[dict[str, Any]]:
        """The logged epoch with the best ``key`` (``mode`` "max" or "min")."""
        rows = [h for h in self.history if isinstance(h.get(key), (int, float))]
        if not rows:
            return None
        return (max if mode == "max" else min)(rows, key=lambda h: h[key])

    def finish(
        self,
        metrics: Mapping[str, Any],
        published: Optional[Mapping[str, Any]] = None,
        reference: Optional[Mapping[str, Any]] = None,
        epochs: Optional[int] = None,
        seed: Optional[int] = None,
        device: str = "cpu",
        published_source: str = "",
        reference_source: str = "",
        extra: Optional[Mapping[str, Any]] = None,
        headline: Optional[Mapping[str, Any]] = None,
        selection: str = "",
    ) -> str:
        """Write ``summary.json`` and return the comparison table (also saved as ``comparison.md``).

        ``metrics`` may be nested (``{"best": {...}, "last": {...}}``); the table shows the flat
        numeric entries, prefixed with their group. ``headline`` is the run's result under
        ``selection`` (e.g. ``{"hr@10": 0.74, "ndcg@10": 0.45}`` and ``"last epoch"``): what
        ``make report`` shows for the run.
        """
        self.status = "finished"
        self._write_summary({
            "metrics": metrics,
            "headline": dict(headline or {}),
            "selection": selection,
            "published": published or {},
            "published_source": published_source,
            "reference": reference or {},
            "reference_source": reference_source,
            "epochs": epochs,
            "seed": seed,
            "hardware": hardware(device),
            **(extra or {}),
        })
        flat = _flatten(metrics)
        # A value keyed by the full name ("test/recall@10") applies to that row only; one keyed by
        # the bare metric ("hr@10") applies to every group of it ("best/hr@10", "last/hr@10").
        pub, ref = published or {}, reference or {}

        def match(table: Mapping[str, Any], k: str) -> Any:
            return table[k] if k in table else table.get(k.split("/")[-1])

        table = comparison_table(
            flat,
            {k: match(pub, k) for k in flat},
            {k: match(ref, k) for k in flat},
            published_source,
            reference_source,
        )
        with atomic_path(self.dir / "comparison.md") as tmp:
            tmp.write_text(table + "\n")
        if self.tb is not None:
            self.tb.close()
        return table


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _flatten(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, Mapping):
            flat.update(_flatten(v, f"{prefix}{k}/"))
        else:
            flat[f"{prefix}{k}"] = _plain(v)
    return flat
