"""Security: no code from data files is ever run (weights and checkpoints through ``torch.load(weights_only=True)``,
no pickle / eval anywhere, policies and recipes parsed as TOML), hostile strings from a real dataset reach
report.html and the dashboard only escaped, the dashboard listens on 127.0.0.1 unless told otherwise, and manifest
paths cannot leave the dataset root (also when a run's manifest is edited afterwards)."""

from __future__ import annotations

import ast
import json
import os
import pickle
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from audit.cli import app
from audit.rundir import RunDir

sys.path.insert(0, str(Path(__file__).resolve().parent))
from badcorpus import HOSTILE_ATTR, HOSTILE_LABEL, HOSTILE_NAME, make_classify_dataset, make_plain_dataset  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SOURCES = sorted([*REPO.joinpath("audit").rglob("*.py"), *REPO.joinpath("dashboards").rglob("*.py")])
FAST = ["--epochs", "1", "--model", "small_cnn", "--device", "cpu", "--workers", "1"]


def cli(*args, code: int | None = 0):
    res = CliRunner().invoke(app, [str(a) for a in args])
    if code is not None:
        assert res.exit_code == code, (args, res.exit_code, res.output, res.exception)
    return res


# ------------------------------------------------------------------------------------------- no code from data
def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            yield node, owner, name


def test_every_torch_load_uses_weights_only_true():
    found = []
    for path in SOURCES:
        for node, owner, name in _calls(ast.parse(path.read_text(), str(path))):
            if owner == "torch" and name == "load":
                kw = {k.arg: k.value for k in node.keywords}
                ok = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                assert ok, f"{path.relative_to(REPO)}:{node.lineno} torch.load without weights_only=True"
                found.append(path.name)
    assert {"models.py", "trainer.py"} <= set(found)  # the two places that load weights are covered


# Pickle is allowed only for bytes this tool produced in memory, never for anything read from a file.
PICKLE_IN_MEMORY_ONLY = {
    "audit/integrations/ray_engine.py": "records passed between this tool's own Ray workers (pickle.dumps/loads)",
}


def test_no_pickle_eval_or_exec_of_anything_read_from_disk():
    banned_modules = {"pickle", "cPickle", "dill", "shelve", "marshal", "joblib", "cloudpickle"}
    for path in SOURCES:
        rel = path.relative_to(REPO)
        tree = ast.parse(path.read_text(), str(path))
        allowed = {"pickle"} if str(rel) in PICKLE_IN_MEMORY_ONLY else set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not {a.name.split(".")[0] for a in node.names} & (banned_modules - allowed), (rel, node.lineno)
            if isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] not in banned_modules, (rel, node.lineno)
        for node, owner, name in _calls(tree):
            if owner == "pickle":  # in-memory only: loads/dumps of bytes, never load() from a file object
                assert name in ("loads", "dumps"), (rel, node.lineno, name)
            assert not (isinstance(node.func, ast.Name) and name in ("eval", "exec", "compile")), (rel, node.lineno)
            assert name not in ("read_pickle", "load_pickle", "unsafe_load"), (rel, node.lineno)
            if owner in ("yaml",):
                assert name == "safe_load", (rel, node.lineno)
            for k in node.keywords:
                if k.arg == "allow_pickle":
                    assert isinstance(k.value, ast.Constant) and k.value.value is False, (rel, node.lineno)


