"""The shipped example policies and CI snippets are valid, and the example policy separates biased from clean."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit.check import load_policy, run_check
from audit.testing import make_fake_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["policy.toml", "policy-profile.toml"])
def test_example_policies_parse(name):
    assert load_policy(ROOT / "examples" / name).rules


def test_ci_snippets():
    yaml = pytest.importorskip("yaml")
    gh = yaml.safe_load((ROOT / "examples/ci/github-workflow.yml").read_text())
    steps = gh["jobs"]["audit"]["steps"]
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("actions/cache") for u in uses)
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert "report.html" in upload["with"]["path"] and "junit.xml" in upload["with"]["path"]
    assert upload.get("if") == "always()"
    assert any("audit check" in s.get("run", "") and "--github" in s.get("run", "") for s in steps)
    gl = yaml.safe_load((ROOT / "examples/ci/gitlab-ci.yml").read_text())
    assert gl["audit"]["artifacts"]["reports"]["junit"] == "junit.xml"
    pc = yaml.safe_load((ROOT / "examples/ci/pre-commit-config.yaml").read_text())
    entry = pc["repos"][0]["hooks"][0]["entry"]
    assert "examples/policy-profile.toml" in entry and (ROOT / "examples/policy-profile.toml").exists()


def test_example_policy_fails_biased_and_passes_clean(tmp_path):
    pol = ROOT / "examples" / "policy.toml"
    biased = run_check(make_fake_run(tmp_path / "b").path, pol, write=False)
    clean = run_check(make_fake_run(tmp_path / "c", biased=False).path, pol, write=False)
    assert clean.exit_code == 0, [(r.id, r.message) for r in clean.rules if r.status == "fail"]
    failed = {r.id for r in biased.rules if r.status == "fail"}
    assert biased.exit_code == 1
    assert {"no-split-leakage", "no-label-conflicts", "no-spurious-association", "worst-group-accuracy",
            "generalization-gap", "demographic-parity"} <= failed
