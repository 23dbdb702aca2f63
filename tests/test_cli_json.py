"""``--json``: stdout is exactly one strict JSON document (NaN as null), everything else goes to stderr, and the exit
codes are those of the command without ``--json``; ``audit findings`` lists a run's findings."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from audit.cli import app

runner = CliRunner()
FINDING_KEYS = {"check", "severity", "title", "effect", "interval", "n"}
FAST_TRAIN = ["--epochs", "1", "--model", "small_cnn", "--device", "cpu"]


def _strict(text: str):
    """Parse one JSON document, refusing NaN and Infinity (what ``json.dumps(..., allow_nan=False)`` refuses)."""

    def refuse(c):
        raise AssertionError(f"{c} in the JSON output")

    doc = json.loads(text, parse_constant=refuse)
    json.dumps(doc, allow_nan=False)
    return doc


def _invoke(*args, env=None):
    r = runner.invoke(app, [str(a) for a in args], env=env)
    return r, (_strict(r.stdout) if r.stdout.strip() else None)


@pytest.fixture(scope="module")
def small(demo_classify, tmp_path_factory):
    """50 images per site of the classification demo: every stage runs in seconds."""
    df = pd.read_csv(demo_classify.table)
    df = pd.concat([g.sample(50, random_state=0) for _, g in df.groupby("site")])
    table = tmp_path_factory.mktemp("json") / "small.csv"
    df.to_csv(table, index=False)
    return ["--path-col", "path", "--label", "digit", "--domain", "site", "--attr", "background",
            "--root", str(demo_classify.root)], table


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    """A finished fake run (``audit.testing.make_fake_run``) for the commands that only read a run."""
    from audit.testing import make_fake_run

    return make_fake_run(tmp_path_factory.mktemp("json") / "fake").path


def _assert_run_document(doc, command, path, n=150):
    assert doc["command"] == command and doc["path"] == str(path)
    assert doc["dataset"]["n"] == n
    assert isinstance(doc["stages"], dict) and doc["stages"]["manifest"]["status"] == "ok"
    assert doc["findings"], doc
    for f in doc["findings"]:
        assert FINDING_KEYS <= set(f)
        assert f["severity"] in ("critical", "warning", "info")
        assert f["interval"] is None or (len(f["interval"]) == 2 and f["ci_low"] == f["interval"][0])
    assert "tables" in doc and "headline" in doc


def test_run_json(small, tmp_path):
    flags, table = small
    r, doc = _invoke("run", table, *flags, *FAST_TRAIN, "--out", tmp_path / "run", "--json")
    assert r.exit_code == 0, r.stderr[-2000:]
    _assert_run_document(doc, "run", tmp_path / "run")
    assert {doc["stages"][s]["status"] for s in ("profile", "train", "metrics", "report")} == {"ok"}
    assert "outputs:" in r.stderr and "next:" in r.stderr  # the summary went to stderr
    assert doc["headline"]["overall"] is not None


def test_stdout_goes_to_stderr_also_from_child_processes(tmp_path):
    """Under --json, file descriptor 1 is stderr too: torchrun's or Ray's workers cannot write to stdout."""
    code = (
        "import os, subprocess, sys\n"
        "from audit.cli.jsonout import json_command\n"
        "def cmd():\n"
        "    print('python print'); os.write(1, b'fd write\\n')\n"
        "    subprocess.run([sys.executable, '-c', 'print(\"child\")'])\n"
        "    return {'ok': float('nan')}\n"
        "json_command(cmd, last_error=lambda: None)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert _strict(p.stdout) == {"ok": None}
    for line in ("python print", "fd write", "child"):
        assert line in p.stderr


def test_profile_train_metrics_report_json(small, tmp_path):
    flags, table = small
    run = tmp_path / "p"
    r, doc = _invoke("profile", table, *flags, "--check", "distribution", "--n-boot", "20", "--out", run, "--json")
    assert r.exit_code == 0, r.stderr
    _assert_run_document(doc, "profile", run)
    assert doc["stages"]["profile"]["status"] == "ok" and "train" not in doc["stages"]
    assert "outputs:" in r.stderr
    for cmd, extra in (("train", FAST_TRAIN), ("metrics", ["--n-boot", "20"]), ("report", [])):
        r, doc = _invoke(cmd, run, *extra, "--json")
        assert r.exit_code == 0, (cmd, r.stderr)
        _assert_run_document(doc, cmd, run)
        assert doc["stages"][cmd]["status"] == "ok"
    assert (run / "report.html").exists()


def test_init_policy_and_check_json_keep_the_gate_exit_code(fake, tmp_path):
    run = fake
    pol = tmp_path / "policy.toml"
    r, doc = _invoke("init-policy", run, "--out", pol, "--json")
    assert r.exit_code == 0, r.stderr
    assert doc["policy"] == str(pol) and doc["rules"] and "wrote" in r.stderr
    r, doc = _invoke("check", run, "--policy", pol, "--json")
    assert r.exit_code == 0 and doc["passed"] is True and doc["exit_code"] == 0 and doc["failures"] == []
    assert doc["rules"] and {"id", "status", "value", "threshold", "n"} <= set(doc["rules"][0])
    strict = tmp_path / "strict.toml"
    strict.write_text('[[rule]]\ncheck = "worst_group"\nthreshold = 1.01\n')
    summary = tmp_path / "step.md"
    r, doc = _invoke("check", run, "--policy", strict, "--github", "--json", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert r.exit_code == 1 and doc["passed"] is False and doc["exit_code"] == 1
    assert [f["id"] for f in doc["failures"]] == ["worst_group-1"]
    assert "::error" in r.stderr  # the workflow annotations too are off stdout
    r, doc = _invoke("check", run, "--policy", tmp_path / "missing.toml", "--json")
    assert r.exit_code == 2 and doc["exit_code"] == 2 and "does not exist" in doc["error"]


def test_a_failing_command_prints_an_error_document(small, tmp_path):
    flags, table = small
    r, doc = _invoke("profile", table, "--path-col", "path", "--label", "digt", "--root", flags[-1], "--out",
                     tmp_path / "r", "--json")
    assert r.exit_code == 2
    assert doc["exit_code"] == 2 and "did you mean 'digit'" in doc["error"]
    assert "error:" in r.stderr and len(r.stdout.strip().splitlines()) == 1
    r, doc = _invoke("report", tmp_path / "nope", "--json")
    assert r.exit_code == 2 and doc["exit_code"] == 2 and "run directory" in doc["error"]


def test_findings_table_json_and_severity_filter(fake):
    run = fake
    r = runner.invoke(app, ["findings", str(run)])
    assert r.exit_code == 0, r.stderr
    for col in ("severity", "check", "title", "why"):
        assert col in r.stdout
    r, doc = _invoke("findings", run, "--json")
    assert r.exit_code == 0 and doc["n"] == len(doc["findings"]) > 0
    on_disk = json.loads((run / "findings.json").read_text())
    assert sorted(f["id"] for f in doc["findings"]) == sorted(f["id"] for f in on_disk)
    r, crit = _invoke("findings", run, "--severity", "warning", "--json")
    assert {f["severity"] for f in crit["findings"]} <= {"critical", "warning"}
    assert crit["n"] == sum(f["severity"] != "info" for f in doc["findings"])
    kind = doc["findings"][0]["check"]
    r, one = _invoke("findings", run, "--check", kind, "--json")
    assert one["n"] >= 1 and {f["check"] for f in one["findings"]} == {kind}
    assert runner.invoke(app, ["findings", str(run), "--severity", "bad"]).exit_code == 2


def test_nan_values_become_null(fake, tmp_path):
    from audit.cli.jsonout import dumps

    assert json.loads(dumps({"a": float("nan"), "b": np.float64("inf"), "c": pd.NA, "d": [np.int64(3), (1.5,)],
                             "e": pd.NaT})) == {"a": None, "b": None, "c": None, "d": [3, [1.5]], "e": None}
    run = tmp_path / "run"
    shutil.copytree(fake, run)
    findings = json.loads((run / "findings.json").read_text())
    findings[0].update(value=math.nan, ci=[math.nan, math.inf], n=None)
    (run / "findings.json").write_text(json.dumps(findings))  # Python writes the non-standard NaN / Infinity
    r, doc = _invoke("findings", run, "--json")
    assert r.exit_code == 0, r.stderr
    first = next(f for f in doc["findings"] if f["id"] == findings[0]["id"])
    assert first["effect"] is None and first["ci_low"] is None and first["ci_high"] is None and first["n"] is None
    r, doc = _invoke("report", run, "--json")
    assert r.exit_code == 0, r.stderr
