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
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

__all__ = ["atomic_path", "write_json", "hardware", "comparison_table", "RunRecord", "ScalarWriter"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

        with atomic_path(ckpt) as tmp:
            torch.save(state, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


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
    return str(v)


def comparison_table(
    metrics: Mapping[str, float],
    published: Optional[Mapping[str, Any]] = None,
    reference: Optional[Mapping[str, Any]] = None,
    published_source: str = "",
    reference_source: str = "",
) -> str:
    """Markdown table: metric | published | reference | this run | delta (this run - published).

    A published or reference value may be a number or a string such as
    ``"not available offline"``; delta is shown only where both are numbers.
    """
    published, reference = published or {}, reference or {}
    rows = [("metric", "published", "reference", "this run", "delta")]
    for name, value in metrics.items():
        pub, ref = published.get(name), reference.get(name)
        num = isinstance(pub, (int, float)) and isinstance(value, (int, float))
        delta = f"{value - pub:+.4f}" if num else "-"
        rows.append((name, _fmt(pub), _fmt(ref), _fmt(value), delta))
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
    ):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.paper, self.dataset = paper, dataset
        self.config = dict(config)
        self.history: list[dict[str, Any]] = []
        self._wall_before = 0.0
        if resume and (self.dir / "metrics.jsonl").is_file():
            with open(self.dir / "metrics.jsonl") as f:
                self.history = [json.loads(line) for line in f if line.strip()]
            state = self._read_json("state.json") or {}
            self._wall_before = float(state.get("wall_seconds", 0.0))
        self._start = time.time()
        write_json(self.dir / "config.json", {"paper": paper, "dataset": dataset, **self.config})
        self.tb = ScalarWriter(self.dir / "tb") if tensorboard else None

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
            tmp.write_text("".join(json.dumps(h) + "\n" for h in self.history))
        write_json(self.dir / "state.json", {"wall_seconds": self.wall_seconds, "last_epoch": epoch})
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
    ) -> str:
        """Write ``summary.json`` and return the comparison table (also saved as ``comparison.md``).

        ``metrics`` may be nested (``{"best": {...}, "last": {...}}``); the table shows the flat
        numeric entries, prefixed with their group.
        """
        summary = {
            "paper": self.paper,
            "dataset": self.dataset,
            "metrics": metrics,
            "published": published or {},
            "published_source": published_source,
            "reference": reference or {},
            "reference_source": reference_source,
            "epochs": epochs,
            "seed": seed,
            "wall_seconds": round(self.wall_seconds, 2),
            "hardware": hardware(device),
            **(extra or {}),
        }
        write_json(self.dir / "summary.json", summary)
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
