"""``audit mitigate RUN --method NAME ...``: retrain under the run's own settings, one variant per method, re-audit.

Each variant is a run directory of its own, ``RUN/mitigations/<method>/``: the parent's dataset description and
manifest, its decode cache linked (``train/cache``), the training stage (:func:`audit.train.run_training`, with the
method's ``adjust_fit`` hook: same protocol, folds, seeds, model, epochs and plan, so the same held-out images) and
the metrics stage (:func:`audit.metrics.run_metrics`, the parent's metrics settings). The pairing is checked after
training; ``RUN/mitigations/summary.parquet`` and ``summary.json`` compare every variant with the baseline
(:mod:`audit.mitigate.summary`).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from audit.errors import UsageError
from audit.rundir import RunDir

__all__ = ["MitigateConfig", "run_mitigations", "train_config_of", "variant_dir", "mitigate_command"]

_FROM_RESOLVED = ("task", "model", "protocol", "epochs", "batch_size", "lr", "image_size", "seeds", "seed", "weights",
                  "pretrained", "compile", "balanced", "engine", "val_fraction", "test_fraction", "patience", "mode")


@dataclass(frozen=True)
class MitigateConfig:
    """``methods``: names from :data:`audit.mitigate.methods.METHODS`; ``groups``: manifest columns the
    group-based methods balance over (default: domain); ``eta``: GroupDRO step; ``device``: as for train;
    ``n_boot``/``min_n``/``seed``: the paired bootstrap (defaults: the run's metrics settings)."""

    methods: tuple[str, ...]
    groups: tuple[str, ...] = ()
    eta: float = 0.1
    device: str = "auto"
    n_boot: int | None = None
    min_n: int | None = None
    seed: int | None = None
    max_drop: float = 0.02


def variant_dir(run: RunDir, method: str) -> Path:
    return run.path / "mitigations" / method


def train_config_of(run: RunDir, device: str = "auto"):
    """The :class:`~audit.train.TrainConfig` the baseline was trained with (run.json ``config.train``)."""
    from audit.train.config import train_config

    res = (run.config or {}).get("train")
    if not res or run.stage_status("train") != "ok" or not run.has("predictions.parquet"):
        raise UsageError(f"{run.path} has no finished training stage; run `audit train {run.path}` first")
    kw = {k: res[k] for k in _FROM_RESOLVED if k in res and res[k] is not None}
    aug = res.get("augment") or {}
    kw.update(augment=bool(aug.get("enabled", True)), hflip=bool(aug.get("hflip", False)),
              amp=res.get("amp") is not None, device=device)
    if res.get("seg_loss") in ("ce", "dice_ce"):
        kw["seg_loss"] = res["seg_loss"]
    if kw.get("mode") == "scratch":
        kw["mode"] = "auto"
    return train_config(**kw)


def _prepare_child(run: RunDir, method: str, record: dict) -> RunDir:
    path = variant_dir(run, method)
    child = RunDir.create(path, command=["audit", "mitigate", str(run.path), "--method", method])
    child.update_info(dataset=run.dataset, mitigation={"method": method, "baseline": str(run.path.resolve())})
    shutil.copyfile(run.path / "manifest.parquet", path / "manifest.parquet")
    cache = run.path / "train" / "cache"
    link = path / "train" / "cache"
    if cache.is_dir() and not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.symlink(cache.resolve(), link, target_is_directory=True)
        except OSError:  # no symlinks here: the variant decodes again into its own cache
            record.setdefault("notes", []).append("decode cache not shared (no symlink support)")
    return child


def _train_variant(run: RunDir, method: str, cfg: MitigateConfig, columns: list[str]) -> dict:
    from audit.metrics import MetricsConfig, run_metrics
    from audit.mitigate.methods import fit_adjuster
    from audit.train import run_training

    record: dict = {"method": method}
    child = _prepare_child(run, method, record)
    dups = run.read_table("profile/duplicates.parquet", required=False) if method == "dedup" else None
    if method == "dedup" and dups is None:
        record.setdefault("notes", []).append("the profile wrote no duplicates table: nothing left out")
    adjust = fit_adjuster(method, task=run.task, columns=columns, eta=cfg.eta, findings=run.findings(), dups=dups,
                          record=record)
    t0 = time.perf_counter()
    with child:
        with child.stage("train"):
            run_training(child, train_config_of(run, cfg.device), adjust_fit=adjust)
        record["train_seconds"] = round(time.perf_counter() - t0, 3)
        mcfg = {k: v for k, v in ((run.config or {}).get("metrics") or {}).items()
                if k in ("by", "min_n", "n_boot", "depth", "seed")}
        with child.stage("metrics"):
            findings = run_metrics(child, MetricsConfig(**mcfg))
        child.set_findings("metrics", findings)
        child.update_info(mitigation={**child.info.get("mitigation", {}), **record})
    return record


def run_mitigations(run: RunDir, cfg: MitigateConfig, *, on_method: Callable[[str, dict], None] | None = None
                    ) -> pd.DataFrame:
    """Train every method's variant, check the pairing, write and return the summary (one row per method x
    metric). A method that fails is recorded in ``summary.json`` with its error; the others still run."""
    from audit.mitigate.methods import METHODS, resolve_group_columns
    from audit.mitigate.summary import write_summary

    bad = [m for m in cfg.methods if m not in METHODS]
    if bad or not cfg.methods:
        raise UsageError(f"unknown --method {bad[0] if bad else ''!r}; choose from {', '.join(METHODS)}")
    train_config_of(run)  # a usage error now, before anything is written
    if "dedup" in cfg.methods and not run.has("profile/duplicates.parquet") and run.stage_status("profile") != "ok":
        raise UsageError(f"--method dedup needs the profile's duplicates table; run `audit profile` into {run.path}")
    columns = resolve_group_columns(list(cfg.groups), run.manifest())
    records = {}
    for method in dict.fromkeys(cfg.methods):
        try:
            records[method] = _train_variant(run, method, cfg, columns)
        except UsageError:
            raise
        except Exception as e:  # recorded; the other methods still run
            records[method] = {"method": method, "error": f"{type(e).__name__}: {e}"}
        if on_method:
            on_method(method, records[method])
    return write_summary(run, records, columns=columns, n_boot=cfg.n_boot, min_n=cfg.min_n, seed=cfg.seed,
                         max_drop=cfg.max_drop)


def mitigate_command(run_dir: Path, methods: list[str], *, groups: list[str] | None = None, eta: float = 0.1,
                     device: str = "auto", n_boot: int | None = None) -> list[str]:
    """``audit mitigate``: lock the run, train the variants; return one verdict line per method and the summary's
    path (the CLI prints them through :mod:`audit.console`)."""
    run = RunDir.open(run_dir)
    cfg = MitigateConfig(methods=tuple(methods or ()), groups=tuple(groups or ()), eta=eta, device=device,
                         n_boot=n_boot)
    with RunDir(run.path):
        run_mitigations(run, cfg)
    meta = run.read_json("mitigations/summary.json", default={}) or {}
    lines = [f"{method:14s} {rec.get('sentence') or 'failed: ' + str(rec.get('error'))}"
             for method, rec in (meta.get("methods") or {}).items()]
    return [*lines, f"summary: {run.path / 'mitigations' / 'summary.parquet'}"]
