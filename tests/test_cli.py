"""CLI contract: every command exists, usage and input errors exit 2 with one line and no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from audit.cli import app

runner = CliRunner()

COMMANDS = ["demo", "run", "profile", "train", "metrics", "report", "check", "dashboard", "init-policy"]


def test_help_lists_every_command():
    out = runner.invoke(app, ["--help"])
    assert out.exit_code == 0
    for cmd in COMMANDS + ["fiftyone"]:
        assert cmd in out.output
    out = runner.invoke(app, ["fiftyone", "--help"])
    assert out.exit_code == 0 and "export" in out.output


@pytest.mark.parametrize("cmd", COMMANDS)
def test_each_command_has_help(cmd):
    out = runner.invoke(app, [cmd, "--help"])
    assert out.exit_code == 0, out.output


def test_version():
    out = runner.invoke(app, ["--version"])
    assert out.exit_code == 0 and "imgaudit" in out.output


def _audit(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "audit", *args], capture_output=True, text=True, cwd=cwd)


def test_unknown_column_exits_2_one_line(demo_classify, tmp_path):
    p = _audit("profile", str(demo_classify.table), "--label", "digt", "--out", str(tmp_path / "r"))
    assert p.returncode == 2
    assert "did you mean 'digit'" in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_missing_data_exits_2(tmp_path):
    p = _audit("profile", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "r"))
    assert p.returncode == 2 and "does not exist" in p.stderr and "Traceback" not in p.stderr


def test_not_a_run_dir_exits_2(tmp_path):
    for cmd in (["train"], ["metrics"], ["report"]):
        p = _audit(*cmd, str(tmp_path))
        assert p.returncode == 2, (cmd, p.stderr)
        assert "run directory" in p.stderr and "Traceback" not in p.stderr


def test_bad_option_value_exits_2(tmp_path):
    out = runner.invoke(app, ["train", str(tmp_path), "--protocol", "nope"])
    assert out.exit_code == 2


def test_debug_shows_traceback(tmp_path):
    p = _audit("--debug", "profile", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "r"))
    assert p.returncode != 0 and "Traceback" in p.stderr


def test_empty_table_exits_2(tmp_path):
    t = tmp_path / "m.csv"
    t.write_text("path,label\n")
    p = _audit("profile", str(t), "--out", str(tmp_path / "r"))
    assert p.returncode == 2 and "empty" in p.stderr


def test_profile_on_a_folder_writes_a_manifest(demo_classify, tmp_path):
    p = _audit("profile", str(demo_classify.root / "images"), "--out", str(tmp_path / "r"), "--quiet")
    assert (tmp_path / "r" / "manifest.parquet").exists(), p.stderr
    assert (tmp_path / "r" / "run.json").exists()


def test_profile_check_selection_and_unknown_check(demo_classify, tmp_path):
    import json

    base = ["profile", str(demo_classify.table), "--path-col", "path", "--label", "digit", "--domain", "site"]
    p = _audit(*base, "--check", "distribution", "--n-boot", "50", "--out", str(tmp_path / "r"), "--quiet")
    assert p.returncode == 0, p.stderr
    checks = json.loads((tmp_path / "r" / "run.json").read_text())["stages"]["profile"]["checks"]
    assert set(checks) == {"distribution"}
    assert (tmp_path / "r" / "profile" / "distribution.parquet").exists()
    p = _audit(*base, "--check", "nope", "--out", str(tmp_path / "r2"))
    assert p.returncode == 2 and "unknown profile check 'nope'" in p.stderr


def test_summary_survives_hand_edited_findings_and_segmentation_next_step(demo_segment, tmp_path):
    """A findings.json entry without severity (or with markup-like text) is printed, not a MarkupError; a
    segmentation run without predictions is told to train next."""
    from conftest import ingest_demo
    from rich.console import Console

    from audit.console import _next_step, print_summary

    run = ingest_demo(demo_segment, tmp_path / "run")
    run.mark_stage("profile", "ok")
    (run.path / "findings.json").write_text('[{"x": 1}, {"severity": "[/]", "title": "[bold]x[/]"}]')
    con = Console(record=True, width=120)
    print_summary(run, console=con)
    out = con.export_text()
    assert "[bold]x[/]" in out and "next:" in out
    assert " train " in _next_step(run)


def test_numeric_options_are_validated_before_anything_is_written(demo_classify, tmp_path):
    for args in (["profile", str(demo_classify.root), "--min-n", "-5"],
                 ["profile", str(demo_classify.root), "--near-radius", "99"],
                 ["profile", str(demo_classify.root), "--depth", "0"]):
        r = _audit(*args, "--out", str(tmp_path / "r"))
        assert r.returncode == 2 and "Invalid value" in r.stdout + r.stderr, args
        assert not (tmp_path / "r").exists()


def test_metrics_without_predictions_says_what_to_do(demo_classify, tmp_path):
    from conftest import ingest_demo

    run = ingest_demo(demo_classify, tmp_path / "run")
    run.unlock()
    r = _audit("metrics", str(run.path))
    out = r.stdout + r.stderr
    assert r.returncode == 2 and "has no predictions yet" in out and "train" in out and "--predictions FILE" in out
