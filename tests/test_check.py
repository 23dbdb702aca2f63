"""audit check: every rule type passing and failing, malformed policies, outputs, baseline regression."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from audit.check import parse_policy, run_check
from audit.cli import app
from audit.rundir import RunDir
from audit.testing import assert_no_leakage, assert_policy, make_fake_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("chk")
    return {
        "biased": make_fake_run(base / "biased"),
        "clean": make_fake_run(base / "clean", biased=False),
        "segment": make_fake_run(base / "seg", task="segment"),
        "profile": make_fake_run(base / "prof", profile_only=True),
    }


def policy(tmp_path: Path, body: str, head: str = "") -> Path:
    p = tmp_path / "policy.toml"
    p.write_text((head + "\n" if head else "") + body)
    return p


def check(run: RunDir, tmp_path: Path, body: str, **kw):
    return run_check(run.path, policy(tmp_path, body), write=False, **kw)


def only(res):
    assert res.exit_code in (0, 1), res.error
    assert len(res.rules) == 1
    return res.rules[0]


# ---------------------------------------------------------------------------------------------- every rule type
# (check body, value the fake biased run gives, threshold that passes, threshold that fails)
def _groups_min(run, metric="accuracy", by=None, bound="value"):
    g = run.read_table("metrics/groups.parquet")
    g = g[(g.metric == metric) & (g.fold == "all") & (g.status == "ok")]
    g = g[g.scope == ("ood" if (g.scope == "ood").any() else "all")]
    g = g[g.by != "overall"] if by is None else g[g.by.isin(by)]
    return float(g[bound].min())


@pytest.mark.parametrize("bound", ["value", "ci_low"])
def test_worst_group_pass_and_fail_against_reference(runs, tmp_path, bound):
    run = runs["biased"]
    ref = _groups_min(run, bound=bound)
    body = f'[[rule]]\ncheck = "worst_group"\nbound = "{bound}"\nthreshold = {{t}}\n'
    ok = only(check(run, tmp_path, body.format(t=round(ref - 0.01, 4))))
    bad = only(check(run, tmp_path, body.format(t=round(ref + 0.01, 4))))
    assert ok.status == "pass" and bad.status == "fail"
    assert bad.value == pytest.approx(ref)
    assert bad.n >= 30 and bad.ci is not None
    assert "accuracy" in bad.message and str(bad.n) in bad.message


def test_group_metric_segment_miou_per_domain(runs, tmp_path):
    run = runs["segment"]
    ref = _groups_min(run, metric="miou", by=["domain"])
    body = '[[rule]]\ncheck = "group_metric"\nmetric = "miou"\nby = "domain"\nop = ">="\nthreshold = {t}\n'
    assert only(check(run, tmp_path, body.format(t=ref - 0.01))).status == "pass"
    r = only(check(run, tmp_path, body.format(t=ref + 0.01)))
    assert r.status == "fail" and r.group.startswith("domain=")


def test_warn_severity_never_fails_the_check(runs, tmp_path):
    res = check(runs["biased"], tmp_path, '[[rule]]\ncheck = "worst_group"\nthreshold = 0.99\nseverity = "warn"\n')
    assert res.exit_code == 0 and res.rules[0].status == "warn"


@pytest.mark.parametrize(
    "check_name,table,col,extra",
    [
        ("fairness", "metrics/fairness.parquet", "value", 'metric = "dp_diff"\n'),
        ("fairness", "metrics/fairness.parquet", "value", 'metric = "eo_diff"\nattribute = "attr.background"\n'),
        ("generalization_gap", "metrics/generalization.parquet", "gap", ""),
        ("ece", "metrics/groups.parquet", "value", ""),
        ("imbalance_ratio", "profile/imbalance.parquet", "imbalance_ratio", ""),
    ],
)
def test_upper_bounded_rules(runs, tmp_path, check_name, table, col, extra):
    run = runs["biased"]
    t = run.read_table(table)
    if check_name == "ece":
        t = t[t.metric == "ece"]
    if "metric = " in extra and check_name == "fairness":
        t = t[t.metric == extra.split('"')[1]]
    if "attribute" in extra:
        t = t[t.attribute == "attr.background"]
    ref = float(t[col].max())
    body = f'[[rule]]\ncheck = "{check_name}"\n{extra}threshold = {{t}}\n'
    assert only(check(run, tmp_path, body.format(t=ref + 0.001))).status == "pass"
    bad = only(check(run, tmp_path, body.format(t=ref - 0.001)))
    assert bad.status == "fail" and bad.value == pytest.approx(ref)


def test_association_rule_uses_significance(runs, tmp_path):
    body = '[[rule]]\ncheck = "association"\ncolumns = ["label"]\nthreshold = 0.3\n'
    bad = only(check(runs["biased"], tmp_path, body))
    assert bad.status == "fail" and "attr.background" in bad.group
    a = runs["biased"].read_table("profile/associations.parquet")
    assert bad.value == pytest.approx(a[(a.a == "label") & (a.b == "attr.background")]["value"].iloc[0])
    assert only(check(runs["clean"], tmp_path, body)).status == "pass"  # nothing significant
    # the lower bound of the interval is stricter evidence than the point value
    lo = only(check(runs["biased"], tmp_path, body.replace("0.3", "0.45") + 'bound = "ci_low"\n'))
    assert lo.status == "pass"


@pytest.mark.parametrize("name,biased_count", [("no_split_leakage", 3), ("no_label_conflicts", 1),
                                               ("no_unreadable_files", 2)])
def test_profile_count_rules(runs, tmp_path, name, biased_count):
    bad = only(check(runs["biased"], tmp_path, f'[[rule]]\ncheck = "{name}"\n'))
    assert bad.status == "fail" and bad.value == biased_count
    assert only(check(runs["clean"], tmp_path, f'[[rule]]\ncheck = "{name}"\n')).status == "pass"
    assert only(check(runs["biased"], tmp_path,
                      f'[[rule]]\ncheck = "{name}"\nmax_count = {biased_count}\n')).status == "pass"


def test_shortcut_and_findings_rules(runs, tmp_path):
    r = only(check(runs["biased"], tmp_path, '[[rule]]\ncheck = "shortcut"\ntarget = "domain"\nthreshold = 0.2\n'))
    assert r.status == "fail" and r.value == pytest.approx(0.8 - 1 / 3)
    r = only(check(runs["biased"], tmp_path, '[[rule]]\ncheck = "findings"\nkinds = ["split_leakage"]\n'))
    assert r.status == "fail" and r.value == 1
    r = only(check(runs["clean"], tmp_path, '[[rule]]\ncheck = "findings"\nmin_severity = "critical"\n'))
    assert r.status == "pass"


def test_insufficient_groups(runs, tmp_path):
    run = runs["biased"]
    # min_n above every group size: no verdict, per on_insufficient
    body = '[[rule]]\ncheck = "worst_group"\nthreshold = 0.99\nmin_n = 100000\non_insufficient = "{o}"\n'
    assert only(check(run, tmp_path, body.format(o="skip"))).status == "skip"
    assert only(check(run, tmp_path, body.format(o="warn"))).status == "warn"
    assert only(check(run, tmp_path, body.format(o="fail"))).status == "fail"


def test_profile_only_run_missing_tables(runs, tmp_path):
    body = '[[rule]]\ncheck = "worst_group"\nthreshold = 0.5\n'
    r = only(check(runs["profile"], tmp_path, body))
    assert r.status == "fail" and "metrics/groups.parquet" in r.message
    res = check(runs["profile"], tmp_path, body, )
    assert res.exit_code == 1
    res = check(runs["profile"], tmp_path, '[policy]\non_missing = "skip"\n' + body)
    assert res.exit_code == 0 and res.rules[0].status == "skip"


# ---------------------------------------------------------------------------------------------- malformed policies
BAD = [
    ('[[rule]]\ncheck = "wrost_group"\nthreshold = 0.5\n',
     ["policy.toml:2", "unknown check 'wrost_group'", "worst_group"]),
    ('[[rule]]\ncheck = "worst_group"\nop = "=>"\nthreshold = 0.5\n',
     ["policy.toml:3", "op = '=>'", "did you mean '>='"]),
    ('[[rule]]\ncheck = "ece"\nop = "=<"\nthreshold = 0.5\n', ["policy.toml:3", "op = '=<'", "did you mean '<='"]),
    ('[[rule]]\ncheck = "ece"\nop = "lte"\nthreshold = 0.5\n', ["policy.toml:3", "did you mean '<='"]),
    ('[[rule]]\ncheck = "worst_group"\nthreshold = "high"\n', ["policy.toml:3", "threshold must be a number"]),
    ('[[rule]]\ncheck = "worst_group"\nthreshold = 0.5\ntreshold = 0.6\n', ["policy.toml:4", "unknown key 'treshold'"]),
    ('[[rule]]\ncheck = "worst_group"\n', ["missing required key 'threshold'"]),
    ('[[rule]]\ncheck = "worst_group"\nmetric = "acuracy"\nthreshold = 0.5\n',
     ["policy.toml:3", "metric 'acuracy' is not in the run", "did you mean 'accuracy'"]),
    ('[[rule]]\ncheck = "fairness"\nmetric = "dp_dif"\nthreshold = 0.1\n', ["policy.toml:3", "dp_diff"]),
    ('[[rule]]\ncheck = "fairness"\nmetric = "dp_diff"\nattribute = "attr.skin"\nthreshold = 0.1\n',
     ["policy.toml:4", "attribute 'attr.skin'"]),
    ('[[rule]]\ncheck = "worst_group"\nthreshold = 0.5\nseverity = "fatal"\n', ["policy.toml:4", "severity"]),
    ('[[rule]]\ncheck = "worst_group"\nthreshold = 0.5\nmin_n = 2.5\n', ["min_n must be an integer"]),
    ('[[rule]]\ncheck = "worst_group"\nthreshold = 0.5\non_insufficient = "ignore"\n', ["on_insufficient"]),
    ('[policy]\nmin_m = 3\n[[rule]]\ncheck = "worst_group"\nthreshold = 0.5\n', ["policy.toml:2", "min_m", "min_n"]),
    ('[[rules]]\ncheck = "worst_group"\n', ["unknown top-level key 'rules'", "did you mean 'rule'"]),
    ('[[rule]]\ncheck = "worst_group"\nthreshold = 0.5\n'
     '[[rule]]\ncheck = "ece"\nthreshold = 0.1\nid = "worst_group-1"\n',
     ["duplicate rule id"]),
    ('[[rule]\ncheck = "x"\n', ["invalid TOML", "line 1"]),
    ("", ["no [[rule]] tables"]),
    ('[[rule]]\ncheck = "findings"\nkinds = ["leakage"]\n', ["policy.toml:3", "unknown finding kind 'leakage'"]),
]


@pytest.mark.parametrize("text,needles", BAD)
def test_malformed_policy_exit_2_through_cli(runs, tmp_path, text, needles):
    p = policy(tmp_path, text)
    result = CliRunner().invoke(app, ["check", str(runs["biased"].path), "--policy", str(p)])
    assert result.exit_code == 2, result.output
    out = result.output
    for needle in needles:
        assert needle in out, (needle, out)
    assert "Traceback" not in out


def test_bad_run_dir_and_missing_policy_exit_2(runs, tmp_path):
    p = policy(tmp_path, '[[rule]]\ncheck = "worst_group"\nthreshold = 0.5\n')
    r = CliRunner().invoke(app, ["check", str(tmp_path / "nope"), "--policy", str(p)])
    assert r.exit_code == 2 and "does not exist" in r.output
    r = CliRunner().invoke(app, ["check", str(runs["biased"].path), "--policy", str(tmp_path / "missing.toml")])
    assert r.exit_code == 2 and "init-policy" in r.output
    damaged = tmp_path / "damaged"
    shutil.copytree(runs["biased"].path, damaged)
    (damaged / "metrics" / "groups.parquet").write_bytes(b"garbage")
    r = CliRunner().invoke(app, ["check", str(damaged), "--policy", str(p)])
    assert r.exit_code == 2 and "groups.parquet" in r.output


def test_parse_is_not_evaluation(tmp_path):
    # TOML is data: an "expression" threshold is a type error, not code
    with pytest.raises(Exception, match="must be a number"):
        parse_policy('[[rule]]\ncheck = "worst_group"\nthreshold = "__import__(\'os\').system(\'true\')"\n')


# ---------------------------------------------------------------------------------------------- outputs
FULL = """
[policy]
name = "gate"
[[rule]]
id = "wg"
check = "worst_group"
bound = "ci_low"
threshold = 0.6
[[rule]]
id = "leak"
check = "no_split_leakage"
[[rule]]
id = "cal"
check = "ece"
threshold = 0.5
[[rule]]
id = "reg"
check = "regression"
max_drop = 0.02
[[rule]]
id = "dp"
check = "fairness"
metric = "dp_diff"
threshold = 0.2
severity = "warn"
"""


def test_cli_outputs_junit_result_summary(runs, tmp_path, monkeypatch):
    run = runs["biased"]
    p = policy(tmp_path, FULL)
    junit = tmp_path / "out" / "junit.xml"
    summary = tmp_path / "step_summary.md"
    summary.write_text("previous step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    r = CliRunner().invoke(app, ["check", str(run.path), "--policy", str(p), "--junit", str(junit), "--github"])
    assert r.exit_code == 1, r.output
    # JUnit: one testcase per rule, right counts
    root = ET.parse(junit).getroot()
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["wg", "leak", "cal", "reg", "dp"]
    fails = [c for c in cases if c.find("failure") is not None]
    assert {c.get("name") for c in fails} == {"wg", "leak"}
    assert suite.get("tests") == "5" and suite.get("failures") == "2" and suite.get("skipped") == "1"
    assert root.get("failures") == "2"
    msg = fails[0].find("failure").get("message")
    assert "threshold=>= 0.600" in msg and "ci=[" in msg and "n=" in msg
    assert (run.path / "check" / "junit.xml").read_text() == junit.read_text()
    # result.json follows docs/formats.md
    import json

    res = json.loads((run.path / "check" / "result.json").read_text())
    assert res["passed"] is False and res["exit_code"] == 1
    assert {"id", "rule", "severity", "status", "value", "threshold", "ci", "n", "message"} <= set(res["rules"][0])
    # GitHub: summary appended, annotations
    text = summary.read_text()
    assert text.startswith("previous step\n") and "audit check FAILED" in text and "| status | rule |" in text
    ann = [ln for ln in r.output.splitlines() if ln.startswith("::")]
    assert ann[0].startswith("::error file=") and "title=audit check%3A wg" in ann[0]
    assert any(a.startswith("::warning") for a in ann)
    assert (run.path / "check" / "summary.md").read_text().count("audit check FAILED") == 1


def test_github_annotations_capped_at_10(runs, tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    body = "".join(f'[[rule]]\nid = "r{i}"\ncheck = "worst_group"\nthreshold = 0.99\n' for i in range(14))
    res = run_check(runs["biased"].path, policy(tmp_path, body), github=True, write=False)
    assert res.exit_code == 1 and len(res.annotations) == 10
    assert all(a.startswith("::error ") for a in res.annotations)


def test_pass_exit_0(runs, tmp_path):
    r = CliRunner().invoke(app, ["check", str(runs["clean"].path), "--policy",
                                 str(policy(tmp_path, '[[rule]]\ncheck = "worst_group"\nthreshold = 0.5\n'))])
    assert r.exit_code == 0, r.output
    assert "PASSED" in r.output


# ---------------------------------------------------------------------------------------------- baseline regression
def _shifted_copy(run: RunDir, dst: Path, delta: float, widen: float = 0.0) -> RunDir:
    shutil.copytree(run.path, dst)
    out = RunDir(dst)
    g = out.read_table("metrics/groups.parquet")
    acc = g.metric == "accuracy"
    g.loc[acc, "value"] = g.loc[acc, "value"] + delta
    g.loc[acc, "ci_low"] = g.loc[acc, "ci_low"] + delta - widen
    g.loc[acc, "ci_high"] = g.loc[acc, "ci_high"] + delta + widen
    out.write_table("metrics/groups.parquet", g)
    return out


REG = '[[rule]]\ncheck = "regression"\nof = "{of}"\nmax_drop = 0.02\n'


@pytest.mark.parametrize("of", ["worst_group", "overall", "groups"])
def test_regression_judged_on_intervals(runs, tmp_path, of):
    old = runs["biased"]
    big = _shifted_copy(old, tmp_path / "big", -0.45)  # a drop far beyond the intervals
    small = _shifted_copy(old, tmp_path / "small", -0.01)
    noisy = _shifted_copy(old, tmp_path / "noisy", -0.05, widen=0.3)  # drop > margin, but intervals huge
    p = policy(tmp_path, REG.format(of=of))
    assert only(run_check(big.path, p, baseline=old.path, write=False)).status == "fail"
    assert only(run_check(small.path, p, baseline=old.path, write=False)).status == "pass"
    r = only(run_check(noisy.path, p, baseline=old.path, write=False))
    assert r.status == "warn" and "inconclusive" in r.message
    assert r.value == pytest.approx(0.05) and r.ci[0] < 0.02 < r.ci[1]
    # without --baseline the rule is skipped, not passed silently
    assert only(run_check(big.path, p, write=False)).status == "skip"


def test_regression_point_drop_alone_does_not_fail(runs, tmp_path):
    # a raw drop of 0.03 > 0.02 with ordinary intervals: not conclusive
    old = runs["biased"]
    new = _shifted_copy(old, tmp_path / "n", -0.03)
    r = only(run_check(new.path, policy(tmp_path, REG.format(of="worst_group")), baseline=old.path, write=False))
    assert r.status == "warn"


def test_starter_policy_catches_an_overall_regression(runs, tmp_path):
    """The starter policy gates the overall value (and each domain) against a baseline, not only the worst group:
    a clear overall drop fails; the run against itself passes."""
    old = runs["biased"]
    out = tmp_path / "p.toml"
    assert CliRunner().invoke(app, ["init-policy", str(old.path), "--out", str(out)]).exit_code == 0
    ids = {r.id for r in parse_policy(out.read_text(), out).rules}
    assert {"no-regression-overall", "no-regression"} <= ids
    worse = _shifted_copy(old, tmp_path / "worse", -0.2)
    res = run_check(worse.path, out, baseline=old.path, write=False)
    assert {r.id: r.status for r in res.rules}["no-regression-overall"] == "fail"
    same = run_check(old.path, out, baseline=old.path, write=False)
    assert all(r.status in ("pass", "skip") for r in same.rules if r.rule == "regression")


# ---------------------------------------------------------------------------------------------- init-policy + helpers
@pytest.mark.parametrize("kind", ["biased", "clean", "segment", "profile"])
def test_init_policy_passes_its_own_run(runs, tmp_path, kind):
    out = tmp_path / "p.toml"
    r = CliRunner().invoke(app, ["init-policy", str(runs[kind].path), "--out", str(out)])
    assert r.exit_code == 0, r.output
    res = run_check(runs[kind].path, out, write=False)
    assert res.exit_code == 0, [(x.id, x.message) for x in res.rules if x.status == "fail"]
    checks = {x.rule for x in res.rules}
    if kind == "profile":
        assert "worst_group" not in checks and "no_split_leakage" in checks
    else:
        assert {"worst_group", "generalization_gap", "regression"} <= checks
    if kind == "segment":
        assert "group_metric" in checks
    r = CliRunner().invoke(app, ["init-policy", str(runs[kind].path), "--out", str(out)])
    assert r.exit_code == 2 and "--force" in r.output


def test_init_policy_of_clean_run_rejects_biased_run(runs, tmp_path):
    out = tmp_path / "p.toml"
    CliRunner().invoke(app, ["init-policy", str(runs["clean"].path), "--out", str(out)])
    res = run_check(runs["biased"].path, out, write=False)
    failed = {x.rule for x in res.rules if x.status == "fail"}
    assert res.exit_code == 1 and {"no_split_leakage", "worst_group", "association"} <= failed


def test_assert_helpers(runs, tmp_path):
    p = policy(tmp_path, '[[rule]]\ncheck = "worst_group"\nthreshold = 0.5\n')
    assert_policy(runs["clean"].path, p)
    with pytest.raises(AssertionError, match="worst_group-1"):
        assert_policy(runs["biased"].path, p)
    with pytest.raises(AssertionError, match="invalid policy"):
        assert_policy(runs["biased"].path, policy(tmp_path, "[[rule]]\ncheck = 3\n"))
    assert_no_leakage(runs["clean"].path)
    with pytest.raises(AssertionError, match="across splits"):
        assert_no_leakage(runs["biased"].path)


def test_group_leakage_counted(runs, tmp_path):
    dst = tmp_path / "gl"
    shutil.copytree(runs["clean"].path, dst)
    run = RunDir(dst)
    m = run.manifest()
    m.loc[0, "split"] = "train"
    m.loc[1, "split"] = "test"  # samples 0 and 1 share writer w0000
    run.write_manifest(m)
    with pytest.raises(AssertionError, match="w0000"):
        assert_no_leakage(dst)
    r = only(check(run, tmp_path, '[[rule]]\ncheck = "no_split_leakage"\n'))
    assert r.status == "fail" and "group w0000" in r.message
    assert only(check(run, tmp_path, '[[rule]]\ncheck = "no_split_leakage"\ninclude_groups = false\n')).status == "pass"



# ---------------------------------------------------------------------------------------------- init-policy = check
NOW = re.compile(r"\bnow (-?\d+(?:\.\d+)?)\b")


def _starter_rules(text: str) -> list[tuple[str, object]]:
    """(comment above the rule, parsed rule) for every [[rule]] of a starter policy, in order."""
    lines = text.splitlines()
    comments = [lines[i - 1] for i, ln in enumerate(lines) if ln == "[[rule]]"]
    rules = parse_policy(text).rules
    assert len(comments) == len(rules)
    return list(zip(comments, rules))


def _divergent_run(src: RunDir, dst: Path) -> RunDir:
    """A copy of ``src`` whose tables hold rows ``audit check`` does not judge by default: a per-fold, in-domain
    ECE far above the pooled one, per-class fairness rows above the summary ('worst') row, and a group too small
    for a verdict with the lowest accuracy of all. A starter computed from other rows than check's disagrees."""
    shutil.copytree(src.path, dst)
    run = RunDir(dst)
    g = run.read_table("metrics/groups.parquet")
    ece = g[g.metric == "ece"].iloc[[0]].assign(fold="holdout=phone", scope="id", value=0.9, ci_low=0.85, ci_high=0.95)
    acc = g[(g.metric == "accuracy") & (g.by != "overall") & (g.scope == "ood")].iloc[[0]]
    tiny = acc.assign(group="tiny", value=0.01, ci_low=0.0, ci_high=0.2, n=10, status="ok")
    run.write_table("metrics/groups.parquet", pd.concat([g, ece, tiny], ignore_index=True))
    f = run.read_table("metrics/fairness.parquet")
    per_class = f.assign(**{"class": "cat", "value": 0.99, "ci_low": 0.9, "ci_high": 1.0})
    run.write_table("metrics/fairness.parquet", pd.concat([f, per_class], ignore_index=True))
    return run


