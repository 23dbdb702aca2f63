"""The built wheel ships the dashboard app and the recipes, and works outside the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    p = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(REPO)],
        capture_output=True,
        text=True,
    )
    if p.returncode != 0:
        p = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(REPO)],
            capture_output=True,
            text=True,
        )
    assert p.returncode == 0, p.stderr[-2000:]
    wheels = list(out.glob("imgaudit-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_wheel_contains_dashboard_and_recipes(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "audit/cli/__init__.py" in names
    assert "audit/_dashboards/app.py" in names, "dashboards/ must ship inside the wheel"
    assert any(n.startswith("audit/_recipes/") and n.endswith(".toml") for n in names)
    assert not any(n.startswith("tests/") for n in names)


def test_installed_wheel_runs_outside_the_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    p = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = (
        "import audit, pathlib; p = pathlib.Path(audit.__file__).parent; print(p);"
        "assert (p / '_dashboards' / 'app.py').is_file()\n"
        "from audit.dashboard import find_app; print(find_app())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith(str(target))
    assert lines[1].startswith(str(target)) and lines[1].endswith("app.py")
    cli = subprocess.run([sys.executable, "-m", "audit", "--help"], capture_output=True, text=True, cwd=tmp_path,
                         env=env)
    assert cli.returncode == 0 and "dashboard" in cli.stdout
