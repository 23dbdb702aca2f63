"""Slice discovery confirmed on held-out data (issue 20): planted slices found and confirmed, clean data quiet,
halves disjoint, results deterministic, the stored embeddings and the CLI end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from audit.slices.confirm import confirm_gap
from audit.slices.core import SliceConfig, finalize, slice_fold
from audit.slices.discover import split_halves


def _synthetic(n=3000, d=48, share=0.06, seed=0, planted=True):
    """Embeddings of 4 classes; a planted hard slice (a shared shift, 60% errors vs 10%) when ``planted``."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    x = rng.normal(0, 3, (4, d))[labels] + rng.normal(0, 1, (n, d))
    hard = rng.random(n) < share if planted else np.zeros(n, bool)
    x[hard] += rng.normal(0, 1, d) * 1.5
    correct = rng.random(n) > np.where(hard, 0.6, 0.1)
    conf = np.clip(np.where(correct, 0.9, 0.6) + rng.normal(0, 0.1, n), 0, 1)
    return x.astype(np.float32), correct, conf, labels, hard


def _best(cands, hard):
    conf = [c for c in cands if c.confirmed]
    if not conf:
        return 0.0, 0.0
    c = max(conf, key=lambda c: (c.inside & hard).sum())
    return (c.inside & hard).sum() / c.inside.sum(), (c.inside & hard).sum() / hard.sum()


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_slice_recovered_and_confirmed(seed):
    x, c, cf, lab, hard = _synthetic(seed=seed)
    cfg = SliceConfig(seed=seed)
    _, cands = slice_fold(x, c, cf, lab, cfg, key=("m", "f"))
    finalize(cands, cfg)
    prec, rec = _best(cands, hard)
    assert prec >= 0.7 and rec >= 0.5, (prec, rec)


def test_clean_control_confirms_nothing():
    found = 0
    for seed in range(3):
        x, c, cf, lab, _ = _synthetic(seed=seed, planted=False)
        cfg = SliceConfig(seed=seed)
        _, cands = slice_fold(x, c, cf, lab, cfg, key=("m", "f"))
        finalize(cands, cfg)
        found += sum(k.confirmed for k in cands)
    assert found == 0


def test_halves_disjoint_stratified_and_grouped():
    rng = np.random.default_rng(0)
    correct = rng.random(1000) > 0.2
    labels = rng.integers(0, 3, 1000)
    disc = split_halves(correct, labels, seed=3)
    assert abs(disc.mean() - 0.5) < 0.02
    for lv in range(3):  # each (label, correct) stratum is halved
        for cv in (True, False):
            m = (labels == lv) & (correct == cv)
            assert abs(disc[m].sum() - m.sum() / 2) <= 1
    groups = np.array([f"g{i // 7}" for i in range(1000)])
    dg = split_halves(correct, labels, seed=3, groups=groups)
    for g in np.unique(groups):  # a group never straddles the halves
        assert len(set(dg[groups == g])) == 1
    assert 0.4 < dg.mean() < 0.6
    assert np.array_equal(disc, split_halves(correct, labels, seed=3))
    assert not np.array_equal(disc, split_halves(correct, labels, seed=4))


def test_deterministic_for_a_seed():
    x, c, cf, lab, _ = _synthetic(seed=5)
    runs = []
    for _ in range(2):
        cfg = SliceConfig(seed=5)
        disc, cands = slice_fold(x, c, cf, lab, cfg, key=("m", "f"))
        finalize(cands, cfg)
        runs.append((disc, [(k.inside.copy(), k.confirmation["ci_low"], k.q) for k in cands]))
    assert np.array_equal(runs[0][0], runs[1][0]) and len(runs[0][1]) == len(runs[1][1]) > 0
    for a, b in zip(runs[0][1], runs[1][1]):
        assert np.array_equal(a[0], b[0]) and a[1] == b[1] and a[2] == b[2]