# the margins of docs/policy.md ("init-policy"), as (lowest, highest) allowed distance from "now":
# thresholds are rounded to 2 decimals in the direction that makes the rule easier to pass
def _margin_ok(check: str, thr: float, now: float) -> bool:
    eps = 1e-9
    if check in ("worst_group", "group_metric"):
        return 0.05 - eps <= now - thr < 0.06
    if check == "ece":
        return 0.03 - eps <= thr - now < 0.04
    if check == "fairness":
        return 0.05 - eps <= thr - now < 0.06
    if check == "generalization_gap":
        return 0.05 - eps <= thr - max(now, 0.0) < 0.06
    if check == "imbalance_ratio":
        return 0 - eps <= thr - 1.25 * now < 0.01
    if check == "association":
        return thr == 0.3 if now <= 0.28 else 0.05 - eps <= thr - now < 0.06
    raise AssertionError(f"no documented margin for {check}")


@pytest.mark.parametrize("kind", ["biased", "clean", "segment", "profile", "divergent"])
def test_init_policy_now_is_the_value_check_reports(runs, tmp_path, kind):
    from audit.check.bounds import bounds_warning
    from audit.check.init import starter_policy

    run = _divergent_run(runs["biased"], tmp_path / "div") if kind == "divergent" else runs[kind]
    text = starter_policy(run)
    pol = tmp_path / "p.toml"
    pol.write_text(text)
    res = run_check(run.path, pol, write=False)
    assert res.exit_code == 0, [(r.id, r.message) for r in res.rules if r.status == "fail"]
    assert res.warnings == []
    results = {r.id: r for r in res.rules}
    seen = set()
    for comment, rule in _starter_rules(text):
        assert bounds_warning(rule) is None, (rule.id, comment)
        r = results[rule.id]
        seen.add(rule.check)
        m = NOW.search(comment)
        if rule.check == "regression":
            assert m is None and rule.params["max_drop"] == (0.05 if rule.id == "no-regression-domains" else 0.02)
            continue
        if rule.check == "association" and "no significant association" in comment:
            assert r.value is None and rule.threshold == 0.3
            continue
        assert m, f"no 'now <value>' in the comment of {rule.id}: {comment}"
        now = float(m.group(1))
        assert r.value == pytest.approx(now, abs=0.0005 + 1e-9), (rule.id, comment, r.message)
        if rule.check == "findings":  # a count of findings (no-degenerate-model): at most 0
            assert r.value == now and rule.params["max_count"] == 0
            assert rule.severity == ("error" if now == 0 else "warn")
            continue
        if rule.check in ("no_split_leakage", "no_label_conflicts", "no_unreadable_files"):
            assert r.value == now and rule.threshold == 0
            assert rule.severity == ("error" if now == 0 else "warn")
        else:
            assert _margin_ok(rule.check, rule.threshold, r.value), (rule.id, rule.threshold, r.value)
    if kind == "divergent":
        assert {"ece", "fairness", "worst_group"} <= seen


