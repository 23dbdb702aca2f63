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
import os
from pathlib import Path
from typing import Any

from audit.errors import AuditError, StageError, UsageError
from audit.rundir import RunDir, argv

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


def ingest(source, *, out: Path, format: str = "auto", options=None, seed: int = 0, command: list[str] | None = None) -> RunDir:
    """Read ``source`` into a manifest and write ``out/manifest.parquet`` and ``out/run.json``."""
    from audit.manifest import fingerprint
    from audit.readers import ReadOptions, read_dataset

    options = options or ReadOptions()
    result = read_dataset(source, format=format, options=options)
    run = RunDir.create(out, command=command or argv(), config={"seed": seed}, lock=True)
    new_fp = fingerprint(result.manifest, result.root, file_stats=result.file_stats)
    cleared = _clear_if_dataset_changed(run, new_fp)
    with run.stage("manifest") as st:
        df = result.manifest
        run.write_manifest(df)
        classes = result.classes
        if classes is None and "label" in df.columns and result.task == "classify":
            classes = sorted(df["label"].dropna().unique().tolist(), key=_natural_key)
        dataset = {
            "source": str(Path(source).resolve()) if source is not None else None,
            "root": str(Path(result.root).resolve()),
            "format": result.format,
            "roles": options.roles.as_dict(),
            "n": int(len(df)),
            "columns": [str(c) for c in df.columns],
            "task": result.task,
            "classes": classes or [],
            "fingerprint": new_fp,
            "allow_outside_root": bool(options.allow_outside_root),
            "notes": list(result.notes) + (
                [f"the dataset changed since this run directory was last used: cleared {', '.join(cleared)}"]
                if cleared else []
            ),
            **result.extra,
        }
        run.update_info(dataset=dataset, seed=seed)
        st["n"] = int(len(df))
        st["flagged"] = _flag_counts(df)
    _refuse_flagged_if_strict(run, df, options)
    return run


def _flag_counts(df) -> dict:
    """Flagged manifest rows by reason (issue 23: a bad row is a finding, never a refusal)."""
    return {str(k): int(v) for k, v in df["flag"].value_counts().items()} if "flag" in df.columns else {}


def _refuse_flagged_if_strict(run: RunDir, df, options) -> None:
    """``--strict``: any flagged row is exit 2, listing them all; the flagged manifest stays in the run directory."""
    from audit.manifest import flagged_rows_error

    err = flagged_rows_error(df) if getattr(options, "strict", False) else None
    if err is not None:
        run.unlock()
        raise err


# Outputs derived from the manifest: stale once the dataset changes (training checkpoints under train/ are keyed
# by the fingerprint already and are left alone).
_DERIVED = ("profile", "predictions.parquet", "predictions", "metrics", "findings.json", "report.html", "summary.md",
            "check", "slices", "embeddings/predict")


def _clear_if_dataset_changed(run: RunDir, new_fp: str) -> list[str]:
    """Remove derived outputs of an earlier, different dataset so no stage mixes old and new results."""
    import shutil

    old_fp = run.dataset.get("fingerprint")
    if not old_fp or old_fp == new_fp:
        return []
    cleared = []
    for name in _DERIVED:
        p = run.path / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
        else:
            continue
        cleared.append(name)
    stages = {k: v for k, v in run.info.get("stages", {}).items() if k == "manifest"}
    run.update_info(stages=None)
    run.update_info(stages=stages)
    return cleared


def _natural_key(s: str):
    try:
        return (0, float(s), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(s))


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


