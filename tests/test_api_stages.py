"""The Python API's stage functions (audit.profile ... audit.run), the example that tours them, the core install
without torch, HEIF through pillow-heif, the ``audit`` logger and the packaging extras."""

from __future__ import annotations

import inspect
import json
import logging
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import audit
from audit.api import policy, stages
from audit.errors import UsageError

REPO = Path(__file__).resolve().parents[1]
FUNCTIONS = ["profile", "train", "metrics", "report", "check", "run"]
POLICY = """
[policy]
name = "api test"
min_n = 30

[[rule]]
id = "no-unreadable-files"
check = "no_unreadable_files"

[[rule]]
id = "worst-group-accuracy"
check = "worst_group"
threshold = 0.0
"""


def _python(code: str, *, cwd: Path, timeout: int = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "AUDIT_NO_PROGRESS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=env)


def _tiny_table(root: Path, n: int = 150, seed: int = 0) -> Path:
    """A small labelled image table (16x16 PNGs, three sites, one attribute) for end-to-end runs."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label, site = ("cat", "dog")[i % 2], ("a", "b", "c")[i % 3]
        arr = np.clip(rng.normal(90 + 60 * (label == "dog") + 10 * ("abc".index(site)), 25, (16, 16, 3)), 0, 255)
        rel = f"img/{site}/{i:04d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr.astype(np.uint8)).save(root / rel)
        rows.append({"path": rel, "label": label, "site": site, "light": ("day", "night")[int(rng.random() < 0.4)]})
    table = root / "table.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    return table


# ------------------------------------------------------------------------------------------- the example
def test_api_tour_example_runs_end_to_end_on_the_demo_data(tmp_path):
    pytest.importorskip("torch")
    p = subprocess.run([sys.executable, str(REPO / "examples" / "api_tour.py")], capture_output=True, text=True,
                       cwd=tmp_path, timeout=300, env={**os.environ, "AUDIT_TOUR_DIR": str(tmp_path),
                                                       "AUDIT_NO_PROGRESS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    run = audit.open_run(tmp_path / "run")
    assert {k: v["status"] for k, v in run.stages.items() if k != "check"} == {
        "manifest": "ok", "profile": "ok", "train": "ok", "metrics": "ok", "report": "ok"}
    assert (tmp_path / "run" / "report.html").is_file()
    result = json.loads((tmp_path / "run" / "check" / "result.json").read_text())
    assert {r["id"] for r in result["rules"]} == {"no-unreadable-files", "worst-group-accuracy"}
    assert "CheckResult(passed=False, exit_code=1" in p.stdout  # the demo plants unreadable files


# ------------------------------------------------------------------------------------------- keywords
@pytest.mark.parametrize(("name", "typo", "hint"), [
    ("profile", "n_bot", "n_boot"), ("profile", "attr", "attrs"), ("train", "epoch", "epochs"),
    ("metrics", "min_m", "min_n"), ("check", "basline", "baseline"), ("run", "modl", "model"), ("report", "zzz", None),
])
def test_unknown_keyword_is_a_type_error_naming_it_with_the_closest_name(name, typo, hint, tmp_path):
    fn = getattr(audit, name)
    args = {"profile": (tmp_path,), "run": (tmp_path,), "check": (tmp_path, tmp_path)}.get(name, (tmp_path,))
    kwargs = {"out": tmp_path / "run"} if name in ("profile", "run") else {}
    with pytest.raises(TypeError) as e:
        fn(*args, **kwargs, **{typo: 1})
    msg = str(e.value)
    assert msg.startswith(f"{name}() got an unexpected keyword argument {typo!r}")
    assert (f"did you mean {hint!r}?" in msg) if hint else "did you mean" not in msg
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_options_are_keyword_only_and_bad_values_are_usage_errors(tmp_path):
    with pytest.raises(TypeError, match="positional"):
        audit.profile(tmp_path, tmp_path / "run")
    with pytest.raises(UsageError, match="min_n must be >= 1"):
        audit.profile(tmp_path, out=tmp_path / "run", min_n=0)
    with pytest.raises(UsageError, match="engine"):
        audit.run(tmp_path, out=tmp_path / "run", engine="spark")
    assert not (tmp_path / "run").exists()


def _cli_params(command: str) -> dict:
    import typer.main

    from audit.cli import app

    cmd = typer.main.get_command(app).commands[command]
    return {p.name: p.default for p in cmd.params}


_API_NAME = {"attr": "attrs", "run_dir": "run"}  # CLI parameter -> API keyword
_CLI_ONLY = {"json_out", "json"}  # --json prints the objects the API returns


@pytest.mark.parametrize("name", FUNCTIONS)
def test_keywords_have_the_cli_flags_names_and_defaults(name):
    pytest.importorskip("typer")
    cli = {_API_NAME.get(k, k): v for k, v in _cli_params(name).items() if k not in _CLI_ONLY}
    api = inspect.signature(getattr(policy if name == "check" else stages, name)).parameters
    missing = set(cli) - set(api)
    assert not missing, f"CLI flags of `audit {name}` without an API keyword: {sorted(missing)}"
    for k, default in cli.items():
        ours = api[k].default
        if k in ("out", "run", "policy") or (name == "train" and k == "epochs"):
            continue  # required here; train's epochs=None is the CLI's unset --epochs (8, the plan may lower it)
        if default in (None, ()) and ours in (None, ()):
            continue
        assert ours == default, f"{name}({k}=...) defaults to {ours!r}, `audit {name}` to {default!r}"


def test_keywords_defaults_equal_the_stage_configs():
    pytest.importorskip("torch")
    import dataclasses

    from audit.metrics import MetricsConfig
    from audit.profile import ProfileConfig
    from audit.train import TrainConfig

    for fn, cfg in ((stages.profile, ProfileConfig), (stages.train, TrainConfig), (stages.metrics, MetricsConfig),
                    (stages.profile, stages.ReadConfig)):
        params = inspect.signature(fn).parameters
        for f in dataclasses.fields(cfg):
            if f.name in params and f.name != "epochs":
                d = f.default if f.default is not dataclasses.MISSING else f.default_factory()
                assert params[f.name].default == d or (d in (None, ()) and params[f.name].default in (None, ())), \
                    (fn.__name__, f.name)


def test_stage_subpackages_are_callable_and_stay_subpackages(tmp_path):
    code = """
        import inspect, sys, types
        import audit
        assert callable(audit.profile) and isinstance(audit.profile, types.ModuleType)
        assert "n_boot" in inspect.signature(audit.profile).parameters
        try:
            audit.metrics(".", n_bot=1)
        except TypeError as e:
            assert "did you mean 'n_boot'" in str(e), e
        else:
            raise AssertionError("no TypeError")
        import audit.metrics._validate as V            # the subpackage's own modules, as before
        from audit import metrics as M
        assert M is sys.modules["audit.metrics"] and callable(M) and M.group_report
        check = audit.check                            # first use of the name, then an import of the subpackage
        from audit.check import run_check
        assert audit.check is check and callable(check) and check.run_check is run_check
        assert callable(audit.report) and audit.run and audit.Run and audit.CheckResult
        print("ok")
    """
    p = _python(code, cwd=tmp_path)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-2000:]


# ------------------------------------------------------------------------------------------- on a run
def test_run_report_and_check_on_an_existing_run(tmp_path):
    from audit.testing import make_fake_run

    make_fake_run(tmp_path / "run", n=120)
    run = audit.open_run(str(tmp_path / "run"))
    f = run.findings
    assert {"check", "severity", "title", "effect", "interval", "n"} <= set(f.columns)
    with_ci = f.dropna(subset=["ci_low", "ci_high"])
    assert len(with_ci) and all(iv == (lo, hi) for iv, lo, hi in zip(with_ci["interval"], with_ci["ci_low"],
                                                                       with_ci["ci_high"], strict=True))
    assert os.fspath(run) == str(run.path) and isinstance(run.manifest, pd.DataFrame)
    assert isinstance(run.predictions, pd.DataFrame) and "metrics" in run.stages and "Run(" in repr(run)

    path = audit.report(run)
    assert path == run.path / "report.html" and path.is_file() and run.stages["report"]["status"] == "ok"

    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    result = audit.check(tmp_path / "run", policy)
    assert result.exit_code == 1 and not result.passed  # the fake run has an unreadable file
    assert list(result.failures["id"]) == ["no-unreadable-files"]
    assert set(result.rules["status"]) == {"fail", "pass"} and result.to_dict()["exit_code"] == 1
    assert "passed=False" in repr(result) and "<table>" in result._repr_html_()
    assert (run.path / "check" / "result.json").is_file()

    bad = tmp_path / "bad.toml"
    bad.write_text("[[rule]]\ncheck = 'no_such_check'\n")
    invalid = audit.check(run, bad)
    assert invalid.exit_code == 2 and invalid.error and invalid.failures.empty and "error=" in repr(invalid)


def test_stages_refuse_what_is_not_a_run_directory(tmp_path):
    from audit.errors import RunDirError

    with pytest.raises(RunDirError, match=r"audit\.profile"):
        audit.metrics(tmp_path)
    with pytest.raises(RunDirError):
        audit.report(tmp_path / "nope")


def test_metrics_without_predictions_says_how_to_get_them(tmp_path):
    from audit.testing import make_fake_run

    make_fake_run(tmp_path / "run", n=60, profile_only=True)
    with pytest.raises(UsageError, match=r"audit\.train\(run\).*predictions=FILE"):
        audit.metrics(tmp_path / "run")


# ------------------------------------------------------------------------------------------- core install
_NO_TORCH = """
import sys

class _NoTorch:  # as if torch were not installed: its import fails, and it is not in sys.modules
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, _NoTorch())
"""


def test_core_install_runs_profile_metrics_report_check_and_dashboard_without_torch(tmp_path):
    table = _tiny_table(tmp_path / "data")
    ids = pd.read_csv(table)
    rng = np.random.default_rng(1)
    flip = rng.random(len(ids)) < 0.2
    preds = pd.DataFrame({"sample_id": ids["path"],
                          "y_pred": np.where(flip, ids["label"].map({"cat": "dog", "dog": "cat"}), ids["label"])})
    preds.to_csv(tmp_path / "preds.csv", index=False)
    (tmp_path / "policy.toml").write_text(POLICY)
    code = _NO_TORCH + f"""