def _with_worst_group(src: RunDir, dst: Path, value: float, ci_low: float) -> RunDir:
    """A copy of ``src`` whose worst judged accuracy group has this value and CI lower bound."""
    shutil.copytree(src.path, dst)
    run = RunDir(dst)
    g = run.read_table("metrics/groups.parquet")
    sel = (g.metric == "accuracy") & (g.by != "overall") & (g.fold == "all") & (g.scope == "ood") & (g.n >= 30)
    i = g[sel]["value"].idxmin()
    g.loc[i, ["value", "ci_low", "ci_high"]] = [value, ci_low, min(1.0, value + 0.1)]
    run.write_table("metrics/groups.parquet", g)
    return run


def test_init_policy_worst_group_rule_can_fail(runs, tmp_path):
    from audit.check.init import starter_policy

    # CI lower bound near 0: ci_low - 0.05 would be a `>= 0` rule; the point value is gated instead
    run = _with_worst_group(runs["biased"], tmp_path / "low_ci", value=0.12, ci_low=0.03)
    text = starter_policy(run)
    (wg,) = [r for _, r in _starter_rules(text) if r.check == "worst_group"]
    assert wg.bound == "value" and wg.threshold == pytest.approx(0.07) and wg.op == ">="
    assert "can never fail" in text  # the comment says why the CI bound is not used
    # the rule bites: a run 0.06 worse fails it
    worse = _with_worst_group(runs["biased"], tmp_path / "worse", value=0.06, ci_low=0.01)
    pol = tmp_path / "p.toml"
    pol.write_text(text)
    assert next(r for r in run_check(worse.path, pol, write=False).rules if r.id == "worst-group").status == "fail"

    # even the point value is within the margin of 0: no rule, a comment saying why
    run = _with_worst_group(runs["biased"], tmp_path / "zero", value=0.03, ci_low=0.0)
    text = starter_policy(run)
    assert not [r for _, r in _starter_rules(text) if r.check == "worst_group" or r.id == "no-regression"]
    assert "# worst-group: left out:" in text and "can never fail" in text


