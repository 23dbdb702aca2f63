"""The training stage end to end on the demo data, plus its parts: cache, augmentation, resume, validation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ingest_demo
from PIL import Image

from audit.errors import InputError, UsageError
from audit.train import TrainConfig, run_training
from audit.train.predictions import COMMON_COLUMNS, segment_counts, validate_predictions


@pytest.fixture(scope="module")
def classify_trained(demo_classify, tmp_path_factory):
    run = ingest_demo(demo_classify, tmp_path_factory.mktemp("train") / "classify")
    run_training(run, TrainConfig(epochs=6, image_size=32))
    return run


@pytest.fixture(scope="module")
def segment_trained(demo_segment, tmp_path_factory):
    run = ingest_demo(demo_segment, tmp_path_factory.mktemp("train") / "segment")
    run_training(run, TrainConfig(epochs=6, image_size=32))
    return run


def _small_run(data, path, n=240):
    """The demo ingested, then cut to ``n`` rows per domain spread (fast runs for behaviour tests)."""
    run = ingest_demo(data, path)
    man = run.manifest()
    keep = man.groupby("domain", group_keys=False).head(n // 3) if "domain" in man else man.head(n)
    run.write_manifest(pd.concat([keep, man.tail(4)]).drop_duplicates("sample_id").reset_index(drop=True))
    return run


def _acc(df: pd.DataFrame) -> float:
    return float((df["y_true"] == df["y_pred"]).mean())


# ---------------------------------------------------------------------------------------------- classification
def test_classify_predictions_follow_the_format(classify_trained):
    run = classify_trained
    p = pd.read_parquet(run.path / "predictions.parquet")
    classes = run.classes()
    assert list(p.columns) == COMMON_COLUMNS + ["y_true", "y_pred", "confidence"] + [f"p_{c}" for c in classes]
    assert set(p["role"]) == {"val", "test"} and set(p["protocol"]) == {"lodo"} and set(p["model"]) == {"small_cnn"}
    probs = p[[f"p_{c}" for c in classes]].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert np.array_equal(np.asarray(classes, dtype=object)[probs.argmax(1)], p["y_pred"].to_numpy(dtype=object))
    assert np.allclose(p["confidence"], probs.max(1))
    man = run.manifest().set_index("sample_id")
    assert (p["y_true"].to_numpy() == man.loc[p["sample_id"], "label"].to_numpy()).all()
    assert (p["test_domain"].to_numpy() == man.loc[p["sample_id"], "domain"].to_numpy()).all()
    for fold, g in p.groupby("fold"):
        held = fold.split("=", 1)[1]
        assert (g["held_out"] == (g["test_domain"] == held)).all()
        assert not g.loc[g["role"] == "val", "held_out"].any()
        assert held not in g["train_domains"].iloc[0].split("|")
        assert not g.duplicated(["sample_id", "role"]).any()


def test_unusable_rows_are_recorded_not_dropped_silently(classify_trained):
    run = classify_trained
    info = run.info
    st = info["stages"]["train"]
    assert st["n_excluded"] == 4 and st["n_used"] + st["n_excluded"] == st["n_rows"] == len(run.manifest())
    assert st["excluded"] == {"decode_error": 3, "missing_file": 1}
    ex = pd.read_parquet(run.path / "train" / "excluded.parquet")
    assert set(ex["sample_id"]) == {
        "images/studio/3/broken_truncated.jpg", "images/studio/4/broken_empty.jpg",
        "images/phone/1/broken_text.jpg", "images/phone/2/missing_file.jpg",
    }
    p = pd.read_parquet(run.path / "predictions.parquet")
    assert not set(ex["sample_id"]) & set(p["sample_id"])
    assert info["device"]["type"] in ("cpu", "cuda", "mps") and info["config"]["train"]["model"] == "small_cnn"
    assert info["config"]["train"]["image_size"] == 32


def test_scanner_domain_shows_a_generalization_gap(classify_trained):
    p = pd.read_parquet(classify_trained.path / "predictions.parquet")
    t = p[(p["fold"] == "holdout=scanner") & (p["role"] == "test")]
    in_dom, out_dom = _acc(t[~t["held_out"]]), _acc(t[t["held_out"]])
    assert in_dom > 0.7, in_dom  # the model learned the digits...
    assert in_dom - out_dom > 0.15, (in_dom, out_dom)  # ...and breaks on the shifted scanner domain


def test_rerun_reuses_finished_folds(classify_trained):
    run = classify_trained
    before = pd.read_parquet(run.path / "predictions.parquet")
    seen = []
    run_training(run, TrainConfig(epochs=6, image_size=32), on_fold_done=lambda k, s: seen.append(s))
    assert seen == ["reused"] * 3
    pd.testing.assert_frame_equal(before, pd.read_parquet(run.path / "predictions.parquet"))


# ---------------------------------------------------------------------------------------------- segmentation
def test_segment_predictions_counts_and_masks(segment_trained):
    run = segment_trained
    p = pd.read_parquet(run.path / "predictions.parquet")
    k = len(run.classes())
    for c in range(k):
        assert (p[f"union_{c}"] == p[f"pred_{c}"] + p[f"true_{c}"] - p[f"inter_{c}"]).all()
        assert (p[f"inter_{c}"] <= p[[f"pred_{c}", f"true_{c}"]].min(axis=1)).all()
    total = sum(p[f"true_{c}"] for c in range(k))
    assert (total <= 32 * 32).all() and (total > 0).all()
    assert p["pixel_acc"].between(0, 1).all()
    test = p[p["role"] == "test"]
    assert test["pred_mask"].notna().all() and p.loc[p["role"] == "val", "pred_mask"].isna().all()
    m = np.asarray(Image.open(run.path / test["pred_mask"].iloc[0]))
    assert m.shape == (32, 32) and m.max() < k
    st = run.info["stages"]["train"]
    assert any("resized with NEAREST" in n for n in st["notes"])  # the demo's one wrong-size mask


def test_fog_domain_shows_a_generalization_gap(segment_trained):
    p = pd.read_parquet(segment_trained.path / "predictions.parquet")
    t = p[(p["fold"] == "holdout=fog") & (p["role"] == "test")]
    k = len(segment_trained.classes())

    def miou(g):
        return np.mean([g[f"inter_{c}"].sum() / g[f"union_{c}"].sum() for c in range(k)])

    in_dom, out_dom = miou(t[~t["held_out"]]), miou(t[t["held_out"]])
    assert in_dom > 0.6, in_dom
    assert in_dom - out_dom > 0.1, (in_dom, out_dom)


def test_segment_counts_match_a_confusion_matrix():
    from sklearn.metrics import confusion_matrix

    rng = np.random.default_rng(0)
    pred = torch.from_numpy(rng.integers(0, 4, (5, 9, 7)).astype(np.uint8))
    tgt = torch.from_numpy(rng.integers(0, 4, (5, 9, 7)).astype(np.uint8))
    tgt[0, :3] = 255
    tgt[4] = 255  # an image with no valid pixel
    c = segment_counts(pred, tgt, 4)
    for b in range(5):
        v = tgt[b].numpy() != 255
        if not v.any():
            assert c["valid"][b] == 0 and c["true"][b].sum() == c["pred"][b].sum() == 0
            continue
        cm = confusion_matrix(tgt[b].numpy()[v], pred[b].numpy()[v], labels=range(4))
        assert np.array_equal(c["inter"][b], np.diag(cm))
        assert np.array_equal(c["true"][b], cm.sum(1)) and np.array_equal(c["pred"][b], cm.sum(0))
        assert c["valid"][b] == v.sum() and c["correct"][b] == np.trace(cm)


# ---------------------------------------------------------------------------------------------- resume, determinism
def test_killed_run_resumes_without_retraining_finished_folds(demo_classify, tmp_path):
    run = _small_run(demo_classify, tmp_path / "run")
    cfg = TrainConfig(epochs=1, image_size=16)

    def die(key, status):
        raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        run_training(run, cfg, on_fold_done=die)
    first = sorted((run.path / "train" / "folds").glob("*.parquet"))
    assert len(first) == 1 and not run.has("predictions.parquet")
    stored = pd.read_parquet(first[0])
    seen = []
    run_training(run, cfg, on_fold_done=lambda k, s: seen.append(s))
    assert seen == ["reused", "trained", "trained"]
    p = pd.read_parquet(run.path / "predictions.parquet")
    pd.testing.assert_frame_equal(p[p["fold"] == stored["fold"].iloc[0]].reset_index(drop=True), stored)
    assert len(list((run.path / "train" / "ckpt").glob("*.pt"))) == 3
    # a changed setting invalidates the stored folds
    seen.clear()
    run_training(run, TrainConfig(epochs=1, image_size=16, lr=0.01), on_fold_done=lambda k, s: seen.append(s))
    assert seen == ["trained"] * 3


def _synthetic(n=64, k=3, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    imgs = (torch.rand(n, 3, size, size, generator=g) * 60).to(torch.uint8)
    imgs[:, 0] += (y * 60).to(torch.uint8).view(-1, 1, 1)  # learnable
    return imgs, y


def test_fit_resumes_a_killed_fold_from_its_last_epoch_identically(tmp_path):
    from audit.train.models import build_model
    from audit.train.trainer import BatchSource, FitConfig, fit

    imgs, y = _synthetic()
    src = BatchSource(imgs, y, torch.device("cpu"))
    cfg = FitConfig(task="classify", n_classes=3, epochs=4, batch_size=16, lr=3e-3)
    tr, va = np.arange(48), np.arange(48, 64)

    torch.manual_seed(0)
    m1, _ = build_model("small_cnn", 3)
    full = fit(m1, src, tr, va, cfg, seed=5)

    def boom(epoch, rec):
        if epoch == 1:
            raise RuntimeError("killed")

    torch.manual_seed(0)
    m2, _ = build_model("small_cnn", 3)
    with pytest.raises(RuntimeError):
        fit(m2, src, tr, va, cfg, seed=5, ckpt_path=tmp_path / "f.pt", ckpt_hash="h", on_epoch=boom)
    torch.manual_seed(0)
    m3, _ = build_model("small_cnn", 3)
    res = fit(m3, src, tr, va, cfg, seed=5, ckpt_path=tmp_path / "f.pt", ckpt_hash="h")
    assert res.resumed_from == 2 and res.epochs_run == 4
    assert [h["train_loss"] for h in res.history] == [h["train_loss"] for h in full.history]
    for k, v in full.best_state.items():
        assert torch.equal(v, res.best_state[k]), k
    # another hash (other settings) starts from scratch
    torch.manual_seed(0)
    m4, _ = build_model("small_cnn", 3)
    assert fit(m4, src, tr, va, cfg, seed=5, ckpt_path=tmp_path / "f.pt", ckpt_hash="other").resumed_from is None


def test_same_seed_same_predictions_on_cpu(demo_classify, tmp_path):
    cfg = dict(epochs=2, image_size=16, protocol="split", device="cpu")
    frames = []
    for name in ("a", "b"):
        run = _small_run(demo_classify, tmp_path / name)
        run_training(run, TrainConfig(**cfg))
        frames.append(pd.read_parquet(run.path / "predictions.parquet"))
    pd.testing.assert_frame_equal(frames[0], frames[1])
    run = _small_run(demo_classify, tmp_path / "c")
    run_training(run, TrainConfig(**cfg, seed=1))
    other = pd.read_parquet(run.path / "predictions.parquet")
    assert not np.allclose(frames[0]["confidence"].to_numpy()[:50], other["confidence"].to_numpy()[:50])


def test_seeds_and_balanced_and_split_fallback(demo_segment, tmp_path):
    run = _small_run(demo_segment, tmp_path / "run")
    run_training(run, TrainConfig(epochs=1, image_size=16, protocol="transfer", seeds=2, balanced=True, patience=1))
    p = pd.read_parquet(run.path / "predictions.parquet")
    assert set(p["seed"]) == {0, 1} and set(p["fold"]) == {"train=day", "train=dusk", "train=fog"}
    t = p[p["role"] == "test"]
    assert (t["held_out"] == (t["test_domain"] != t["fold"].str.split("=").str[1])).all()


# ---------------------------------------------------------------------------------------------- stage + CLI
def test_pipeline_stage_keeps_details_and_bad_settings_are_usage_errors(demo_classify, tmp_path):
    from audit import pipeline

    run = _small_run(demo_classify, tmp_path / "run")
    pipeline.train_stage(run, required=True, epochs=1, image_size=16, protocol="split", model=None, weights=None)
    st = run.info["stages"]["train"]
    assert st["status"] == "ok" and st["folds"][0]["status"] == "trained"
    assert st["excluded"]["decode_error"] == 3 and st["excluded"]["missing_file"] == 1
    assert st["n_used"] + st["n_excluded"] == st["n_rows"]
    for kw, msg in ((dict(epochs=0), "--epochs"), (dict(device="tpu"), "unknown --device"),
                    (dict(model="small_unet"), "segment model"), (dict(model="resnet_18"), "did you mean"),
                    (dict(protocol="kfold"), "unknown --protocol"), (dict(task="detect"), "unknown --task")):
        with pytest.raises(UsageError, match=msg):
            run_training(run, TrainConfig(**{"epochs": 1, "image_size": 16, **kw}))
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA"):
            run_training(run, TrainConfig(epochs=1, device="cuda"))


def test_cli_train_exit_codes(demo_classify, tmp_path):
    from typer.testing import CliRunner

    from audit.cli import app

    run = _small_run(demo_classify, tmp_path / "run")
    r = CliRunner().invoke(app, ["train", str(run.path), "--model", "resnet_18", "--epochs", "1"])
    assert r.exit_code == 2 and "did you mean" in r.output, (r.output, r.exception)
    r = CliRunner().invoke(app, ["train", str(run.path), "--epochs", "1", "--image-size", "16", "--protocol", "split"])
    assert r.exit_code == 0, r.output
    assert json.loads((run.path / "run.json").read_text())["stages"]["train"]["status"] == "ok"
    r = CliRunner().invoke(app, ["models"])
    assert "small_cnn" in r.output and "deeplabv3_resnet50" in r.output


# ---------------------------------------------------------------------------------------------- bring your own model
def test_validate_predictions_fills_and_rejects():
    man = pd.DataFrame({"sample_id": pd.array(["a", "b", "c"], dtype="string"),
                        "label": pd.array(["0", "1", "1"], dtype="string"),
                        "domain": pd.array(["x", "y", "x"], dtype="string")})
    ok = validate_predictions(pd.DataFrame({"sample_id": ["a", "b"], "y_pred": [0, 1], "p_0": [0.8, 0.3],
                                            "p_1": [0.2, 0.7]}), man, ["0", "1"])
    assert ok["y_true"].tolist() == ["0", "1"] and ok["y_pred"].tolist() == ["0", "1"]
    assert ok["model"].tolist() == ["external"] * 2 and ok["role"].tolist() == ["test"] * 2
    assert ok["test_domain"].tolist() == ["x", "y"] and np.allclose(ok["confidence"], [0.8, 0.7])
    with pytest.raises(InputError,
                       match=r"4 sample ids in the predictions are not in the manifest: 'q', 'r', 's' \.\.\."):
        validate_predictions(pd.DataFrame({"sample_id": ["q", "r", "s", "t", "a"], "y_pred": ["0"] * 5}), man,
                             ["0", "1"])
    with pytest.raises(InputError, match="not among the classes"):
        validate_predictions(pd.DataFrame({"sample_id": ["a"], "y_pred": ["7"]}), man, ["0", "1"])
    with pytest.raises(InputError, match="probabilities in"):
        validate_predictions(pd.DataFrame({"sample_id": ["a"], "y_pred": ["0"], "p_0": [1.5]}), man, ["0", "1"])
    with pytest.raises(InputError, match="unknown classes"):
        validate_predictions(pd.DataFrame({"sample_id": ["a"], "y_pred": ["0"], "p_9": [0.5]}), man, ["0", "1"])
    with pytest.raises(InputError, match="repeat"):
        validate_predictions(pd.DataFrame({"sample_id": ["a", "a"], "y_pred": ["0", "1"]}), man, ["0", "1"])
    with pytest.raises(InputError, match="y_pred"):
        validate_predictions(pd.DataFrame({"sample_id": ["a"]}), man, ["0", "1"])
    seg = validate_predictions(pd.DataFrame({"sample_id": ["a"], "inter_0": [3], "union_0": [5]}), man, [])
    assert seg["inter_0"].dtype == np.int64
    with pytest.raises(InputError, match="non-negative"):
        validate_predictions(pd.DataFrame({"sample_id": ["a"], "inter_0": [-1]}), man, [])


def test_own_predictions_pass_validation(classify_trained):
    p = pd.read_parquet(classify_trained.path / "predictions.parquet")
    out = validate_predictions(p, classify_trained.manifest(), classify_trained.classes())
    assert len(out) == len(p)
    assert (out[p.columns].astype(str).to_numpy() == p.astype(str).to_numpy()).all()


def test_second_protocol_adds_to_predictions_and_retraining_replaces_its_own(demo_classify, tmp_path):
    run = _small_run(demo_classify, tmp_path / "r")
    run_training(run, TrainConfig(epochs=1, image_size=16, protocol="split", device="cpu"))
    n_split = len(pd.read_parquet(run.path / "predictions.parquet"))
    run_training(run, TrainConfig(epochs=1, image_size=16, protocol="lodo", device="cpu"))
    p = pd.read_parquet(run.path / "predictions.parquet")
    assert set(p["protocol"]) == {"split", "lodo"} and (p["protocol"] == "split").sum() == n_split
    run_training(run, TrainConfig(epochs=1, image_size=16, protocol="lodo", device="cpu"))
    again = pd.read_parquet(run.path / "predictions.parquet")
    assert len(again) == len(p)  # the lodo rows were replaced, not appended twice
