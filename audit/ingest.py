"""Stage 0: read a dataset into a run directory (``manifest.parquet`` + ``run.json``).

Every later stage starts from what this writes; it imports only the readers, the manifest contract and the run
directory, so stages and helpers (``audit.mitigate.synthetic``, the tests, the benchmarks) may call it without
reaching back up to :mod:`audit.pipeline`.
"""

from __future__ import annotations

from pathlib import Path

from audit.core.sorting import natural_key
from audit.rundir import RunDir, argv

__all__ = ["ingest"]


def ingest(source, *, out: Path, format: str = "auto", options=None, seed: int = 0,
           command: list[str] | None = None) -> RunDir:
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
            classes = sorted(df["label"].dropna().unique().tolist(), key=natural_key)
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
            "notes": list(result.notes) + _format_notes(df) + (
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


def _format_notes(df) -> list[str]:
    """HEIF/AVIF files this install cannot decode: say what to install instead of just profiling them unreadable."""
    from audit.io.heif import unreadable_note

    if "filepath" not in df.columns:
        return []
    note = unreadable_note(df["filepath"].dropna())
    return [note] if note else []


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
