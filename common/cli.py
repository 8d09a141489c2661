"""Command-line rules shared by every ``main.py``: flag types, user errors, exit codes, divergence.

    from common.cli import add_run_flags, positive_int, probability, run_cli, DivergenceGuard

    p.add_argument("--epochs", type=positive_int, ...)
    add_run_flags(p)                         # --out/--resume/--overwrite/--debug
    ...
    if __name__ == "__main__":
        raise SystemExit(run_cli(main))

Exit codes (the same for every paper, ``make reproduce`` and ``python -m common.datasets``):

====  ===========================================================================================
0     finished
2     a bad flag (argparse's one-line message; nothing was written)
3     data: a dataset that cannot be had, a checksum mismatch, a malformed input file
4     the run diverged (a non-finite or exploding loss or metric); ``summary.json`` says so
5     the output folder: not writable, disk full, or already holding a run (``--resume``/``--overwrite``)
130   interrupted (Ctrl-C); ``--resume`` continues
====  ===========================================================================================

A user error prints one paragraph (what went wrong, which file or value, how to fix it) and no
traceback unless ``--debug`` is given. Programming errors keep their traceback.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

__all__ = [
    "EXIT_OK", "EXIT_USAGE", "EXIT_DATA", "EXIT_DIVERGED", "EXIT_OUTPUT", "EXIT_INTERRUPTED",
    "UserError", "DataError", "OutputError", "Diverged",
    "positive_int", "nonnegative_int", "positive_float", "nonnegative_float", "probability",
    "existing_file", "writable_dir", "add_run_flags", "run_cli", "DivergenceGuard", "is_finite",
    "output_error",
]

EXIT_OK, EXIT_USAGE, EXIT_DATA, EXIT_DIVERGED, EXIT_OUTPUT, EXIT_INTERRUPTED = 0, 2, 3, 4, 5, 130


class UserError(Exception):
    """An error the user can fix; printed as one paragraph, exit code ``code``."""

    code = EXIT_DATA


class DataError(UserError):
    """A dataset or input file that cannot be had, does not verify, or is malformed."""

    code = EXIT_DATA


class OutputError(UserError):
    """The output folder cannot take the run: not writable, full, or holding another run."""

    code = EXIT_OUTPUT


class Diverged(UserError):
    """A non-finite or exploding loss or metric; raised by :class:`DivergenceGuard`."""

    code = EXIT_DIVERGED

    def __init__(self, message: str, epoch: Optional[int] = None, step: Optional[int] = None,
                 value: Any = None, what: str = "loss"):
        super().__init__(message)
        self.epoch, self.step, self.value, self.what = epoch, step, value, what


# ----------------------------------------------------------------------------- argparse types
def _number(kind: Callable[[str], Any], text: str, ok: Callable[[Any], bool], need: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {need}") from None
    if isinstance(value, float) and not math.isfinite(value) or not ok(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not {need}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _number(int, text, lambda v: v >= 1, "a positive integer")


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _number(int, text, lambda v: v >= 0, "an integer >= 0")


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    return _number(float, text, lambda v: v > 0, "a positive number")


def nonnegative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    return _number(float, text, lambda v: v >= 0, "a number >= 0")


def probability(text: str) -> float:
    """argparse type: a probability in [0, 1) (dropout rates, ratios)."""
    return _number(float, text, lambda v: 0 <= v < 1, "a probability in [0, 1)")


def existing_file(text: str) -> str:
    """argparse type: a path to a readable file that exists."""
    p = Path(text).expanduser()
    if not p.is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is not an existing file")
    if not os.access(p, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text!r} cannot be read (permissions)")
    return str(p)


def writable_dir(text: str) -> str:
    """argparse type: a folder that exists and can be written, or can be created (nothing is created)."""
    p = Path(text).expanduser().absolute()
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} cannot be a folder: {probe} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text!r} cannot be written: {probe} is not writable")
    return str(p)


def add_run_flags(parser: argparse.ArgumentParser, out_help: str = "run folder") -> None:
    """``--out``, ``--resume``, ``--overwrite`` and ``--debug``, the same in every paper."""
    parser.add_argument("--out", type=writable_dir, default=None, help=out_help)
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out after its last finished epoch (a fresh run when empty)")
    parser.add_argument("--overwrite", action="store_true",
                        help="clear --out (records, checkpoints, TensorBoard events) and start again")
    parser.add_argument("--debug", action="store_true", help="show the traceback of user errors too")


# ----------------------------------------------------------------------------- errors
_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT}


def output_error(exc: OSError, folder: Optional[os.PathLike | str] = None) -> OutputError:
    """The :class:`OutputError` for a failed write (full disk, read-only or forbidden folder)."""
    where = folder or (Path(exc.filename).parent if getattr(exc, "filename", None) else "the output folder")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what, fix = "the disk is full", "free space there or choose another --out"
    elif exc.errno == errno.EROFS:
        what, fix = "the file system is read-only", "choose another --out"
    else:
        what, fix = "permission denied", "make it writable or choose another --out"
    name = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    return OutputError(f"cannot write in {where}{name}: {what}. Nothing was left half-written; {fix}, "
                       f"then run again with --resume to continue from the last finished epoch.")


def _paragraph(text: str) -> str:
    lines = [line.rstrip() for line in str(text).strip().splitlines()]
    return "\n".join(textwrap.fill(line, 100, subsequent_indent="  ", break_on_hyphens=False, break_long_words=False) if len(line) > 100 else line
                     for line in lines)


def run_cli(main: Callable[[Optional[list[str]]], int], argv: Optional[Sequence[str]] = None,
            prog: Optional[str] = None) -> int:
    """Run ``main(argv)`` and turn user errors into one paragraph and an exit code.

    ``--debug`` in ``argv`` re-raises instead, so the traceback shows. Errors that are not the user's
    (anything but :class:`UserError`, the dataset errors of :mod:`common.datasets` and write failures
    for lack of space or permission) propagate with their traceback.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    prog = prog or Path(sys.argv[0]).name
    try:
        return int(main(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"\n{prog}: interrupted; run the same command with --resume to continue.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - classified below, re-raised when not the user's
        err = as_user_error(e)
        if err is None or debug:
            raise
        print(f"{prog}: error: {_paragraph(str(err))}", file=sys.stderr)
        return err.code


def as_user_error(e: BaseException) -> Optional[UserError]:
    """``e`` as a :class:`UserError` when it is one the user can fix, else None."""
    if isinstance(e, UserError):
        return e
    from common.datasets import DatasetError  # late: datasets imports this module

    if isinstance(e, DatasetError):
        return DataError(str(e))
    if isinstance(e, OSError) and e.errno in _OUTPUT_ERRNOS:
        return output_error(e)
    return None


# ----------------------------------------------------------------------------- divergence
def is_finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True  # not a number: nothing to check


class DivergenceGuard:
    """Stops a run at the first non-finite (or exploding) loss or metric.

        guard = DivergenceGuard(hint="lower --lr (now 1e6)")
        guard.loss(loss.item(), epoch, step)         # every step
        guard.metrics({"hr@10": hr}, epoch)          # after every evaluation

    A loss counts as exploding when it exceeds ``explode`` times the first loss seen (and
    ``explode_floor``): healthy training never multiplies its loss by 10^4, a diverging one (a loss of
    1.9e35) does. :class:`Diverged` carries the epoch, step and value; :class:`common.runs.RunRecord`
    writes ``"status": "diverged"`` when it leaves its ``with`` block through it.
    """

    def __init__(self, hint: str = "lower the learning rate (--lr)", explode: float = 1e4,
                 explode_floor: float = 1e3):
        self.hint, self.explode, self.explode_floor = hint, explode, explode_floor
        self.first: Optional[float] = None

    def loss(self, value: Any, epoch: int, step: Optional[int] = None, what: str = "loss") -> None:
        v = float(value)
        where = f"epoch {epoch}" + (f", step {step}" if step is not None else "")
        if not math.isfinite(v):
            raise Diverged(f"the run diverged: {what} is {v} at {where}. Likely fix: {self.hint}. The last "
                           f"finished epoch's checkpoint and records are kept.", epoch, step, v, what)
        if self.first is None:
            self.first = abs(v)
        elif abs(v) > max(self.explode * self.first, self.explode_floor):
            raise Diverged(f"the run diverged: {what} exploded to {v:.3g} at {where} (first {what} "
                           f"{self.first:.3g}). Likely fix: {self.hint}. The last finished epoch's checkpoint "
                           f"and records are kept.", epoch, step, v, what)

    def metrics(self, values: Mapping[str, Any], epoch: int) -> None:
        for k, v in _flat(values).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isfinite(float(v)):
                raise Diverged(f"the run diverged: metric {k} is {v} at epoch {epoch}. Likely fix: {self.hint}. "
                               f"The last finished epoch's checkpoint and records are kept.", epoch, None, v, k)


def _flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v.item() if hasattr(v, "item") and getattr(v, "ndim", 0) == 0 else v
    return out