def test_confirm_gap_interval_and_cluster_bootstrap():
    rng = np.random.default_rng(1)
    inside = np.zeros(2000, bool)
    inside[:200] = True
    correct = rng.random(2000) > np.where(inside, 0.5, 0.1)
    r = confirm_gap(inside, correct, seed=0)
    assert r["ci_low"] < r["gap"] < r["ci_high"] and r["ci_low"] > 0.25 and r["p"] < 1e-6
    null = confirm_gap(inside, rng.random(2000) > 0.1, seed=0)
    assert null["ci_low"] < 0 < null["ci_high"] and null["p"] > 0.01
    # rows of one group share their fate: the cluster bootstrap's interval is wider than the row bootstrap's
    groups = np.repeat(np.arange(100), 20)
    shared = np.repeat(rng.random(100) > 0.3, 20)
    rows = confirm_gap(inside, shared, seed=0)
    clus = confirm_gap(inside, shared, seed=0, groups=groups)
    assert clus["ci_high"] - clus["ci_low"] > 1.5 * (rows["ci_high"] - rows["ci_low"])
    assert clus["bootstrap"] == "groups"


def _slice_row(**kw):
    row = {"slice_id": "m/p/f/s0#0", "model": "m", "protocol": "p", "fold": "f", "confirmed": True,
           "n_confirm": 120, "accuracy": 0.5, "rest_accuracy": 0.9, "gap": 0.4, "ci_low": 0.25, "ci_high": 0.55,
           "p": 1e-6, "q": 1e-5, "description": "brightness lower (d=-1.40)", "lead_column": "brightness",
           "lead_value": "", "lead_effect": -1.4, "labeled": False}
    return pd.DataFrame([{**row, **kw}])


@pytest.mark.parametrize(("change", "because"), [
    ({}, None),
    ({"q": 0.02}, "q=0.02 is not below 0.01"),
    ({"ci_low": 0.08}, "low bound +8.0% is not above 10%"),
    ({"n_confirm": 39}, "39 rows are fewer than 2 x min_n = 40"),
    ({"lead_column": "attr.background", "lead_value": "cool", "labeled": True},
     "labeled column attr.background=cool"),
    ({"lead_column": "domain", "lead_value": "scanner", "labeled": True}, "labeled column domain=scanner"),
])
def test_critical_needs_strong_evidence_on_an_unlabeled_slice(change, because):
    from audit.slices.stage import _findings

    (f,) = _findings(_slice_row(**change), SliceConfig(min_n=20))
    assert "q=1e-05" in f.detail or "q=0.02" in f.detail  # the numbers it fired on are in the detail
    if because is None:
        assert f.severity == "critical" and "Critical: q=1e-05 < 0.01" in f.detail
        assert "brightness" in f.evidence["severity_rule"]
    else:
        assert f.severity == "warning" and because in f.detail, f.detail
    assert _findings(_slice_row(confirmed=False), SliceConfig()) == []


def test_labeled_structure_on_the_demo_is_never_critical(demo_classify, tmp_path):
    """The bundled demo plants labeled problems only (a background shortcut, a scanner domain): slices found there
    are explained by those columns, so none of their findings is critical."""
    from conftest import ingest_demo

    from audit.slices import run_slices
    from audit.train import TrainConfig, run_training

    run = ingest_demo(demo_classify, tmp_path / "run")
    run_training(run, TrainConfig(epochs=2, protocol="lodo", image_size=32, model="small_cnn", device="cpu"))
    findings = run_slices(run, SliceConfig(seed=0))
    s = pd.read_parquet(run.path / "slices" / "slices.parquet")
    assert all(f.severity != "critical" for f in findings), [(f.severity, f.detail) for f in findings]
    assert s.loc[s["confirmed"], "labeled"].all(), s[["lead_column", "lead_value", "confirmed"]]