import audit
from audit.errors import MissingExtraError
run = audit.profile({str(table)!r}, out="run", label="label", domain="site", attrs=["light"], n_boot=50, workers=1)
assert run.stages["profile"]["status"] == "ok", run.stages
run = audit.metrics(run, predictions="preds.csv", n_boot=50)
assert len(run.table("metrics/groups")) and run.stages["metrics"]["status"] == "ok"
assert audit.report(run).is_file()
assert audit.check(run, "policy.toml").exit_code in (0, 1)
try:
    audit.train(run, epochs=1)
except MissingExtraError as e:
    assert "pip install 'imgaudit[train]'" in str(e), e
else:
    raise AssertionError("train ran without torch")
try:
    from streamlit.testing.v1 import AppTest
except ImportError:
    pass
else:
    import os
    os.environ["IMGAUDIT_RUN"] = "run"
    at = AppTest.from_file({str(REPO / "dashboards" / "app.py")!r}, default_timeout=60).run()
    for page in ("overview", "profile", "performance", "generalization", "calibration"):
        at.switch_page(f"app_pages/{{page}}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])
assert "torch" not in sys.modules, "torch was imported"
print("ok")
"""
    p = _python(code, cwd=tmp_path, timeout=240)
    assert p.returncode == 0 and p.stdout.strip().endswith("ok"), p.stderr[-3000:]


def test_cli_profile_imports_no_torch_and_cli_train_names_the_extra(tmp_path):
    table = _tiny_table(tmp_path / "data", n=60)
    code = _NO_TORCH + f"""
import runpy
sys.argv = ["audit", "profile", {str(table)!r}, "--out", "run", "--label", "label", "--n-boot", "20",
            "--workers", "1", "--quiet"]
try:
    runpy.run_module("audit", run_name="__main__")
except SystemExit as e:
    assert not e.code, e.code
assert "torch" not in sys.modules, "torch was imported"
sys.argv = ["audit", "train", "run", "--epochs", "1"]
runpy.run_module("audit", run_name="__main__")
"""
    p = _python(code, cwd=tmp_path)
    assert p.returncode == 2, (p.returncode, p.stderr[-3000:])
    assert "pip install 'imgaudit[train]'" in p.stderr and "Traceback" not in p.stderr


def test_run_without_torch_records_the_train_failure_in_run_json(tmp_path):
    """The StageError says "details in run.json": the train stage, refused before it opened (no torch), is there."""
    table = _tiny_table(tmp_path / "data", n=60)
    code = _NO_TORCH + f"""
import json
import audit
from audit.errors import StageError
try:
    audit.run({str(table)!r}, out="run", label="label", domain="site", epochs=1, workers=1)
except StageError as e:
    assert "details in" in str(e) and "run.json" in str(e), e
else:
    raise AssertionError("run passed without torch")
stages = json.load(open("run/run.json"))["stages"]
print(json.dumps(stages))
"""
    p = _python(code, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    stages = json.loads(p.stdout.strip().splitlines()[-1])
    assert stages["train"]["status"] == "failed", stages
    assert "pip install 'imgaudit[train]'" in stages["train"]["error"]
    assert stages["metrics"]["status"] == "skipped" and stages["profile"]["status"] == "ok"
    assert stages["report"]["status"] == "ok"


def test_import_of_the_non_training_stages_imports_no_torch(tmp_path):
    code = """
        import sys
        import audit, audit.api, audit.pipeline, audit.profile, audit.metrics, audit.report, audit.check, audit.ingest
        import audit.readers, audit.views, audit.dashboard, audit.api.stages
        audit.profile; audit.metrics; audit.report; audit.check; audit.run; audit.Run; audit.group_metrics
        print("torch" in sys.modules)
    """
    p = _python(code, cwd=tmp_path)
    assert p.returncode == 0 and p.stdout.strip() == "False", p.stderr[-2000:]


# ------------------------------------------------------------------------------------------- HEIF
@pytest.fixture
def heif(monkeypatch):
    from audit.io import heif as H

    H.enable.cache_clear()
    yield H
    H.enable.cache_clear()


def test_heif_is_read_through_pillow_heif_when_installed(heif, monkeypatch):
    calls = []
    fake = type(sys)("pillow_heif")
    fake.register_heif_opener = lambda: calls.append(1)
    monkeypatch.setitem(sys.modules, "pillow_heif", fake)
    assert heif.enable() and heif.enable() and calls == [1]  # registered once per process
    assert heif.unreadable_note(pd.Series(["a/x.HEIC", "b/y.jpg"])) is None


def test_heif_without_pillow_heif_is_a_note_saying_what_to_install(heif, monkeypatch):
    monkeypatch.setitem(sys.modules, "pillow_heif", None)
    assert not heif.heif_readable()
    note = heif.unreadable_note(pd.Series(["a/x.heic", "b/y.HEIF", "c/z.png"]))
    assert note.startswith("2 HEIF/HEIC file(s) cannot be decoded without pillow-heif") and "pip install" in note
    assert heif.unreadable_note(["c/z.png"]) is None


def test_ingest_notes_unreadable_heif_files(heif, monkeypatch, tmp_path):
    from audit.ingest import _format_notes

    monkeypatch.setitem(sys.modules, "pillow_heif", None)
    notes = _format_notes(pd.DataFrame({"filepath": ["x.heic", "y.png"]}))
    assert len(notes) == 1 and "pillow-heif" in notes[0]
    assert _format_notes(pd.DataFrame({"filepath": ["y.png"]})) == []


# ------------------------------------------------------------------------------------------- logging
def test_audit_logger_is_silent_by_default_and_enable_shows_it():
    import io

    import audit.log

    pkg = logging.getLogger("audit")
    assert any(isinstance(h, logging.NullHandler) for h in pkg.handlers)
    assert audit.log.get_logger("audit.train.trainer").parent.name in ("audit.train", "audit")
    buf = io.StringIO()
    handler = audit.log.enable("DEBUG", stream=buf)
    try:
        audit.log.enable("DEBUG", stream=buf)  # a second call replaces the handler
        assert sum(getattr(h, "_audit_enable", False) for h in pkg.handlers) == 1
        audit.log.get_logger("audit.x").debug("hello %s", "there")
        assert "DEBUG audit.x: hello there" in buf.getvalue()
    finally:
        for h in [h for h in pkg.handlers if getattr(h, "_audit_enable", False)]:
            pkg.removeHandler(h)
        pkg.setLevel(logging.NOTSET)
    assert handler not in pkg.handlers


def test_a_damaged_checkpoint_is_logged_not_silent(tmp_path, caplog):
    pytest.importorskip("torch")
    from audit.train.trainer import _resumable

    ck = tmp_path / "fold.pt"
    ck.write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING, logger="audit"):
        assert _resumable(ck, "hash", None) is None
    assert any(r.name == "audit.train.trainer" and "unreadable" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------- packaging
def test_torch_is_an_extra_and_make_test_builds_the_docs():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = " ".join(meta["dependencies"])
    assert "torch" not in core, "the core install must not pull torch"
    extras = meta["optional-dependencies"]
    assert {d.split(">")[0].split("=")[0] for d in extras["train"]} == {"torch", "torchvision"}
    assert "pillow-heif" in " ".join(extras["heif"]) and "mkdocstrings" in " ".join(extras["docs"])
    everything = extras["all"][0]
    assert all(x in everything for x in ("train", "dashboard", "heif"))
    make = (REPO / "Makefile").read_text()
    assert "mkdocs build --strict" in make and any(
        line.startswith("test:") and " docs" in line for line in make.splitlines())
    nav = (REPO / "mkdocs.yml").read_text()
    pages = sorted(p.name for p in (REPO / "docs").glob("*.md"))
    assert [p for p in pages if p not in nav] == [], "every docs page belongs in the mkdocs.yml nav"


@pytest.mark.slow
def test_core_install_in_a_fresh_venv_works_without_torch(tmp_path):
    """``pip install imgaudit`` (no extras) into a new virtual environment: no torch, and the core stages run."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    p = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(REPO)],
                       capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, p.stderr[-3000:]
    table = _tiny_table(tmp_path / "data", n=60)
    code = f"""
        import importlib.util, sys
        assert importlib.util.find_spec("torch") is None, "the core install pulled torch"
        import audit
        from audit.errors import MissingExtraError
        run = audit.profile({str(table)!r}, out="run", label="label", domain="site", n_boot=20, workers=1)
        assert audit.report(run).is_file()
        try:
            audit.train(run)
        except MissingExtraError as e:
            assert "pip install 'imgaudit[train]'" in str(e)
        print("ok")
    """
    out = subprocess.run([str(py), "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=tmp_path,
                         timeout=300, env={**os.environ, "AUDIT_NO_PROGRESS": "1"})
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_shell_completion_is_installable():
    """``audit --install-completion`` exists; ``--show-completion bash`` prints the script it would install."""
    exe = Path(sys.executable).with_name("audit")
    if not exe.is_file():
        pytest.skip("the audit console script is not installed in this environment")
    p = subprocess.run([str(exe), "--show-completion", "bash"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "_audit_completion" in p.stdout, p.stderr
    assert "--install-completion" in subprocess.run([str(exe), "--help"], capture_output=True, text=True,
                                                    timeout=60).stdout
