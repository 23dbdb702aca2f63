"""Orchestration: ingest a dataset into a run directory and run the stages in order.

Each ``*_stage`` function looks up its stage's entry point lazily, so a build without a stage (or without
an optional extra) skips it with a clear note instead of failing. Stage entry points:

=========  ===========================================================================
stage      entry point
=========  ===========================================================================
profile    ``audit.profile.run_profile(run, config: ProfileConfig) -> list[Finding|dict]``
train      ``audit.train.run_training(run, config: TrainConfig) -> None``
metrics    ``audit.metrics.run_metrics(run, config: MetricsConfig) -> list[Finding|dict]``
report     ``audit.report.write_report(run) -> (Path, Path)``
=========  ===========================================================================
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from audit.console import print_summary
from audit.errors import AuditError, StageError, UsageError
from audit.ingest import ingest
from audit.rundir import RunDir

__all__ = [
    "ingest",
    "profile_stage",
    "train_stage",
    "metrics_stage",
    "slices_stage",
    "report_stage",
    "full_audit",
    "demo",
    "print_summary",
]


def _entry(module: str, attr: str):
    """Import ``module.attr``; ``None`` when the stage is not part of this build."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and (e.name == module or module.startswith(e.name + ".") or e.name.startswith(module)):
            return None
        raise
    return getattr(mod, attr, None)


def _skip(run: RunDir, stage: str, reason: str, required: bool) -> None:
    if required:
        raise UsageError(f"the {stage} stage is not available: {reason}")
    run.mark_stage(stage, "skipped", reason=reason)


def _config(cls, **kwargs):
    """Build a config dataclass from keyword arguments it knows (others are ignored, with None dropped)."""
    import dataclasses

    if dataclasses.is_dataclass(cls):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in kwargs.items() if k in names and v is not None})
    return cls(**{k: v for k, v in kwargs.items() if v is not None})


def _run_stage(run: RunDir, stage: str, fn, *args) -> Any:
    # Hold the run directory's lock for the stage (re-entrant within this process, refused across processes).
    with RunDir(run.path):
        with run.stage(stage):
            result = fn(*args)
    if isinstance(result, list):
        run.set_findings(stage, result)
    return result


def profile_stage(run: RunDir, *, required: bool = False, **kwargs) -> Any:
    fn = _entry("audit.profile", "run_profile")
    cfg_cls = _entry("audit.profile", "ProfileConfig")
    if fn is None or cfg_cls is None:
        return _skip(run, "profile", "audit.profile is not built yet", required)
    return _run_stage(run, "profile", fn, run, _config(cfg_cls, **kwargs))


def train_stage(run: RunDir, *, required: bool = False, **kwargs) -> Any:
    fn = _entry("audit.train", "run_training")
    cfg_cls = _entry("audit.train", "TrainConfig")
    if fn is None or cfg_cls is None:
        return _skip(run, "train", "audit.train is not built yet", required)
    ds = run.dataset
    if not required and ds.get("task") == "classify" and not ds.get("classes"):
        return _skip(run, "train", "no label column: give --label to train a classifier", required)
    if not required and ds.get("task") == "classify" and len(ds.get("classes") or []) < 2:
        return _skip(run, "train", "the label column holds a single class: nothing to learn", required)
    return _run_stage(run, "train", fn, run, _config(cfg_cls, **kwargs))


def metrics_stage(run: RunDir, *, required: bool = False, **kwargs) -> Any:
    fn = _entry("audit.metrics", "run_metrics")
    cfg_cls = _entry("audit.metrics", "MetricsConfig")
    if fn is None or cfg_cls is None:
        return _skip(run, "metrics", "audit.metrics is not built yet", required)
    if not required and not run.has("predictions.parquet"):
        return _skip(run, "metrics", "no predictions.parquet (train a model first)", required)
    return _run_stage(run, "metrics", fn, run, _config(cfg_cls, **kwargs))


