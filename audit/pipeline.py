"""Orchestration: ingest a dataset into a run directory and run the stages in order.

The stages are an explicit table, :data:`STAGES`: each names its entry point and its typed, frozen config
dataclass. ``*_stage(run, **options)`` builds the config with :func:`audit.core.config.build_config`: an option the
config does not know is a ``TypeError`` naming it (and the closest known name), never silently dropped; ``None``
means "the config's default". Entry points are imported when the stage runs, so ``import audit.pipeline`` stays
light; a stage whose optional extra is missing (torch for train) is skipped with the install hint, or refused when
the user asked for it.

=========  ===========================================================================
stage      entry point
=========  ===========================================================================
profile    ``audit.profile.run_profile(run, config: ProfileConfig) -> list[Finding|dict]``
train      ``audit.train.run_training(run, config: TrainConfig) -> None``
metrics    ``audit.metrics.run_metrics(run, config: MetricsConfig) -> list[Finding|dict]``
slices     ``audit.slices.run_slices(run, config: SliceConfig) -> list[Finding]``
report     ``audit.report.write_report(run) -> (Path, Path)``
=========  ===========================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.console import print_summary
from audit.core.config import build_config
from audit.errors import AuditError, StageError, UsageError
from audit.ingest import ingest
from audit.rundir import RunDir

__all__ = [
    "STAGES",
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


def _profile():
    from audit.profile import ProfileConfig, run_profile

    return run_profile, ProfileConfig


def _train():
    from audit.train import TrainConfig, run_training

    return run_training, TrainConfig


def _metrics():
    from audit.metrics import MetricsConfig, run_metrics

    return run_metrics, MetricsConfig


def _slices():
    from audit.slices import SliceConfig, run_slices

    return run_slices, SliceConfig


def _report():
    from audit.report import write_report

    return write_report, None


@dataclass(frozen=True)
class Stage:
    """One stage of the audit: its name and a loader of ``(entry point, config class or None)``."""

    name: str
    load: Callable[[], tuple[Callable, type | None]]


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("profile", _profile), Stage("train", _train), Stage("metrics", _metrics), Stage("slices", _slices),
    Stage("report", _report),
)}


def _load(run: RunDir, name: str, required: bool) -> tuple[Callable, type | None] | None:
    """The stage's entry point and config class; ``None`` (stage marked skipped) when an optional extra is missing."""
    try:
        return STAGES[name].load()
    except ModuleNotFoundError as e:  # an optional dependency of the stage (torch, sklearn...), not our code
        if e.name and e.name.split(".")[0] == "audit":
            raise
        _skip(run, name, f"{e.name} is not installed (pip install 'imgaudit[all]')", required)
        return None


def _config(cls, **kwargs):
    """The stage's config from keyword options; ``None`` values mean the default; unknown names raise TypeError."""
    return build_config(cls, cls.__name__, **{k: v for k, v in kwargs.items() if v is not None})


def _skip(run: RunDir, stage: str, reason: str, required: bool) -> None:
    if required:
        raise UsageError(f"the {stage} stage is not available: {reason}")
    run.mark_stage(stage, "skipped", reason=reason)


def _run_stage(run: RunDir, stage: str, fn, *args) -> Any:
    # Hold the run directory's lock for the stage (re-entrant within this process, refused across processes).
    with RunDir(run.path):
        with run.stage(stage):
            result = fn(*args)
    if isinstance(result, list):
        run.set_findings(stage, result)
    return result


def profile_stage(run: RunDir, *, required: bool = False, **kwargs) -> Any:
    fn, cfg_cls = _load(run, "profile", required) or (None, None)
    if fn is None:
        return None
    return _run_stage(run, "profile", fn, run, _config(cfg_cls, **kwargs))