class _Evil:
    """Unpickling this runs code: it creates a marker file (proof of execution)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("sec")
    data = make_plain_dataset(base / "data", 40, side=16)
    out = base / "run"
    cli("profile", data, "--label", "label", "--domain", "site", "--out", out, "--workers", "1")
    return out


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_weights_file_is_refused_without_running_code(plain_run, tmp_path):
    import torch

    marker = tmp_path / "pwned_weights"
    evil = tmp_path / "evil.pth"
    torch.save({"model": _Evil(marker)}, evil)
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Evil(marker)))
    for f in (evil, raw):
        res = cli("train", plain_run, *FAST, "--weights", f, code=None)
        assert res.exit_code == 2, res.output
        assert "cannot read weights file" in " ".join(res.output.split()), res.output
        assert not marker.exists()
    # control: the same bytes DO run code when unpickled the unsafe way (so this test can fail)
    pickle.loads(raw.read_bytes())
    assert marker.exists()


def test_planted_checkpoint_is_not_unpickled_and_the_fold_is_retrained(plain_run, tmp_path):
    import torch

    marker = tmp_path / "pwned_ckpt"
    cli("train", plain_run, *FAST)
    ck_dir = plain_run / "train" / "ckpt"
    ckpts = sorted(ck_dir.glob("*.pt"))
    assert ckpts
    for ck in ckpts:  # an attacker replaces the checkpoints and forces the folds to re-run
        torch.save({"hash": "x", "done": False, "epoch": 0, "model": _Evil(marker)}, ck)
    for meta in (plain_run / "train" / "folds").glob("*.json"):
        meta.unlink()
    cli("train", plain_run, *FAST)
    assert not marker.exists()
    st = json.loads((plain_run / "run.json").read_text())["stages"]["train"]
    assert st["status"] == "ok" and {f["status"] for f in st["folds"]} <= {"trained", "skipped"}


def test_policy_and_recipe_files_are_parsed_never_evaluated(plain_run, tmp_path):
    marker = tmp_path / "pwned_policy"
    payload = f"__import__('os').system('touch {marker}')"
    for text in (f'[[rule]]\ncheck = "no_unreadable_files"\nmax_count = "{payload}"\n',
                 f'[[rule]]\ncheck = "{payload}"\n',
                 f'[policy]\nname = "x"\nmin_n = {payload}\n'):
        p = tmp_path / "policy.toml"
        p.write_text(text)
        res = cli("check", plain_run, "--policy", p, code=None)
        assert res.exit_code == 2, res.output
    recipe = tmp_path / "evil.toml"
    recipe.write_text(f'[dataset]\nname = "{payload}"\ntask = "classify"\n[[parts]]\nformat = "{payload}"\n')
    res = cli("profile", "--recipe", recipe, "--root", tmp_path, "--out", tmp_path / "r", code=None)
    assert res.exit_code == 2, res.output
    assert not marker.exists()


# ------------------------------------------------------------------------------------------- paths
def test_edited_manifest_cannot_make_a_stage_read_outside_the_root(plain_run, tmp_path):
    secret = tmp_path / "secret.png"
    from PIL import Image

    Image.new("RGB", (16, 16), (1, 2, 3)).save(secret)
    man = pd.read_parquet(plain_run / "manifest.parquet")
    root = Path(json.loads((plain_run / "run.json").read_text())["dataset"]["root"])
    for bad in (os.path.relpath(secret, root), str(secret)):
        m = man.copy()
        m.loc[0, "filepath"] = bad
        m.to_parquet(plain_run / "manifest.parquet", index=False)
        res = cli("train", plain_run, *FAST, code=None)
        assert res.exit_code == 2 and "outside the dataset root" in " ".join(res.output.split()), res.output
        run = RunDir.open(plain_run)
        from audit.errors import InputError

        with pytest.raises(InputError, match="outside the dataset root"):
            run.abspath(bad)
    man.to_parquet(plain_run / "manifest.parquet", index=False)


# ------------------------------------------------------------------------------------------- hostile strings, real run
class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    bad = make_classify_dataset(base / "data", n_good=8)
    out = base / "run"
    cli("run", bad.table, *bad.flags, "--out", out, *FAST)
    return RunDir.open(out)


def test_report_html_escapes_hostile_file_names_labels_and_attributes(hostile_run):
    text = (hostile_run.path / "report.html").read_text()
    doc = _Tags()
    doc.feed(text)
    for tag, attrs in doc.tags:
        assert tag not in ("script", "iframe", "object", "embed", "base", "form"), tag
        assert not [k for k in attrs if k.startswith("on")], (tag, attrs)
        if tag == "img":
            assert attrs.get("src", "").startswith("data:"), attrs
    for raw in (HOSTILE_LABEL, HOSTILE_ATTR, HOSTILE_NAME):
        assert raw not in text, raw
    # and they are shown, escaped: the values exist in the run, so the report must mention them
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in text
    assert "&lt;b onmouseover=alert(3)&gt;bold&lt;/b&gt;" in text or "&lt;b onmouseover" in text
    md = (hostile_run.path / "summary.md").read_text()
    assert "<script>" not in md and "<b onmouseover" not in md and "<img src=x" not in md


def test_dashboard_pages_escape_hostile_strings_of_a_real_run(hostile_run, monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("IMGAUDIT_RUN", str(hostile_run.path))
    at = AppTest.from_file(str(REPO / "dashboards" / "app.py"), default_timeout=90)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    pages = sorted(p.stem for p in (REPO / "dashboards" / "app_pages").glob("*.py") if not p.stem.startswith("_"))
    raw_tag = re.compile(r"(?<!\\)<(script|img|b|iframe|svg)\b", re.I)
    seen_hostile = False
    for page in pages:
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])
        for el in [*at.markdown, *at.caption, *at.info, *at.warning, *at.error, *at.success]:
            assert not getattr(el.proto, "allow_html", False), (page, el.value)
            assert not raw_tag.search(str(el.value)), (page, el.value)
            seen_hostile |= "alert(2)" in str(el.value) or "alert(3)" in str(el.value)
        for df in at.dataframe:  # tables are rendered as data by the grid, never as HTML
            seen_hostile |= df.value.astype(str).apply(lambda c: c.str.contains("alert(", regex=False)).any().any()
    assert seen_hostile  # the hostile values were displayed somewhere (escaped), not silently dropped


def test_dashboard_listens_on_localhost_unless_told(monkeypatch, tmp_path):
    import inspect

    from audit import cli as cli_mod
    from audit import dashboard

    assert inspect.signature(dashboard.launch).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(cli_mod.dashboard).parameters["host"].default == "127.0.0.1"
    seen = {}

    def fake_launch(run_dir, *, port, host):
        seen.update(port=port, host=host)
        return 0

    monkeypatch.setattr(dashboard, "launch", fake_launch)
    cli("dashboard", tmp_path)
    assert seen["host"] == "127.0.0.1"
    cli("dashboard", tmp_path, "--host", "0.0.0.0")
    assert seen["host"] == "0.0.0.0"
    cmd = dashboard.streamlit_command(Path("app.py"), tmp_path, port=8501, host="127.0.0.1")
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
