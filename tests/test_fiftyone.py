"""FiftyOne export / import with the real database (mongod in a temporary folder, one per test session)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from audit.errors import UsageError
from audit.manifest import Roles
from audit.readers import ReadOptions, read_dataset

pytestmark = pytest.mark.skipif(importlib.util.find_spec("fiftyone") is None, reason="fiftyone is not installed")


@pytest.fixture(scope="session")
def fo(tmp_path_factory):
    """fiftyone, connected to a database in a temporary folder (started once: ~6 s)."""
    db = tmp_path_factory.mktemp("fiftyone_db")
    os.environ["FIFTYONE_DATABASE_DIR"] = str(db)
    os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
    os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"
    try:
        import fiftyone
    except Exception as e:  # pragma: no cover - broken install
        pytest.skip(f"fiftyone cannot be imported: {e}")
    fiftyone.config.database_dir = str(db)
    fiftyone.config.database_validation = False
    try:
        fiftyone.list_datasets()
    except Exception as e:  # pragma: no cover - no database binary
        pytest.skip(f"FiftyOne's database cannot start: {e}")
    return fiftyone


# ---------------------------------------------------------------------------------------------- synthetic runs
def add_classify_predictions(run, *, seed: int = 0, acc: float = 0.8) -> pd.DataFrame:
    """Write predictions.parquet (docs/formats.md) for a classification run: lodo folds over its domains."""
    rng = np.random.default_rng(seed)
    m = run.manifest()
    classes = [str(c) for c in run.classes()]
    frames = []
    for held in sorted(m["domain"].dropna().unique()):
        test = m[(m["domain"] == held) | (m["split"] == "test")].dropna(subset=["label"])
        n, k = len(test), len(classes)
        yt = test["label"].astype(str).map(classes.index).to_numpy()
        ok = rng.random(n) < acc
        yp = np.where(ok, yt, (yt + rng.integers(1, k, n)) % k)
        conf = rng.uniform(0.5, 0.99, n)
        df = pd.DataFrame({
            "sample_id": test["sample_id"].to_numpy(), "model": "small_cnn", "protocol": "lodo",
            "fold": f"holdout={held}", "seed": 0, "role": "test", "held_out": (test["domain"] == held).to_numpy(),
            "train_domains": "|".join(d for d in sorted(m["domain"].dropna().unique()) if d != held),
            "test_domain": test["domain"].to_numpy(), "y_true": [classes[i] for i in yt],
            "y_pred": [classes[i] for i in yp], "confidence": conf,
        })
        for ci, c in enumerate(classes):
            df[f"p_{c}"] = np.where(yp == ci, conf, (1 - conf) / (k - 1))
        frames.append(df)
    preds = pd.concat(frames, ignore_index=True)
    run.write_table("predictions.parquet", preds)
    return preds


def add_segment_predictions(run, *, seed: int = 0, folds: int = 2) -> pd.DataFrame:
    """Predictions with pred_mask PNGs (ground truth with some pixels flipped) and the pixel counts."""
    rng = np.random.default_rng(seed)
    m = run.manifest()
    k = len(run.classes())
    frames = []
    for held in sorted(m["domain"].dropna().unique())[:folds]:
        rows = []
        for r in m[m["domain"] == held].itertuples(index=False):
            try:
                gt = np.asarray(Image.open(run.abspath(r.mask)))
            except Exception:
                continue
            pred = gt.copy()
            flip = rng.random(gt.shape) < 0.1
            pred[flip] = rng.integers(0, k, int(flip.sum()))
            rel = f"predictions/masks/{held}/{Path(r.filepath).stem}.png"
            (run.path / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pred.astype(np.uint8), mode="L").save(run.path / rel)
            row = {"sample_id": r.sample_id, "model": "small_unet", "protocol": "lodo", "fold": f"holdout={held}",
                   "seed": 0, "role": "test", "held_out": True, "train_domains": "", "test_domain": held,
                   "pixel_acc": float((pred == gt).mean()), "pred_mask": rel}
            for c in range(k):
                t, p = gt == c, pred == c
                row |= {f"inter_{c}": int((t & p).sum()), f"union_{c}": int((t | p).sum()),
                        f"pred_{c}": int(p.sum()), f"true_{c}": int(t.sum())}
            rows.append(row)
        frames.append(pd.DataFrame(rows))
    preds = pd.concat(frames, ignore_index=True)
    run.write_table("predictions.parquet", preds)
    return preds


def snapshot(ds) -> dict:
    """Everything re-export must keep identical."""
    schema = sorted(ds.get_field_schema())
    vals = {f: ds.values(f) for f in schema if f not in ("id", "metadata", "created_at", "last_modified_at")}
    labels = {f: [None if v is None else (v.label if hasattr(v, "label") else v.mask_path) for v in vals.pop(f)]
              for f in list(vals) if f == "ground_truth" or f.startswith("pred_") and not f.endswith("_miou")}
    return {"n": len(ds), "schema": schema, "values": vals, "labels": labels, "evals": sorted(ds.list_evaluations()),
            "views": sorted(ds.list_saved_views())}


# ---------------------------------------------------------------------------------------------- export
def test_export_full_fake_run(fo, tmp_path):
    from audit.integrations.fiftyone import export_run
    from audit.testing import make_fake_run

    run = make_fake_run(tmp_path / "run", task="classify", n=120)
    name = export_run(run, name="fake-classify")
    ds = fo.load_dataset(name)
    m = run.manifest()
    assert ds.persistent and len(ds) == len(m) == 120
    assert ds.values("audit_id") == m["sample_id"].tolist()
    schema = ds.get_field_schema()
    for f in ("ground_truth", "domain", "split", "group", "attr_background", "attr_ink", "profile_readable",
              "profile_error", "profile_brightness", "profile_width", "dup_exact", "dup_near", "dup_cross_split",
              "dup_label_conflict", "dup_set"):
        assert f in schema, f
    assert ds.values("ground_truth.label") == m["label"].tolist()
    assert ds.values("attr_background") == m["attr.background"].tolist()
    # predictions: one field per fold, evaluated by FiftyOne under its own eval key
    preds = run.read_table("predictions.parquet")
    folds = sorted(preds["fold"].unique())
    assert sorted(ds.list_evaluations()) == sorted(f"eval_small_cnn_{f.split('=')[1]}" for f in folds)
    for fold in folds:
        dom = fold.split("=")[1]
        field, key = f"pred_small_cnn_{dom}", f"eval_small_cnn_{dom}"
        sub = preds[preds["fold"] == fold]
        view = ds.exists(field)
        assert len(view) == len(sub)
        ref = float((sub["y_true"] == sub["y_pred"]).mean())  # reference: accuracy straight from the table
        res = ds.load_evaluation_results(key)
        assert res.metrics()["accuracy"] == pytest.approx(ref)
        assert key in schema or key in ds.get_field_schema()  # per-sample True/False from FiftyOne
        assert sum(v is True for v in ds.values(key)) == int((sub["y_true"] == sub["y_pred"]).sum())
        conf = dict(zip(ds.values("audit_id"), ds.values(f"{field}.confidence"), strict=True))
        r0 = sub.iloc[0]
        assert conf[r0["sample_id"]] == pytest.approx(r0["confidence"])
    # saved views: broken files, leakage sets, the worst group
    views = ds.list_saved_views()
    assert len(ds.load_saved_view("broken files")) == 2
    dups = run.read_table("profile/duplicates.parquet")
    ids_of = lambda d: set(d["a"]) | set(d["b"])  # noqa: E731
    for view, rows in [("split leakage", dups[dups["cross_split"]]), ("label conflicts", dups[dups["label_conflict"]]),
                       ("all duplicates", dups)]:
        assert set(ds.load_saved_view(view).values("audit_id")) == ids_of(rows), view
    dupset_views = [v for v in views if v.startswith("dupset-")]
    assert len(dupset_views) == 3 and all(len(ds.load_saved_view(v)) == 2 for v in dupset_views)
    worst = [f for f in run.findings() if f["kind"] == "worst_group"]
    wviews = [v for v in views if v.startswith("worst group")]
    assert len(wviews) == len(worst) == 1
    by, grp = worst[0]["columns"][0], worst[0]["groups"][0]  # possibly an intersection: "domain x attr.b" / "s | w"
    member = np.ones(len(m), bool)
    for col, val in zip(by.split(" x "), grp.split(" | "), strict=True):
        member &= (m[col.strip()] == val.strip()).fillna(False).to_numpy(bool)
    assert len(ds.load_saved_view(wviews[0])) == int(member.sum()) > 0
    info = ds.info["imgaudit"]
    assert info["run"] == str(run.path.resolve()) and info["notes"] == []


def test_reexport_is_idempotent_and_round_trips(fo, tmp_path):
    from audit.integrations.fiftyone import default_name, export_run
    from audit.testing import make_fake_run

    run = make_fake_run(tmp_path / "run", task="classify", n=60, seed=3)
    if default_name(run) in fo.list_datasets():  # a database left by an earlier, killed session: start clean
        fo.delete_dataset(default_name(run))
    name = export_run(run)
    assert name == default_name(run)
    before = snapshot(fo.load_dataset(name))
    user_view = fo.load_dataset(name)
    user_view.save_view("mine", user_view.limit(3))  # a view the user made survives re-export
    assert export_run(run) == name
    ds = fo.load_dataset(name)
    after = snapshot(ds)
    after["views"].remove("mine")
    assert after == before
    assert len(ds) == 60 and len(set(ds.values("audit_id"))) == 60
    # import it back: the same manifest
    res = read_dataset(None, options=ReadOptions(dataset_name=name))
    assert res.format == "fiftyone" and res.root == run.root.resolve()
    pd.testing.assert_frame_equal(res.manifest, run.manifest())


def test_export_demo_classify_run(fo, classify_run):
    """The ingested demo with the real profile and metrics stages (when built) and synthetic predictions."""
    from audit import pipeline
    from audit.integrations.fiftyone import export_run

    real_profile = hasattr(pipeline, "profile_stage")  # the profile stage is always built now
    if real_profile:
        pipeline.profile_stage(classify_run, required=True, min_n=30, seed=0, workers=1)
    preds = add_classify_predictions(classify_run)
    if hasattr(pipeline, "metrics_stage"):
        pipeline.metrics_stage(classify_run, required=True, min_n=30, seed=0, n_boot=100)
    classify_run.unlock()
    name = export_run(classify_run, name="demo-classify")
    ds = fo.load_dataset(name)
    m = classify_run.manifest()
    assert len(ds) == len(m)
    domains = sorted(m["domain"].dropna().unique())
    assert sorted(ds.list_evaluations()) == [f"eval_small_cnn_{d}" for d in domains]
    for d in domains:
        sub = preds[preds["fold"] == f"holdout={d}"]
        acc = ds.load_evaluation_results(f"eval_small_cnn_{d}").metrics()["accuracy"]
        assert acc == pytest.approx(float((sub["y_true"] == sub["y_pred"]).mean()))
    # round trip through the reader
    back = read_dataset(None, options=ReadOptions(dataset_name=name)).manifest
    pd.testing.assert_frame_equal(back, m)
    if real_profile:  # the planted broken files and duplicates become fields and saved views
        images = classify_run.read_table("profile/images.parquet")
        broken = set(images.loc[~images["readable"].astype(bool), "sample_id"])
        assert broken and set(ds.load_saved_view("broken files").values("audit_id")) == broken
        dups = classify_run.read_table("profile/duplicates.parquet")
        leak = dups[dups["cross_split"].astype(bool)]
        assert len(leak) and (set(ds.load_saved_view("split leakage").values("audit_id"))
                              == set(leak["a"]) | set(leak["b"]))
    if classify_run.has("metrics/groups.parquet"):
        assert any(v.startswith("worst group small_cnn") for v in ds.list_saved_views())


def test_export_demo_segment_run(fo, segment_run):
    from audit.integrations.fiftyone import export_run

    preds = add_segment_predictions(segment_run, folds=1)
    name = export_run(segment_run, name="demo-segment")
    ds = fo.load_dataset(name)
    m = segment_run.manifest()
    assert len(ds) == len(m)
    assert ds.default_mask_targets == {0: "background", 1: "low_digit", 2: "high_digit"}
    gt = ds.values("ground_truth.mask_path")
    assert gt[0] == str(segment_run.abspath(m["mask"].iloc[0]))
    dom = preds["test_domain"].iloc[0]
    field, key = f"pred_small_unet_{dom}", f"eval_small_unet_{dom}"
    assert ds.list_evaluations() == [key]
    assert len(ds.exists(field)) == len(preds)
    res = ds.load_evaluation_results(key)
    # reference: pixel accuracy over the evaluated images from the counts we wrote
    inter = preds[[c for c in preds.columns if c.startswith("inter_")]].to_numpy().sum()
    total = preds[[c for c in preds.columns if c.startswith("true_")]].to_numpy().sum()
    cm = np.asarray(res.pixel_confusion_matrix)  # FiftyOne's own pixel counts over the masks it loaded
    assert cm.shape == (3, 3) and np.trace(cm) / cm.sum() == pytest.approx(inter / total, rel=1e-9)
    assert cm.sum() == total
    miou = ds.values(f"{field}_miou")
    assert sum(v is not None for v in miou) == len(preds)
    assert f"{key}_accuracy" in ds.get_field_schema()
    back = read_dataset(None, options=ReadOptions(dataset_name=name))
    assert back.task == "segment"
    pd.testing.assert_frame_equal(back.manifest, m)


def test_export_hostile_fake_segment_run(fo, tmp_path):
    """Hostile names and a segmentation run without pred_mask PNGs: per-image IoU only, a note, no crash."""
    from audit.integrations.fiftyone import export_run, field_name
    from audit.testing import make_fake_run

    run = make_fake_run(tmp_path / "run", task="segment", hostile=True, n=30)
    name = export_run(run, name="hostile-seg")
    ds = fo.load_dataset(name)
    assert len(ds) == 30
    assert ds.list_evaluations() == []
    assert any("nothing to evaluate" in n for n in ds.info["imgaudit"]["notes"])
    preds = run.read_table("predictions.parquet")
    assert preds["pred_mask"].isna().all()
    for fold in preds["fold"].unique():
        dom = fold.split("=", 1)[1]
        assert f"pred_small_cnn_{field_name(dom)}" not in ds.get_field_schema()  # no masks, no label field
        vals = [v for v in ds.values(f"pred_small_cnn_{field_name(dom)}_miou") if v is not None]
        assert len(vals) == int((preds["fold"] == fold).sum()) and all(0 <= v <= 1 for v in vals)


def test_export_cli(fo, tmp_path):
    from typer.testing import CliRunner

    from audit.cli import app
    from audit.testing import make_fake_run

    run = make_fake_run(tmp_path / "run", task="classify", n=30, profile_only=True)
    res = CliRunner().invoke(app, ["fiftyone", "export", str(run.path), "--name", "cli-export"])
    assert res.exit_code == 0, res.output
    assert "cli-export" in res.output and len(fo.load_dataset("cli-export")) == 30
    res = CliRunner().invoke(app, ["fiftyone", "export", str(tmp_path / "nope")])
    assert res.exit_code == 2


# ---------------------------------------------------------------------------------------------- import
def test_import_any_fiftyone_dataset_with_flags(fo, tmp_path):
    ds = fo.Dataset("foreign", overwrite=True)
    root = tmp_path / "imgs"
    samples = []
    for i in range(6):
        p = root / ("a" if i < 3 else "b") / f"{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(p)
        s = fo.Sample(filepath=str(p), tags=["train" if i % 2 else "test"], site=f"s{i % 2}",
                      color=None if i == 5 else "red",
                      ground_truth=fo.Classification(label="cat" if i < 4 else "dog"),
                      detections=fo.Detections(detections=[]))
        samples.append(s)
    ds.add_samples(samples, progress=False)
    res = read_dataset(None, options=ReadOptions(dataset_name="foreign"))
    m = res.manifest
    assert list(m["label"]) == ["cat"] * 4 + ["dog"] * 2
    assert list(m["split"]) == ["test", "train"] * 3  # from the tags
    assert list(m["filepath"]) == [f"{'a' if i < 3 else 'b'}/{i}.png" for i in range(6)]
    assert res.root == root.resolve()
    res = read_dataset(None, format="fiftyone", options=ReadOptions(
        dataset_name="foreign", roles=Roles(label="ground_truth", domain="site", attrs=["color"]), root=tmp_path))
    m = res.manifest
    assert list(m["domain"]) == ["s0", "s1"] * 3 and pd.isna(m["attr.color"].iloc[5])
    assert m["filepath"].iloc[0] == "imgs/a/0.png"
    with pytest.raises(UsageError, match="did you mean 'site'"):
        read_dataset(None, options=ReadOptions(dataset_name="foreign", roles=Roles(domain="sight")))
    with pytest.raises(UsageError, match="detections labels"):
        read_dataset(None, options=ReadOptions(dataset_name="foreign", roles=Roles(label="detections")))
    with pytest.raises(UsageError, match="no FiftyOne dataset 'foriegn'.*did you mean 'foreign'"):
        read_dataset(None, options=ReadOptions(dataset_name="foriegn"))


# ---------------------------------------------------------------------------------------------- missing extra
def test_missing_fiftyone_names_the_extra(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from audit.cli import app
    from audit.integrations.fiftyone import require_fiftyone
    from audit.testing import make_fake_run

    monkeypatch.setitem(sys.modules, "fiftyone", None)  # import fiftyone -> ImportError
    with pytest.raises(UsageError, match=r"pip install 'imgaudit\[fiftyone\]'"):
        require_fiftyone()
    run = make_fake_run(tmp_path / "run", n=30, profile_only=True)
    res = CliRunner().invoke(app, ["fiftyone", "export", str(run.path)])
    assert res.exit_code == 2 and "imgaudit[fiftyone]" in res.output and "Traceback" not in res.output
    with pytest.raises(UsageError, match="FiftyOne is not installed"):
        read_dataset(None, options=ReadOptions(dataset_name="x"))


def test_missing_database_names_the_extra(fo, monkeypatch):
    from audit.integrations.fiftyone import require_fiftyone

    def boom():
        raise RuntimeError("Could not find mongod")

    monkeypatch.setattr(fo, "list_datasets", boom)
    with pytest.raises(UsageError,
                       match=r"cannot reach FiftyOne's database \(Could not find mongod\).*imgaudit\[fiftyone\]"):
        require_fiftyone()
