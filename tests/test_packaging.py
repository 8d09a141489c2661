"""Install metadata, pins, `make reproduce` entry point and the two ways of running a main.py."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAPERS = ("mbgmn_tf", "fgnn", "agnn", "mpm", "gcsan")


def _pins(lines):
    return sorted(l.strip().lstrip("- ").strip() for l in lines if re.match(r"^\s*-?\s*[A-Za-z][\w.-]*==", l))


def test_pins_agree_between_requirements_and_environment_yml():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    env = _pins((ROOT / "environment.yml").read_text().splitlines())
    assert req == env
    assert "torch==2.13.0" in req
    assert not any(p.startswith(("torch-scatter", "torch-sparse", "torch_scatter", "tf-keras")) for p in req)
    assert "python=3.11" in (ROOT / "environment.yml").read_text()


def test_packages_importable():
    import importlib

    for name in ("common", "common.metrics", "common.datasets", "common.runs", *PAPERS):
        importlib.import_module(name)


def test_reproduce_names_unimplemented_papers():
    import importlib

    missing = [p for p in PAPERS if not importlib.import_module(p).IMPLEMENTED]
    bad = subprocess.run([sys.executable, "-m", "common.reproduce", "nonsense"], cwd=ROOT,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "valid" in bad.stderr and "mpm" in bad.stderr
    if missing:
        r = subprocess.run([sys.executable, "-m", "common.reproduce", missing[0]], cwd=ROOT,
                           capture_output=True, text=True)
        assert r.returncode == 1 and "not implemented yet" in r.stderr and missing[0] in r.stderr


@pytest.mark.parametrize("paper", [p for p in PAPERS if (ROOT / p / "main.py").is_file()])
def test_main_runs_as_script_and_module(paper):
    for cmd in ([sys.executable, f"{paper}/main.py", "--help"], [sys.executable, "-m", f"{paper}.main", "--help"]):
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "usage" in r.stdout.lower()
