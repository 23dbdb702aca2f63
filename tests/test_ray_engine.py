"""The Ray engine on a real local Ray cluster: same outputs as the local engine, worker failures retried or
reported, never rows silently dropped."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ingest_demo

ray = pytest.importorskip("ray")

from audit.errors import StageError  # noqa: E402
from audit.integrations import ray_engine  # noqa: E402


@pytest.fixture(scope="module")
def ray_cluster():
    """A real 2-CPU local Ray cluster for this module; shut down afterwards."""
    from ray import cloudpickle

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    if ray.is_initialized():  # pragma: no cover - another module left one running
        ray.shutdown()
    # the batch functions below live in this test module, which Ray workers cannot import by name
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray_engine.init_ray()
    ray.shutdown()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _no_addr(s: pd.Series) -> pd.Series:
    return s.str.replace(r" at 0x[0-9a-f]+", "", regex=True)  # PIL puts object addresses in some messages


# ---------------------------------------------------------------------------------------------- profile
def test_profile_ray_equals_local(ray_cluster, demo_classify, tmp_path):
    from audit.profile import ProfileConfig, run_profile

    out = {}
    for engine in ("local", "ray"):
        run = ingest_demo(demo_classify, tmp_path / engine)
        run_profile(run, ProfileConfig(engine=engine, workers=2, checks=["images", "duplicates"]))
        out[engine] = run
    a = out["local"].read_table("profile/images.parquet")
    b = out["ray"].read_table("profile/images.parquet")
    assert len(b) == len(out["ray"].manifest()) == 1603
    for df in (a, b):
        df["error_detail"] = _no_addr(df["error_detail"])
    exact = ["sample_id", "filepath", "readable", "error", "format", "width", "height", "channels", "bytes", "md5",
             "pixel_md5", "phash"]
    pd.testing.assert_frame_equal(a[exact], b[exact])  # counts and hashes: exact
    stats = ["brightness", "contrast", "saturation", "colorfulness", "sharpness", "entropy"]
    np.testing.assert_allclose(a[stats].to_numpy(float), b[stats].to_numpy(float), rtol=1e-9, equal_nan=True)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9)
    pd.testing.assert_frame_equal(out["local"].read_table("profile/duplicates.parquet"),
                                  out["ray"].read_table("profile/duplicates.parquet"))
    checks = out["ray"].info["stages"]["profile"]["checks"]["images"]
    assert checks["workers"] == "ray" and checks["ray"]["cpus"] == 2.0


def test_pixel_hashes_of_look_alikes_through_ray(ray_cluster, tmp_path):
    """The second Ray pipeline (map_chunks): pixel hashes of files that may be pixel-identical to another file."""
    from PIL import Image

    from audit.profile.scan import fill_pixel_md5, scan_items

    arr = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png", compress_level=1)
    Image.fromarray(arr).save(tmp_path / "b.png", compress_level=9)  # other bytes, the same pixels
    Image.fromarray(255 - arr).save(tmp_path / "c.png")
    items = [(str(tmp_path / n), None, None, None) for n in ("a.png", "b.png", "c.png")]
    df = pd.DataFrame(scan_items(items, max_pixels=10**8, workers=1, progress=False))
    assert fill_pixel_md5(df, items, max_pixels=10**8, workers=2, engine="ray") == 2
    assert df.loc[0, "pixel_md5"] == df.loc[1, "pixel_md5"] and pd.isna(df.loc[2, "pixel_md5"])


def test_scan_rows_come_back_in_manifest_order(ray_cluster, demo_classify):
    from audit.profile.scan import scan_items

    files = sorted(Path(demo_classify.root).rglob("*.png"))[:150]
    items = [(str(p), None, None, None) for p in files[::-1]] + [(None, "missing_file", None, None)]
    recs = scan_items(items, max_pixels=10**8, chunk_size=16, engine="ray", progress=False)
    local = scan_items(items, max_pixels=10**8, chunk_size=16, engine="local", workers=1, progress=False)
    assert [r["md5"] for r in recs] == [r["md5"] for r in local]
    assert recs[-1]["error"] == "missing_file" and not recs[-1]["readable"]


def test_cli_profile_engine_ray(ray_cluster, demo_classify, tmp_path):
    from typer.testing import CliRunner

    from audit.cli import app
    from audit.rundir import RunDir

    r = CliRunner().invoke(app, ["--quiet", "profile", str(demo_classify.table), "--root", str(demo_classify.root),
                                 "--label", "digit", "--domain", "site", "--out", str(tmp_path / "run"),
                                 "--engine", "ray", "--workers", "2"])
    assert r.exit_code == 0, r.output
    info = RunDir.open(tmp_path / "run").info
    assert info["config"]["profile"]["engine"] == "ray"
    assert info["stages"]["profile"]["checks"]["images"]["status"] == "ok"


# ---------------------------------------------------------------------------------------------- inference
def test_inference_ray_equals_local(ray_cluster, demo_classify):
    from audit.io.tensor_cache import build_cache
    from audit.train.models import build_model
    from audit.train.ray_infer import predict_paths
    from audit.train.trainer import BatchSource, FitConfig, predict

    files = sorted(str(p) for p in Path(demo_classify.root).rglob("*.jpg"))[:200]
    cache = build_cache([Path(p) for p in files], size=32, key="t", exif=True)
    ok = np.flatnonzero(cache.ok)
    assert len(ok) > 150
    torch.manual_seed(0)
    model, _ = build_model("small_cnn", 10, task="classify")
    cfg = FitConfig(task="classify", n_classes=10, epochs=1, batch_size=16, lr=1e-3)
    src = BatchSource(cache.images, torch.zeros(len(files), dtype=torch.long), torch.device("cpu"))
    local = predict(model, src, ok, cfg).numpy()
    remote = predict_paths(model, [files[i] for i in ok], task="classify", size=32, exif=True, batch_size=32,
                           concurrency=2).numpy()
    assert remote.shape == local.shape == (len(ok), 10)
    np.testing.assert_allclose(remote, local, atol=1e-5)
    assert (remote.argmax(1) == local.argmax(1)).all()


def test_inference_segmentation_masks_equal_local(ray_cluster, demo_segment):
    from audit.io.tensor_cache import build_cache
    from audit.train.models import build_model
    from audit.train.ray_infer import predict_paths
    from audit.train.trainer import BatchSource, FitConfig, predict

    files = sorted(str(p) for p in (Path(demo_segment.root) / "images").rglob("*.png"))[:48]
    assert files
    cache = build_cache([Path(p) for p in files], size=32, key="s", exif=False)
    torch.manual_seed(0)
    model, _ = build_model("small_unet", 3, task="segment")
    cfg = FitConfig(task="segment", n_classes=3, epochs=1, batch_size=8, lr=1e-3)
    src = BatchSource(cache.images, torch.zeros((len(files), 32, 32), dtype=torch.uint8), torch.device("cpu"))
    idx = np.arange(len(files))
    local = predict(model, src, idx, cfg)
    remote = predict_paths(model, files, task="segment", size=32, exif=False, batch_size=16, concurrency=1)
    assert remote.dtype == torch.uint8 and remote.shape == local.shape
    assert (remote == local).float().mean() > 0.999  # argmax ties may break differently at float precision


# ---------------------------------------------------------------------------------------------- failures
class _CrashOncePredictor:
    """An actor that kills its own process on its first batch (marker file absent), then works."""

    def __init__(self, marker: str):
        self.marker = marker

    def __call__(self, batch: pd.DataFrame) -> list:
        if not os.path.exists(self.marker):
            Path(self.marker).write_text("crashed once")
            os._exit(1)  # a hard kill: no exception, no cleanup, like the OOM killer
        return [int(v) * 2 for v in batch["v"]]


def _crash_once_fn(batch: pd.DataFrame, marker: str) -> list:
    if not os.path.exists(marker) and 40 <= int(batch["v"].iloc[0]) < 80:
        Path(marker).write_text("crashed once")
        os._exit(1)
    return [int(v) + 1 for v in batch["v"]]


def _always_crash(batch: pd.DataFrame) -> list:
    os._exit(1)


def _raises(batch: pd.DataFrame) -> list:
    raise ValueError("a bug in the batch function")


def test_killed_actor_is_restarted_and_no_row_is_lost(ray_cluster, tmp_path):
    marker = tmp_path / "actor-crashed"
    frame = pd.DataFrame({"v": np.arange(300)})
    out = ray_engine.run_ordered(frame, _CrashOncePredictor, what="test", batch_size=25, concurrency=2,
                                 fn_constructor_kwargs={"marker": str(marker)})
    assert marker.exists()  # an actor really died mid-run
    assert out == [2 * v for v in range(300)]


def test_killed_task_is_retried_and_no_row_is_lost(ray_cluster, tmp_path):
    marker = tmp_path / "task-crashed"
    frame = pd.DataFrame({"v": np.arange(200)})
    out = ray_engine.run_ordered(frame, _crash_once_fn, what="test", batch_size=20,
                                 fn_kwargs={"marker": str(marker)})
    assert marker.exists()
    assert out == [v + 1 for v in range(200)]


def test_worker_that_keeps_dying_is_reported_not_dropped(ray_cluster):
    frame = pd.DataFrame({"v": np.arange(10)})
    with pytest.raises(StageError,
                       match=r"ray engine: test failed after retries \(WorkerCrashedError: The worker died"):
        ray_engine.run_ordered(frame, _always_crash, what="test", batch_size=5, max_retries=1)


def test_exception_in_batch_code_is_one_clear_error(ray_cluster):
    frame = pd.DataFrame({"v": np.arange(10)})
    with pytest.raises(StageError) as e:
        ray_engine.run_ordered(frame, _raises, what="image scan", batch_size=5)
    msg = str(e.value)
    assert "image scan failed" in msg and "a bug in the batch function" in msg and "\n" not in msg


def test_blocks_align_with_local_chunks():
    frame = pd.DataFrame({"v": np.arange(1000)})
    blocks = ray_engine.block_frames(frame, batch_size=64, parallelism=2)
    assert sum(len(b) for b in blocks) == 1000
    assert all(len(b) % 64 == 0 for b in blocks[:-1])
    assert pd.concat(blocks)["v"].tolist() == list(range(1000))


def test_missing_ray_is_a_usage_error(monkeypatch):
    import builtins

    from audit.errors import UsageError

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(UsageError, match=re.escape("pip install 'imgaudit[ray]'")):
        ray_engine.init_ray()


# --------------------------------------------------------------------------------------------- audit train --engine ray
def test_train_engine_ray_predictions_equal_local(ray_cluster, demo_classify, tmp_path):
    from typer.testing import CliRunner

    from audit.cli import app
    from audit.train import TrainConfig, run_training

    runs = {}
    for engine in ("local", "ray"):
        run = ingest_demo(demo_classify, tmp_path / engine)
        man = run.manifest()
        run.write_manifest(man.groupby("domain", group_keys=False).head(120).reset_index(drop=True))
        runs[engine] = run
    run_training(runs["local"], TrainConfig(model="small_cnn", protocol="split", epochs=1, image_size=32, device="cpu"))
    r = CliRunner().invoke(app, ["--quiet", "train", str(runs["ray"].path), "--engine", "ray", "--model", "small_cnn",
                                 "--protocol", "split", "--epochs", "1", "--image-size", "32", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    a = runs["local"].read_table("predictions.parquet")
    b = runs["ray"].read_table("predictions.parquet")
    assert list(a.columns) == list(b.columns) and (a.dtypes == b.dtypes).all()
    probs = [c for c in a.columns if c.startswith("p_")] + ["confidence"]
    rest = [c for c in a.columns if c not in probs]
    pd.testing.assert_frame_equal(a[rest], b[rest])  # same rows, same order, same predicted classes
    np.testing.assert_allclose(a[probs].to_numpy(), b[probs].to_numpy(), atol=1e-5)
    ex = runs["ray"].info["stages"]["train"]["executor"]
    assert ex["engine"] == "ray" and ex["cluster"]["cpus"] == 2.0


def test_lodo_folds_train_in_parallel_on_ray_and_equal_local(ray_cluster, demo_classify, tmp_path):
    """--engine ray: the 3 leave-one-domain-out folds run as parallel Ray tasks; the predictions, fold records and
    row order are those of a local run (CPU training is deterministic), and re-running reuses every fold."""
    from audit.train import TrainConfig, run_training

    runs = {}
    for engine in ("local", "ray"):
        run = ingest_demo(demo_classify, tmp_path / engine)
        man = run.manifest()
        run.write_manifest(man.groupby("domain", group_keys=False).head(80).reset_index(drop=True))
        runs[engine] = run
        run_training(run, TrainConfig(model="small_cnn", protocol="lodo", epochs=2, image_size=32, device="cpu",
                                      engine=engine))
    a = runs["local"].read_table("predictions.parquet")
    b = runs["ray"].read_table("predictions.parquet")
    assert set(a["fold"]) == {"holdout=phone", "holdout=scanner", "holdout=studio"}
    probs = [c for c in a.columns if c.startswith("p_")] + ["confidence"]
    rest = [c for c in a.columns if c not in probs]
    pd.testing.assert_frame_equal(a[rest], b[rest])
    np.testing.assert_allclose(a[probs].to_numpy(), b[probs].to_numpy(), atol=1e-5)
    st = {k: runs[k].info["stages"]["train"] for k in runs}
    assert st["ray"]["executor"]["training"] == "ray tasks, one per fold"
    for fa, fb in zip(st["local"]["folds"], st["ray"]["folds"], strict=True):
        assert (fa["fold"], fa["status"], fa["best_epoch"]) == (fb["fold"], fb["status"], fb["best_epoch"])
        assert fa["val_score"] == pytest.approx(fb["val_score"], abs=1e-6)
    done = []
    run_training(runs["ray"], TrainConfig(model="small_cnn", protocol="lodo", epochs=2, image_size=32, device="cpu",
                                          engine="ray"), on_fold_done=lambda k, s: done.append(s))
    assert done == ["reused"] * 3


def test_a_failing_fold_task_is_one_clear_error(ray_cluster):
    from audit.errors import StageError
    from audit.train.ray_folds import RayFolds
    from audit.train.trainer import FitConfig

    ex = RayFolds()
    spec = {"key": "bad-fold", "seed": 0, "train": np.arange(4), "val": np.arange(0), "eval": np.arange(4),
            "ckpt": None, "hash": "x"}
    images = torch.zeros((4, 3, 16, 16), dtype=torch.uint8)
    targets = torch.zeros(4, dtype=torch.long)
    build = {"name": "no_such_model", "n_classes": 2, "task": "classify", "weights": None, "pretrained": False}
    cfg = FitConfig(task="classify", n_classes=2, epochs=1, batch_size=2, lr=1e-3)
    with pytest.raises(StageError, match="fold bad-fold failed on the Ray cluster: UsageError"):
        list(ex.run_folds([spec], images=images, targets=targets, build=build, fit_cfg=cfg))


def test_unreachable_cluster_address_fails_fast_with_a_usage_error():
    import socket
    import time

    from audit.errors import UsageError

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    t0 = time.perf_counter()
    with pytest.raises(UsageError, match=r"cannot reach the Ray cluster at '127.0.0.1:\d+'"):
        ray_engine.check_reachable(f"127.0.0.1:{port}", timeout=2)
    with pytest.raises(UsageError, match="ray://"):
        ray_engine.check_reachable(f"ray://127.0.0.1:{port}", timeout=2)
    assert time.perf_counter() - t0 < 10
    ray_engine.check_reachable("auto")  # resolved by Ray itself


def test_cli_unreachable_cluster_is_exit_2(demo_classify, tmp_path):
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{port}"}
    p = subprocess.run([sys.executable, "-m", "audit", "profile", str(demo_classify.table), "--root",
                        str(demo_classify.root), "--label", "digit", "--out", str(tmp_path / "run"), "--engine", "ray"],
                       capture_output=True, text=True, env=env, timeout=120, check=False)
    assert p.returncode == 2, p.stderr
    assert "cannot reach the Ray cluster" in p.stderr and "Traceback" not in p.stderr