# ---------------------------------------------------------------------------------------------- summaries
_SEV_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def print_summary(run: RunDir, *, stages: list[str] | None = None, console=None, top: int = 8) -> None:
    """The short terminal summary every command ends with: what the stage did, the headline numbers with their
    intervals, top findings, outputs and the next command."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from audit.progress import is_quiet

    console = console or Console()
    info = run.info
    findings = run.findings()
    shown = [f for f in findings if f.get("stage") in stages] if stages else findings
    ds = info.get("dataset", {})
    st = run.stages()
    status = ", ".join(f"{k}={v.get('status')}" for k, v in st.items())
    console.print(f"[bold]{escape(str(run.path))}[/]  {ds.get('n', '?')} samples, task {escape(str(ds.get('task', '?')))}  "
                  f"({escape(status)})")
    for note in (ds.get("notes") or [])[:5]:
        console.print(f"  [yellow]note:[/] {escape(str(note))}")
    for name, s in st.items():
        if s.get("status") == "skipped":
            console.print(f"  [dim]{escape(name)} skipped: {escape(str(s.get('reason', '')))}[/]")
        elif s.get("status") == "failed":
            console.print(f"  [red]{escape(name)} failed: {escape(str(s.get('error', ''))[:300])}[/]")
        elif s.get("status") == "stale":
            console.print(f"  [yellow]{escape(name)} is stale: {escape(str(s.get('reason', '')))}[/]")
    if stages and "train" in stages and isinstance(st.get("train"), dict) and st["train"].get("status") == "ok":
        _print_train(console, st["train"])
    if not is_quiet():
        _print_headline(run, console, stages)
    if shown and not is_quiet():
        if stages and len(shown) < len(findings):
            title = (f"top findings of this step ({len(shown)}; {len(findings)} in the run: findings.json, "
                     "report.html, dashboard)")
        else:
            title = f"top findings ({len(findings)} in all)"
        table = Table(title=title, show_lines=False, title_justify="left")
        table.add_column("severity")
        table.add_column("kind")
        table.add_column("finding", overflow="fold")
        table.add_column("value [95% CI]", overflow="fold")
        table.add_column("n", justify="right")
        for f in shown[:top]:
            sev = str(f.get("severity") or "?")
            style = _SEV_STYLE.get(sev)
            sev_txt = f"[{style}]{escape(sev)}[/]" if style else escape(sev)
            table.add_row(sev_txt, escape(str(f.get("kind", ""))), escape(str(f.get("title", ""))),
                          escape(_finding_value(f)), escape(_fmt_n(f.get("n"))))
        console.print(table)
    elif not shown and not is_quiet():
        console.print("no findings from this step" if stages and findings else "no findings")
    outputs = [p for p in ("manifest.parquet", "profile", "predictions.parquet", "metrics", "findings.json", "report.html") if run.has(p)]
    console.print("outputs: " + ", ".join(escape(str(run.path / p)) for p in outputs))
    console.print("next: " + escape(_next_step(run)))


def _fmt_n(v) -> str:
    from audit.core.numfmt import format_number

    return "" if v is None else format_number(v)


def _finding_value(f: dict) -> str:
    from audit.report.markdown import fmt_value_ci

    v = f.get("value")
    if v is None:
        return ""
    ci = f.get("ci") or [None, None]
    lo, hi = (ci[0], ci[1]) if isinstance(ci, (list, tuple)) and len(ci) == 2 else (None, None)
    return fmt_value_ci(v, lo, hi)


def _print_train(console, s: dict) -> None:
    """What the training stage did: rows used and excluded (with reasons), the protocol, per-fold selection."""
    from rich.markup import escape

    n_rows, n_used = s.get("n_rows"), s.get("n_used")
    line = f"trained {escape(str(s.get('model')))} ({escape(str(s.get('protocol')))}) on {n_used} of {n_rows} rows"
    excl = s.get("excluded") or {}
    if excl:
        line += "; excluded: " + ", ".join(f"{escape(str(k))} {v}" for k, v in excl.items()) + \
            " (train/excluded.parquet)"
    console.print(line)
    for note in (s.get("notes") or [])[:4]:
        console.print(f"  [yellow]note:[/] {escape(str(note))}")
    folds = [f for f in (s.get("folds") or []) if isinstance(f, dict)]
    if folds:
        parts = []
        for f in folds[:8]:
            vs = f.get("val_score")
            score = f"val {vs:.3f}" if isinstance(vs, (int, float)) else str(f.get("status", ""))
            parts.append(f"{escape(str(f.get('fold')))}: {score}" + (f" ({f.get('status')})" if f.get("status") not in
                                                                       (None, "trained") else ""))
        more = f" (+{len(folds) - 8} more)" if len(folds) > 8 else ""
        console.print("  folds: " + "; ".join(parts) + more)


def _print_headline(run: RunDir, console, stages: list[str] | None) -> None:
    """The headline numbers with intervals (the same rows as summary.md), for the steps that produce them."""
    from rich.markup import escape

    from audit.errors import AuditError
    from audit.headline import headline
    from audit.report.markdown import headline_rows

    try:
        h = headline(run)
    except AuditError:
        return
    keep = ("overall", "balanced accuracy", "model sanity", "worst group", "largest generalization gap",
            "largest fairness gap", "strongest association", "unreadable files")
    model_rows = ("overall", "worst group", "largest generalization gap", "largest fairness gap")
    stale = h.get("stages", {}).get("metrics") == "stale"
    if stale or (stages and "profile" in stages and not {"train", "metrics", "report"} & set(stages)):
        keep = ("strongest association", "unreadable files")
    rows = [(k, v) for k, v in headline_rows(h, esc=lambda t: "" if t is None else str(t)) if k.startswith(keep)]
    for k, v in rows:
        console.print(f"  {escape(k)}: {escape(v)}")
    if stale and any(h.get(k) for k in ("overall", "worst_group", "largest_gap")):
        console.print(f"  [dim]model numbers ({', '.join(model_rows)}) not shown: the metrics are older than the "
                      "predictions[/]")


def audit_command() -> str:
    """How the user should type ``audit``: plain when it is on PATH, else the path of this environment's script
    (e.g. ``.venv/bin/audit`` after ``make demo`` without an activated venv)."""
    import shutil
    import sys

    script = Path(sys.prefix) / "bin" / "audit"
    found = shutil.which("audit")
    if not script.exists() or (found and Path(found).resolve() == script.resolve()):
        return "audit"
    rel = os.path.relpath(script)
    return rel if not rel.startswith("..") else str(script)


def _next_step(run: RunDir) -> str:
    p = str(run.path)
    a = audit_command()
    if not run.finished("profile"):
        return f"{a} profile DATA --out {p}"
    trainable = bool(run.dataset.get("classes")) or run.task == "segment"
    if not run.has("predictions.parquet") and trainable:
        return f"{a} train {p}   (then {a} metrics {p}; or explore now: {a} dashboard {p})"
    if run.has("predictions.parquet") and not run.finished("metrics"):
        return f"{a} metrics {p}" + ("   (the metrics are older than the predictions)"
                                     if run.stage_status("metrics") == "stale" else "")
    if not run.has("report.html") or run.stage_status("report") == "stale":
        return f"{a} report {p}   or   {a} dashboard {p}"
    return f"{a} dashboard {p}   (or open {p}/report.html; gate CI with {a} init-policy {p})"


def print_demo_done(runs: list[RunDir], console=None) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = console or Console()
    for run in runs:
        print_summary(run, console=console)
        console.print()
    if runs:
        parent = runs[0].path.parent
        console.print(f"[bold green]demo done.[/] results: {escape(str(parent))}/")
        console.print(f"open the dashboard:  [bold]{escape(audit_command())} dashboard {escape(str(runs[0].path))}[/]")
        if any(r.has("report.html") for r in runs):
            console.print(f"or the static report: {escape(str(runs[0].path / 'report.html'))}")


def cpu_workers(requested: int | None = None) -> int:
    """Worker count: the request, or the usable cores."""
    if requested:
        return max(1, int(requested))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS
        return max(1, os.cpu_count() or 1)