def test_check_warns_about_rules_that_cannot_fail(runs, tmp_path):
    import json

    body = (
        '[[rule]]\nid = "wg0"\ncheck = "worst_group"\nbound = "ci_low"\nop = ">="\nthreshold = 0\n'
        '[[rule]]\nid = "ece1"\ncheck = "ece"\nthreshold = 1.0\n'
        '[[rule]]\nid = "dp1"\ncheck = "fairness"\nmetric = "dp_diff"\nthreshold = 1\n'
        '[[rule]]\nid = "assoc1"\ncheck = "association"\nthreshold = 1.0\n'
        '[[rule]]\nid = "imb"\ncheck = "imbalance_ratio"\nop = ">="\nthreshold = 0.5\n'
        '[[rule]]\nid = "reg"\ncheck = "regression"\nmax_drop = 1.0\n'
        '[[rule]]\nid = "ok"\ncheck = "worst_group"\nthreshold = 0.5\n'
        '[[rule]]\nid = "ok2"\ncheck = "fairness"\nmetric = "eo_diff"\nthreshold = 0.9\n'
    )
    p = policy(tmp_path, body)
    r = CliRunner().invoke(app, ["check", str(runs["clean"].path), "--policy", str(p)])
    assert r.exit_code == 0, r.output  # a warning, not a failure
    warned = [ln for ln in r.output.splitlines() if ln.startswith("warning:")]
    assert len(warned) == 6, r.output
    for rid in ("wg0", "ece1", "dp1", "assoc1", "imb", "reg"):
        assert any(f"rule '{rid}' can never fail" in w for w in warned), (rid, warned)
    assert not any("'ok" in w for w in warned)
    assert f"{p}:6:" in warned[0]  # the line of the threshold
    res = json.loads((runs["clean"].path / "check" / "result.json").read_text())
    assert len(res["warnings"]) == 6
    assert "can never fail" in (runs["clean"].path / "check" / "summary.md").read_text()
    # a threshold outside the range (a percentage for a fraction) can never pass
    res = check(runs["clean"], tmp_path, '[[rule]]\ncheck = "worst_group"\nthreshold = 70\n')
    assert res.exit_code == 1 and "can never pass" in res.warnings[0]