# ------------------------------------------------------------------------------------------- end to end
def _image(rng, label: int, artifact: bool) -> np.ndarray:
    """16 px: a coloured central square on grey noise (the class); the artifact covers it with a striped patch."""
    img = rng.normal(110, 25, (16, 16, 3))
    colour = np.array([[220, 40, 40], [40, 200, 40], [40, 60, 230]][label], dtype=float)
    img[4:12, 4:12] = colour + rng.normal(0, 15, (8, 8, 3))
    if artifact:
        img[2:14, 2:14] = 128
        img[2:14:2, 2:14] = 250
    return np.clip(img, 0, 255).astype(np.uint8)


def _artifact_dataset(root, seed=0, artifact_share=(0.03, 0.3), test_label_noise=0.0):
    """Artifact on a few % of the training images and more of the test images; ``test_label_noise``: a share of
    test labels replaced at random (errors the model makes everywhere, in no region: the control)."""
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in (("train", 300), ("val", 60), ("test", 480)):
        share = artifact_share[1] if split == "test" else artifact_share[0]
        for i in range(n):
            lab, art = int(rng.integers(0, 3)), bool(rng.random() < share)
            rel = f"{split}/{i:04d}.png"
            (root / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(_image(rng, lab, art)).save(root / rel)
            if split == "test" and rng.random() < test_label_noise:
                lab = (lab + int(rng.integers(1, 3))) % 3
            rows.append({"filepath": rel, "label": ["red", "green", "blue"][lab], "split": split,
                         "artifact": art})
    return pd.DataFrame(rows)


def _trained_run(tmp_path, **dataset_kw):
    """The generated set ingested and trained (small_cnn, 16 px, 4 epochs: ~5 s); ``(run, artifact by path)``."""
    from audit.ingest import ingest
    from audit.manifest import Roles
    from audit.readers import ReadOptions
    from audit.train import TrainConfig, run_training

    data = tmp_path / "data"
    table = _artifact_dataset(data, **dataset_kw)
    truth = dict(zip(table["filepath"], table["artifact"]))
    table.drop(columns="artifact").to_csv(data / "labels.csv", index=False)
    opts = ReadOptions(roles=Roles(filepath="filepath", label="label", split="split"), root=data)
    run = ingest(data / "labels.csv", out=tmp_path / "run", format="table", options=opts, seed=0,
                 command=["audit", "test"])
    run_training(run, TrainConfig(epochs=4, protocol="split", image_size=16, model="small_cnn", device="cpu"))
    return run, truth


def test_end_to_end_control_without_artifact_confirms_nothing(tmp_path):
    from audit.slices import SliceConfig, run_slices

    run, _ = _trained_run(tmp_path, artifact_share=(0.0, 0.0), test_label_noise=0.15)
    preds = pd.read_parquet(run.path / "predictions.parquet").query("role == 'test'")
    assert 0.7 < (preds["y_true"] == preds["y_pred"]).mean() < 0.95  # the model errs, but nowhere in particular
    assert run_slices(run, SliceConfig(seed=0)) == []
    s = pd.read_parquet(run.path / "slices" / "slices.parquet")
    assert not len(s) or not s["confirmed"].any()


def test_end_to_end_artifact_slice(tmp_path):
    from audit.slices import SliceConfig, run_slices

    run, truth = _trained_run(tmp_path)
    emb = sorted((run.path / "embeddings" / "predict").glob("*.npy"))
    assert emb and np.load(emb[0]).dtype == np.float16
    findings = run_slices(run, SliceConfig(seed=0))
    slices = pd.read_parquet(run.path / "slices" / "slices.parquet")
    members = pd.read_parquet(run.path / "slices" / "members.parquet")
    man = run.manifest()
    art = man["filepath"].map(truth).astype(bool)
    art_ids = set(man.loc[art, "sample_id"].astype(str))
    test_ids = set(pd.read_parquet(run.path / "predictions.parquet").query("role == 'test'")["sample_id"])
    planted = art_ids & test_ids
    best = None
    for sid in slices.loc[slices["confirmed"], "slice_id"]:
        got = set(members.loc[members["slice_id"] == sid, "sample_id"])
        prec, rec = len(got & planted) / len(got), len(got & planted) / len(planted)
        best = max(best or (0, 0), (prec, rec), key=lambda t: t[0] + t[1])
    assert best is not None, slices[["n_confirm", "accuracy", "rest_accuracy", "gap", "ci_low", "q"]]
    assert best[0] >= 0.7 and best[1] >= 0.5, best
    assert any(f.kind == "hidden_slice" for f in findings)
    assert any(f.severity == "critical" for f in findings)  # unlabeled, large, clear: the one case for critical
    for f in findings:  # the severity says which evidence it rests on
        assert f.evidence["severity_rule"] in f.detail and f"q={f.evidence['q']:.2g}" in f.detail, f.detail
    for sid, g in members.groupby("slice_id"):  # a row is in one half only
        assert not g["sample_id"].duplicated().any()
    ex = pd.read_parquet(run.path / "slices" / "examples.parquet")
    assert 0 < ex.groupby("slice_id").size().max() <= 16


def test_embedding_hook_reads_the_head_input_of_every_registered_model():
    """For each model of the registry, the hooked layer is the one that outputs the classes (its input is the
    penultimate representation; a segmenter's is pooled over the pixels): one float16 [n, d] per forward."""
    import torch

    from audit.slices.embed import EmbeddingHook, head_input_layer
    from audit.train.models import MODELS, build_model

    for name in MODELS:
        model, _ = build_model(name, 5)
        layer = head_input_layer(model)
        assert getattr(layer, "out_features", getattr(layer, "out_channels", None)) == 5, name
        model.eval()
        with EmbeddingHook(model) as hook, torch.no_grad():
            model(torch.rand(2, 3, 64, 64))
        a = hook.array()
        assert len(hook.batches) == 1 and a.dtype == np.float16 and a.shape[0] == 2 and a.ndim == 2, name


# ------------------------------------------------------------------- a user's embeddings, CLI, dashboard, policy
@pytest.fixture(scope="module")
def fake_sliced(tmp_path_factory):
    """A fake run (audit.testing) whose user-supplied embeddings put a third of the errors in one region."""
    from typer.testing import CliRunner

    from audit.cli import app
    from audit.testing import make_fake_run

    base = tmp_path_factory.mktemp("slices")
    run = make_fake_run(base / "run", n=600)
    preds = pd.read_parquet(run.path / "predictions.parquet")
    rng = np.random.default_rng(0)
    ids = run.manifest()["sample_id"].astype(str).to_numpy()
    wrong = set(preds.loc[preds["y_true"] != preds["y_pred"], "sample_id"].astype(str))
    vec = rng.normal(0, 1, (len(ids), 16))
    hot = np.array([s in wrong and rng.random() < 0.7 for s in ids])
    vec[hot, :4] += 4.0
    pd.DataFrame({"sample_id": ids, "vector": list(vec.astype(np.float32))}).to_parquet(base / "emb.parquet")
    res = CliRunner().invoke(app, ["slices", str(run.path), "--embeddings", str(base / "emb.parquet"),
                                   "--min-n", "10", "--n-boot", "500"])
    assert res.exit_code == 0, res.output
    return run, base


def test_user_embeddings_cli_and_policy(fake_sliced, tmp_path):
    from typer.testing import CliRunner

    from audit.cli import app

    run, base = fake_sliced
    s = pd.read_parquet(run.path / "slices" / "slices.parquet")
    assert s["confirmed"].any() and (s.loc[s["confirmed"], "ci_low"] > 0).all()
    assert {"slice_id", "model", "protocol", "fold", "method", "n_discover", "n_confirm", "accuracy",
            "rest_accuracy", "gap", "ci_low", "ci_high", "p", "q", "confirmed", "description"} <= set(s.columns)
    kinds = [f["kind"] for f in run.findings()]
    assert kinds.count("hidden_slice") == int(s["confirmed"].sum())
    pol = tmp_path / "p.toml"
    pol.write_text('[[rule]]\nid = "gap"\ncheck = "max_slice_gap"\nthreshold = 0.01\n')
    assert CliRunner().invoke(app, ["check", str(run.path), "--policy", str(pol)]).exit_code == 1
    pol.write_text('[[rule]]\nid = "gap"\ncheck = "max_slice_gap"\nthreshold = 1.0\n')
    assert CliRunner().invoke(app, ["check", str(run.path), "--policy", str(pol)]).exit_code == 0
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"id": ["a"], "x": [1.0]}).to_parquet(bad)
    res = CliRunner().invoke(app, ["slices", str(run.path), "--embeddings", str(bad)])
    assert res.exit_code == 2 and "sample_id" in res.output