def train_stage(run: RunDir, *, required: bool = False, **kwargs) -> Any:
    fn, cfg_cls = _load(run, "train", required) or (None, None)
    if fn is None:
        return None
    ds = run.dataset
    if not required and ds.get("task") == "classify" and not ds.get("classes"):
        return _skip(run, "train", "no label column: give --label to train a classifier", required)
    if not required and ds.get("task") == "classify" and len(ds.get("classes") or []) < 2:
        return _skip(run, "train", "the label column holds a single class: nothing to learn", required)
    return _run_stage(run, "train", fn, run, _config(cfg_cls, **kwargs))


def metrics_stage(run: RunDir, *, required: bool = False, **kwargs) -> Any:
    fn, cfg_cls = _load(run, "metrics", required) or (None, None)
    if fn is None:
        return None
    if not required and not run.has("predictions.parquet"):
        return _skip(run, "metrics", "no predictions.parquet (train a model first)", required)
    return _run_stage(run, "metrics", fn, run, _config(cfg_cls, **kwargs))


def slices_stage(run: RunDir, *, required: bool = False, **kwargs) -> Any:
    """Slice discovery confirmed on held-out data (audit.slices); skipped without predictions or embeddings."""
    fn, cfg_cls = _load(run, "slices", required) or (None, None)
    if fn is None:
        return None
    from audit.slices.embed import has_run_embeddings

    has_vectors = kwargs.get("embeddings") or has_run_embeddings(run.path)
    if not required and not (run.has("predictions.parquet") and has_vectors):
        return _skip(run, "slices", "no predictions with stored embeddings (train a model, or pass --embeddings)",
                     required)
    return _run_stage(run, "slices", fn, run, _config(cfg_cls, **kwargs))


def report_stage(run: RunDir, *, required: bool = False) -> Any:
    fn, _ = _load(run, "report", required) or (None, None)
    if fn is None:
        return None
    return _run_stage(run, "report", fn, run)


def _record_failure(run: RunDir, name: str, before: dict, error: str) -> None:
    """A stage that failed before its ``RunDir.stage`` block opened (a missing extra such as torch, a bad option)
    left no record of this attempt: write one (``failed`` with the error), so "details in run.json" holds."""
    now = (run.info.get("stages") or {}).get(name) or {}
    if now == before or now.get("status") not in ("failed", "interrupted"):
        run.mark_stage(name, "failed", error=error)


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
        ("profile", lambda: profile_stage(run, min_n=min_n, seed=seed, workers=workers, engine=engine,
                                          ray_address=ray_address)),
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
        before = dict((run.info.get("stages") or {}).get(name) or {})
        try:
            fn()
        except AuditError as e:
            failures.append((name, str(e)))
            _record_failure(run, name, before, str(e))
            if name == "train":
                run.mark_stage("metrics", "skipped", reason="training failed")
                continue
        except Exception as e:  # recorded in run.json by RunDir.stage; keep going with the others
            failures.append((name, f"{type(e).__name__}: {e}"))
            _record_failure(run, name, before, f"{type(e).__name__}: {e}")
    if failures:
        msg = "; ".join(f"{n}: {m}" for n, m in failures)
        raise StageError(f"stages failed ({msg}); details in {run.path / 'run.json'}")
    return run


def demo(out: Path, *, task: str = "all", epochs: int | None = None, device: str = "auto", seed: int = 0,
         console=None) -> list[RunDir]:
    """Build the demo data under ``out/data`` and run the full audit into ``out/<task>``."""
    from audit import demo as demo_data
    from audit.console import print_demo_step
    from audit.manifest import Roles
    from audit.readers import ReadOptions

    out = Path(out)
    tasks = ["classify", "segment"] if task == "all" else [task]
    runs = []
    for t in tasks:
        print_demo_step(console, f"building the {t} dataset under {out / 'data' / t}")
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
        print_demo_step(console, f"running the full audit into {run.path}")
        ep = epochs if epochs is not None else (6 if t == "classify" else 6)
        full_audit(run, task=t, epochs=ep, device=device, seed=seed, min_n=30, image_size=32)
        runs.append(run)
        run.unlock()
    return runs