def test_init_policy_damaged_groups_table_exit_2(runs, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(runs["biased"].path, damaged)
    (damaged / "metrics" / "groups.parquet").write_bytes(b"garbage")
    out = tmp_path / "p.toml"
    r = CliRunner().invoke(app, ["init-policy", str(damaged), "--out", str(out)])
    assert r.exit_code == 2, r.output
    assert "groups.parquet" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not out.exists()


def test_baseline_errors_name_the_baseline(runs, tmp_path):
    p = policy(tmp_path, REG.format(of="worst_group"))
    nope = tmp_path / "nonexist"
    r = CliRunner().invoke(app, ["check", str(runs["biased"].path), "--policy", str(p), "--baseline", str(nope)])
    assert r.exit_code == 2 and f"--baseline {nope}: " in r.output and "does not exist" in r.output, r.output
    damaged = tmp_path / "damaged"
    shutil.copytree(runs["clean"].path, damaged)
    (damaged / "metrics" / "groups.parquet").write_bytes(b"garbage")
    r = CliRunner().invoke(app, ["check", str(runs["biased"].path), "--policy", str(p), "--baseline", str(damaged)])
    assert r.exit_code == 2 and f"--baseline {damaged}: " in r.output and "groups.parquet" in r.output, r.output


def test_fairness_rule_on_run_without_attributes(runs, tmp_path):
    dst = tmp_path / "noattr"
    shutil.copytree(runs["clean"].path, dst)
    run = RunDir(dst)
    m = run.manifest()
    run.write_manifest(m.drop(columns=[c for c in m.columns if c.startswith("attr.")]))
    f = run.read_table("metrics/fairness.parquet")
    run.write_table("metrics/fairness.parquet", f.iloc[:0])
    body = '[[rule]]\nid = "dp-diff"\ncheck = "fairness"\nmetric = "dp_diff"\nthreshold = 0.1\n'
    res = check(run, tmp_path, body)
    r = only(res)
    assert res.exit_code == 1 and r.status == "fail"
    assert "no attributes" in r.message and "--attr" in r.message and "available: " not in r.message
    assert only(check(run, tmp_path, '[policy]\non_missing = "skip"\n' + body)).status == "skip"


def test_hint_for_operators():
    from audit.check.policy import OPS, _hint

    assert _hint("=>", OPS) == " (did you mean '>='?)"
    assert "'<='" in _hint("=<", OPS) and "'>='" in _hint("≥", OPS) and "'<'" in _hint("lt", OPS)
    assert "'>='" in _hint("> =", OPS)
    assert _hint("worst_grup", ["worst_group", "ece"]) == " (did you mean 'worst_group'?)"