def test_report_has_a_slices_section(fake_sliced):
    from audit.report import write_report

    run, _ = fake_sliced
    html = write_report(run)[0].read_text()
    s = pd.read_parquet(run.path / "slices" / "slices.parquet")
    assert "Hidden slices" in html
    assert f"{int(s['confirmed'].sum())} of {len(s)} candidate slice(s) confirmed" in html
    assert str(s.loc[s["confirmed"], "slice_id"].iloc[0]) in html


def test_rules_apply_to_new_rows(fake_sliced):
    from audit.slices.rules import apply, read_rules

    run, _ = fake_sliced
    rules = read_rules(run.path / "slices")
    assert rules and any(c for *_, c in rules)
    _, proj, rule, _ = rules[0]
    d = proj.components.shape[1]
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (400, d)).astype(np.float32)
    x[:100, :4] += 4.0  # the region the slices were found in
    correct = np.ones(400, bool)
    correct[:100] = rng.random(100) > 0.7
    out = apply(run.path / "slices", x, correct, n_boot=300)
    assert len(out) == len(rules) and out["gap"].max() > 0.3


def test_slices_dashboard_page(fake_sliced, monkeypatch):
    pytest.importorskip("streamlit")
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    run, _ = fake_sliced
    monkeypatch.setenv("IMGAUDIT_RUN", str(run.path))
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "dashboards" / "app.py"),
                           default_timeout=60)
    at.run()
    at.switch_page("app_pages/slices.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == ["Slices"]
    assert any(m.label == "Confirmed" and int(m.value) >= 1 for m in at.metric)


@pytest.mark.slow  # starts FiftyOne's database (~20 s)
def test_fiftyone_saved_view_per_confirmed_slice(fake_sliced, tmp_path):
    import os

    os.environ.setdefault("FIFTYONE_DATABASE_DIR", str(tmp_path / "fo_db"))
    os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
    os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"
    fo = pytest.importorskip("fiftyone")
    try:
        fo.list_datasets()
    except Exception as e:  # pragma: no cover - no database binary
        pytest.skip(f"FiftyOne's database cannot start: {e}")
    from audit.integrations.fiftyone import export_run

    run, _ = fake_sliced
    name = export_run(run, name="slices-test")
    ds = fo.load_dataset(name)
    s = pd.read_parquet(run.path / "slices" / "slices.parquet")
    mem = pd.read_parquet(run.path / "slices" / "members.parquet")
    views = [v for v in ds.list_saved_views() if v.startswith("slice ")]
    assert len(views) == int(s["confirmed"].sum())
    top = s[s["confirmed"]].sort_values("gap", ascending=False).iloc[0]
    v = ds.load_saved_view(views[0])
    assert set(v.values("audit_id")) == set(mem.loc[mem["slice_id"] == top["slice_id"], "sample_id"])
    fo.delete_dataset(name)


def test_probe_features_serve_as_embeddings(tmp_path):
    """--mode probe stores the frozen backbone's features (RUN/embeddings/features-<key>.*), not per-fold prediction
    embeddings: slice discovery (and `audit run`, which would otherwise skip slices) uses them, one vector per image."""
    import json

    from audit.pipeline import slices_stage
    from audit.rundir import RunDir
    from audit.testing import make_fake_run

    run = make_fake_run(tmp_path / "run", n=600)
    preds = pd.read_parquet(run.path / "predictions.parquet")
    ids = run.manifest()["sample_id"].astype(str).to_numpy()
    wrong = set(preds.loc[preds["y_true"] != preds["y_pred"], "sample_id"].astype(str))
    rng = np.random.default_rng(0)
    vec = rng.normal(0, 1, (len(ids), 16)).astype(np.float32)
    vec[np.array([s in wrong and rng.random() < 0.7 for s in ids]), :4] += 4.0
    emb = run.path / "embeddings"
    emb.mkdir()
    np.save(emb / "features-abc.npy", vec[::-1])  # stored in another order than the manifest: joined by sample id
    (emb / "features-abc.json").write_text(json.dumps({"model": "efficientnet_lite0", "sample_ids": list(ids[::-1])}))
    rd = RunDir(run.path)
    slices_stage(rd, seed=0, min_n=10, n_boot=500)
    info = RunDir(run.path).info["stages"]["slices"]
    assert info["status"] == "ok", info
    s = pd.read_parquet(run.path / "slices" / "slices.parquet")
    assert s["confirmed"].any()
    summary = json.loads((run.path / "slices" / "summary.json").read_text())
    assert "probe" in summary["embeddings"] and summary["without_vectors"] == 0


def test_a_labeled_column_explains_a_slice_even_when_a_statistic_leads():
    """The full demo's scanner slice: brightness d=+1.82 leads the description, but domain=scanner is 100% vs 51%
    inside/outside: labeled structure (a warning), not a hidden critical slice."""
    from audit.slices.describe import labeled_feature, lead_feature

    feats = [{"column": "brightness", "value": "", "effect": 1.82, "kind": "cohen_d"},
             {"column": "domain", "value": "scanner", "effect": 0.49, "share_in": 1.0, "share_rest": 0.51,
              "kind": "share"},
             {"column": "attr.ink", "value": "navy", "effect": 0.12, "share_in": 0.6, "share_rest": 0.48,
              "kind": "share"}]
    assert lead_feature(feats)["column"] == "brightness"
    assert labeled_feature(feats)["column"] == "domain"
    assert labeled_feature([feats[0], feats[2]]) is None  # 12 points of share: not enough to explain it


def test_check_tracks_a_baselines_slices_on_a_later_run(fake_sliced, tmp_path):
    """`audit check NEW --baseline OLD` with tracked_slices: OLD's confirmed slices applied to NEW in the same
    (user-given) embedding space; a later model that fixed the slice passes, the same model fails."""
    import shutil

    from typer.testing import CliRunner

    from audit.cli import app
    from audit.slices.track import track_slices

    run, _ = fake_sliced
    same = track_slices(run.path, run.path, n_boot=300)
    assert len(same) and (same["gap"] > 0.1).all() and (same["ci_low"] > 0).all()
    fixed = tmp_path / "fixed"
    shutil.copytree(run.path, fixed)
    preds = pd.read_parquet(fixed / "predictions.parquet")
    preds["y_pred"] = preds["y_true"]  # the later model gets every image right
    preds.to_parquet(fixed / "predictions.parquet")
    later = track_slices(run.path, fixed, n_boot=300)
    assert (later["gap"].abs() < 1e-9).all() and list(later["slice_id"]) == list(same["slice_id"])
    pol = tmp_path / "p.toml"
    pol.write_text('[[rule]]\nid = "tracked"\ncheck = "tracked_slices"\nthreshold = 0.05\n')
    assert CliRunner().invoke(app, ["check", str(fixed), "--policy", str(pol), "--baseline", str(run.path)]
                              ).exit_code == 0
    res = CliRunner().invoke(app, ["check", str(run.path), "--policy", str(pol), "--baseline", str(run.path)])
    assert res.exit_code == 1, res.output
    assert CliRunner().invoke(app, ["check", str(fixed), "--policy", str(pol)]).exit_code == 0  # no baseline: skip


def test_tracking_refuses_a_retrained_networks_own_embeddings(fake_sliced, tmp_path):
    import json
    import shutil

    from audit.errors import InputError
    from audit.slices.track import track_slices

    run, _ = fake_sliced
    base = tmp_path / "base"
    shutil.copytree(run.path, base)
    rules = json.loads((base / "slices" / "rules.json").read_text())
    rules["embeddings"] = "stored (penultimate layer)"
    (base / "slices" / "rules.json").write_text(json.dumps(rules))
    with pytest.raises(InputError, match="another space"):
        track_slices(base, run.path)


def test_an_image_statistic_of_the_planted_slice_reaches_its_description(tmp_path):
    """The planted slice's images are noisier (profile column ``noise``): the confirmed slice's features name
    noise with a large Cohen's d, and its description says so."""
    from audit.slices import run_slices
    from audit.testing import make_fake_run

    run = make_fake_run(tmp_path / "run", n=600)
    preds = pd.read_parquet(run.path / "predictions.parquet")
    rng = np.random.default_rng(0)
    ids = run.manifest()["sample_id"].astype(str).to_numpy()
    wrong = set(preds.loc[preds["y_true"] != preds["y_pred"], "sample_id"].astype(str))
    hot = np.array([s in wrong and rng.random() < 0.7 for s in ids])
    vec = rng.normal(0, 1, (len(ids), 16))
    vec[hot, :4] += 4.0
    pd.DataFrame({"sample_id": ids, "vector": list(vec.astype(np.float32))}).to_parquet(tmp_path / "emb.parquet")
    im = pd.read_parquet(run.path / "profile" / "images.parquet")
    noisy = im["sample_id"].astype(str).isin(set(ids[hot])).to_numpy()
    im["noise"] = np.where(noisy, 12.0, 3.0) + rng.normal(0, 0.5, len(im))
    im.to_parquet(run.path / "profile" / "images.parquet")
    run_slices(run, SliceConfig(seed=0, min_n=10, n_boot=300, embeddings=str(tmp_path / "emb.parquet")))
    s = pd.read_parquet(run.path / "slices" / "slices.parquet")
    feats = pd.read_parquet(run.path / "slices" / "features.parquet")
    assert s["confirmed"].any()
    for sid in s.loc[s["confirmed"], "slice_id"]:
        f = feats[(feats["slice_id"] == sid) & (feats["column"] == "noise")]
        assert len(f) == 1 and f["kind"].item() == "cohen_d" and f["effect"].item() > 1.0, f
        assert f["mean_in"].item() > f["mean_rest"].item()
    assert s.loc[s["confirmed"], "description"].str.contains("noise higher").any(), s["description"].tolist()


def test_tables_keep_their_columns_without_candidates(tmp_path, monkeypatch):
    """No candidate at all: slices/members/examples/features.parquet are written with their documented columns."""
    import audit.slices.stage as stage
    from audit.slices import run_slices
    from audit.testing import make_fake_run

    run = make_fake_run(tmp_path / "run", n=120)
    ids = run.manifest()["sample_id"].astype(str).to_numpy()
    vec = np.random.default_rng(0).normal(0, 1, (len(ids), 8)).astype(np.float32)
    pd.DataFrame({"sample_id": ids, "vector": list(vec)}).to_parquet(tmp_path / "emb.parquet")
    monkeypatch.setattr(stage, "slice_fold", lambda x, *a, **k: (np.zeros(len(x), bool), []))
    assert run_slices(run, SliceConfig(seed=0, min_n=10, n_boot=50, embeddings=str(tmp_path / "emb.parquet"))) == []
    for name, schema in stage.SCHEMAS.items():
        t = pd.read_parquet(run.path / "slices" / f"{name}.parquet")
        assert len(t) == 0 and list(t.columns) == [c for c, _ in schema], (name, list(t.columns))
    s = pd.read_parquet(run.path / "slices" / "slices.parquet")
    assert {"slice_id", "model", "protocol", "fold", "method", "n_discover", "n_confirm", "accuracy",
            "rest_accuracy", "gap", "ci_low", "ci_high", "p", "q", "confirmed", "description"} <= set(s.columns)
    assert s["confirmed"].dtype == bool and s["gap"].dtype == np.float64


# ------------------------------------------------------------------ embeddings from the DDP and Ray engines
def _small_demo(demo_classify, out, per_domain=80):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conftest import ingest_demo

    run = ingest_demo(demo_classify, out)
    man = run.manifest()
    run.write_manifest(man.groupby("domain", group_keys=False).head(per_domain).reset_index(drop=True))
    return run


def _embeddings_match_the_predictions(run):
    """Every fold stored its vectors, one per prediction row in the same order: the fold's own head (its last
    Linear, from the finished checkpoint) applied to the stored vector gives back the stored probabilities."""
    import torch

    from audit.slices.embed import head_input_layer
    from audit.train.models import build_model

    preds = pd.read_parquet(run.path / "predictions.parquet")
    classes = [str(c) for c in run.classes()]
    base = run.path / "embeddings" / "predict"
    keys = sorted(p.stem for p in (run.path / "train" / "folds").glob("*.parquet"))
    assert keys and sorted(p.stem for p in base.glob("*.npy")) == keys
    for key in keys:
        fold = pd.read_parquet(run.path / "train" / "folds" / f"{key}.parquet")
        idx = pd.read_parquet(base / f"{key}.parquet")
        vec = np.load(base / f"{key}.npy")
        assert vec.dtype == np.float16 and len(vec) == len(fold) == len(idx)
        assert idx["sample_id"].tolist() == fold["sample_id"].tolist()
        model, _ = build_model("small_cnn", len(classes))
        model.load_state_dict(torch.load(run.path / "train" / "ckpt" / f"{key}.pt", weights_only=True)["model"])
        head = head_input_layer(model)
        with torch.no_grad():
            p = torch.softmax(head(torch.from_numpy(vec.astype(np.float32))), 1).numpy()
        np.testing.assert_allclose(p, fold[[f"p_{c}" for c in classes]].to_numpy(), atol=0.02)
    assert len(preds) == sum(len(pd.read_parquet(base / f"{k}.parquet")) for k in keys)


def test_ddp_ranks_store_the_embeddings_of_every_prediction(demo_classify, tmp_path):
    """--distributed 2 (gloo, CPU): each rank records its rows' vectors; rank 0 stores them in row order."""
    from typer.testing import CliRunner

    from audit.cli import app

    run = _small_demo(demo_classify, tmp_path / "ddp")
    r = CliRunner().invoke(app, ["--quiet", "train", str(run.path), "--distributed", "2", "--model", "small_cnn",
                                 "--protocol", "split", "--epochs", "1", "--image-size", "32", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    _embeddings_match_the_predictions(run)


def test_ray_parallel_folds_store_the_embeddings_of_every_prediction(demo_classify, tmp_path):
    """--engine ray on a real 2-CPU local cluster: every fold's vectors, captured in its Ray task during the same
    inference pass as its predictions, in their order."""
    ray = pytest.importorskip("ray")
    import os

    from audit.train import TrainConfig, run_training

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    if ray.is_initialized():  # pragma: no cover - another module left one running
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        run = _small_demo(demo_classify, tmp_path / "ray", per_domain=60)
        run_training(run, TrainConfig(model="small_cnn", protocol="lodo", epochs=1, image_size=32, device="cpu",
                                      engine="ray"))
    finally:
        ray.shutdown()
    assert run.info["stages"]["train"]["executor"]["training"] == "ray tasks, one per fold"
    _embeddings_match_the_predictions(run)