def slices_stage(run: RunDir, *, required: bool = False, **kwargs) -> Any:
    """Slice discovery confirmed on held-out data (audit.slices); skipped without predictions or embeddings."""
    fn, cfg_cls = _entry("audit.slices", "run_slices"), _entry("audit.slices", "SliceConfig")
    if fn is None or cfg_cls is None:
        return _skip(run, "slices", "audit.slices is not built yet", required)
    has_vectors = kwargs.get("embeddings") or run.has("embeddings/predict")
    if not required and not (run.has("predictions.parquet") and has_vectors):
        return _skip(run, "slices", "no predictions with stored embeddings (train a model, or pass --embeddings)",
                     required)
    return _run_stage(run, "slices", fn, run, _config(cfg_cls, **kwargs))


def report_stage(run: RunDir, *, required: bool = False) -> Any:
    fn = _entry("audit.report", "write_report")
    if fn is None:
        return _skip(run, "report", "audit.report is not built yet", required)
    return _run_stage(run, "report", fn, run)


def full_audit(
    run: RunDir,
    *,
    task: str | None = None,
    model: str | None = None,
    protocol: str = "lodo",
    epochs: int | None = None,
    device: str = "auto",
    seeds: int = 1,
    min_n: int = 30,
    seed: int = 0,
    workers: int | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    batch_size: int | None = None,
    image_size: int | None = None,
    mode: str = "auto",
) -> RunDir:
    """Profile, train, metrics and report. A stage that fails is recorded and the next independent ones run."""
    failures = []
    stages = [
        ("profile", lambda: profile_stage(run, min_n=min_n, seed=seed, workers=workers, engine=engine, ray_address=ray_address)),
        (
            "train",
            lambda: train_stage(
                run, task=task, model=model, protocol=protocol, epochs=epochs, device=device, seeds=seeds, seed=seed,
                workers=workers, engine=engine, ray_address=ray_address, batch_size=batch_size, image_size=image_size,
                mode=mode,
            ),
        ),
        ("metrics", lambda: metrics_stage(run, min_n=min_n, seed=seed)),
        ("slices", lambda: slices_stage(run, seed=seed)),
        ("report", lambda: report_stage(run)),
    ]
    for name, fn in stages:
        try:
            fn()
        except AuditError as e:
            failures.append((name, str(e)))
            if name == "train":
                run.mark_stage("metrics", "skipped", reason="training failed")
                continue
        except Exception as e:  # recorded in run.json by RunDir.stage; keep going with the others
            failures.append((name, f"{type(e).__name__}: {e}"))
    if failures:
        msg = "; ".join(f"{n}: {m}" for n, m in failures)
        raise StageError(f"stages failed ({msg}); details in {run.path / 'run.json'}")
    return run


def demo(out: Path, *, task: str = "all", epochs: int | None = None, device: str = "auto", seed: int = 0, console=None) -> list[RunDir]:
    """Build the demo data under ``out/data`` and run the full audit into ``out/<task>``."""
    from audit import demo as demo_data
    from audit.manifest import Roles
    from audit.readers import ReadOptions

    out = Path(out)
    tasks = ["classify", "segment"] if task == "all" else [task]
    runs = []
    for t in tasks:
        if console is not None:
            console.print(f"[bold]demo[/] building the {t} dataset under {out / 'data' / t}")
        data = (demo_data.build_classify if t == "classify" else demo_data.build_segment)(out / "data" / t, seed=seed)
        r = data.roles
        opts = ReadOptions(
            roles=Roles(
                filepath=r.get("filepath"), label=r.get("label"), mask=r.get("mask"), split=r.get("split"),
                domain=r.get("domain"), group=r.get("group"), attrs=list(r.get("attrs", [])),
            ),
            root=data.root,
        )
        run = ingest(data.table, out=out / t, format="table", options=opts, seed=seed)
        if data.classes:
            ds = run.dataset
            ds["classes"] = data.classes
            run.update_info(dataset=ds)
        if console is not None:
            console.print(f"[bold]demo[/] running the full audit into {run.path}")
        ep = epochs if epochs is not None else (6 if t == "classify" else 6)
        full_audit(run, task=t, epochs=ep, device=device, seed=seed, min_n=30, image_size=32)
        runs.append(run)
        run.unlock()
    return runs
