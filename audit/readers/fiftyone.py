"""FiftyOne datasets as input: ``--format fiftyone --dataset NAME`` (``--dataset`` alone is enough).

Fields map to roles with the table reader's flags: ``--label FIELD --domain FIELD --split FIELD --group FIELD
--attr FIELD --mask FIELD --id-col FIELD --path-col FIELD``. A label field (``fo.Classification``) gives its
``label``; a segmentation field gives its ``mask_path``; a plain field gives its value. Without flags:

* a dataset written by ``audit fiftyone export`` maps back to its run's manifest (same ids, paths, roles);
* otherwise ``ground_truth`` is the label (or the mask when it is an ``fo.Segmentation``), and the sample tags
  ``train`` / ``val`` / ``test`` give the split when present.

File paths are made relative to ``--root`` (default: the exported run's root, else the folder that holds every
file).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from audit.errors import InputError, UsageError
from audit.manifest import ATTR_PREFIX, Roles, build_manifest, closest
from audit.readers import Reader, ReadOptions, ReadResult, register

__all__ = ["FiftyOneReader", "read_fiftyone"]

_SPLIT_TAGS = ("train", "val", "validation", "test")


def _field_kind(schema: dict, name: str) -> str:
    """``classification`` / ``segmentation`` / ``detections``... for label fields, ``value`` otherwise."""
    import fiftyone as fo

    top = name.split(".", 1)[0]
    f = schema.get(top)
    doc = getattr(f, "document_type", None)
    if doc is None or "." in name:
        return "value"
    if issubclass(doc, fo.Classification):
        return "classification"
    if issubclass(doc, fo.Segmentation):
        return "segmentation"
    if issubclass(doc, fo.Label):
        return doc.__name__.lower()
    return "value"


def _values(ds, schema: dict, name: str, role: str) -> list:
    top = name.split(".", 1)[0]
    if top not in schema and name not in ("id", "filepath", "tags"):
        best = closest(name, list(schema))
        hint = f" (did you mean {best!r}?)" if best else ""
        avail = ", ".join(list(schema)[:30])
        raise InputError(f"no field {name!r} for --{role} in the FiftyOne dataset{hint}; available fields: {avail}")
    kind = _field_kind(schema, name)
    if kind == "classification":
        return ds.values(f"{name}.label")
    if kind == "segmentation":
        return ds.values(f"{name}.mask_path")
    if kind != "value":
        raise InputError(f"field {name!r} holds {kind} labels; "
                         f"--{role} needs a classification, segmentation or plain field")
    vals = ds.values(name)
    if role != "attr" or not vals or not isinstance(next((v for v in vals if v is not None), None), (list, dict)):
        return vals
    raise InputError(f"field {name!r} holds lists or documents; --{role} needs one value per sample")


def read_fiftyone(name: str, options: ReadOptions) -> ReadResult:
    """Read the FiftyOne dataset ``name`` into a manifest."""
    from audit.integrations.fiftyone import require_fiftyone

    fo = require_fiftyone()
    if not fo.dataset_exists(name):
        known = fo.list_datasets()
        best = closest(name, known)
        hint = f" (did you mean {best!r}?)" if best else ""
        raise InputError(f"no FiftyOne dataset {name!r}{hint}; datasets: {', '.join(known[:30]) or 'none'}")
    ds = fo.load_dataset(name)
    if len(ds) == 0:
        raise InputError(f"the FiftyOne dataset {name!r} has no samples")
    schema = ds.get_field_schema()
    info = dict(ds.info.get("imgaudit") or {})
    r = options.roles
    given = (any(getattr(r, k) is not None for k in ("label", "mask", "split", "domain", "group", "sample_id"))
             or r.attrs)
    notes: list[str] = []
    roles = Roles(filepath="__path__")
    table: dict[str, list] = {"__path__": ds.values("filepath")}
    if not given and info.get("fields") is not None and "audit_id" in schema:
        # written by `audit fiftyone export`: map back to the run's manifest
        table["__id__"] = ds.values("audit_id")
        roles.sample_id = "__id__"
        if "ground_truth" in schema:
            col = "mask" if info.get("task") == "segment" else "label"
            table[f"__{col}__"] = _values(ds, schema, "ground_truth", col)
            setattr(roles, col, f"__{col}__")
        for col, f in info["fields"].items():
            if f not in schema:
                continue
            table[col] = ds.values(f)
            if col.startswith(ATTR_PREFIX):
                roles.attrs.append(col)
            else:
                setattr(roles, col, col)
    else:
        plan = {k: getattr(r, k) for k in ("label", "mask", "split", "domain", "group", "sample_id")}
        if not given and "ground_truth" in schema:
            kind = _field_kind(schema, "ground_truth")
            if kind in ("classification", "segmentation"):
                plan["label" if kind == "classification" else "mask"] = "ground_truth"
        for role, fname in plan.items():
            if fname is None:
                continue
            table[f"__{role}__"] = _values(ds, schema, fname, role if role != "sample_id" else "id-col")
            setattr(roles, role, f"__{role}__")
        for a in r.attrs:
            fname = a[len(ATTR_PREFIX):] if a.startswith(ATTR_PREFIX) and a not in schema else a
            table[ATTR_PREFIX + fname.replace(".", "_")] = _values(ds, schema, fname, "attr")
            roles.attrs.append(ATTR_PREFIX + fname.replace(".", "_"))
        if r.split is None:
            tags = ds.values("tags")
            split = [next((t for t in tg if t in _SPLIT_TAGS), None) for tg in tags]
            if any(s is not None for s in split):
                table["__split__"] = ["val" if s == "validation" else s for s in split]
                roles.split = "__split__"
                notes.append("split taken from the sample tags train / val / test")
        if r.filepath is not None and r.filepath != "filepath":
            table["__path__"] = _values(ds, schema, r.filepath, "path-col")
    df = pd.DataFrame(table)
    root = options.root or info.get("root")
    paths = [p for p in df["__path__"].dropna().tolist()]
    masks = df["__mask__"].dropna().tolist() if "__mask__" in df.columns else []
    if root is None:
        absps = [os.path.abspath(p) for p in paths + masks if os.path.isabs(p)]
        root = os.path.commonpath([os.path.dirname(p) for p in absps]) if absps else os.getcwd()
    root = Path(root)
    real_root = os.path.abspath(root)

    def rel(p):
        if p is None or (isinstance(p, float) and p != p):
            return None
        ap = os.path.abspath(p)
        if ap == real_root or ap.startswith(real_root.rstrip(os.sep) + os.sep):
            return Path(os.path.relpath(ap, real_root)).as_posix()
        return p  # outside the root: kept absolute; check_paths refuses it unless --allow-outside-root

    df["__path__"] = df["__path__"].map(rel)
    if "__mask__" in df.columns:
        df["__mask__"] = df["__mask__"].map(rel)
    manifest = build_manifest(df, roles, source=f"FiftyOne dataset {name!r}")
    # internal column names -> canonical; build_manifest already renamed roles
    extra = {"fiftyone_dataset": name}
    if info.get("run"):
        extra["fiftyone_exported_from"] = info["run"]
    classes = info.get("classes") if info.get("task") == "segment" else None
    task = info.get("task") if not given else None
    return ReadResult(manifest=manifest, root=root.resolve(), format="fiftyone", notes=notes, task=task,
                      classes=classes or None, extra=extra)


@register
class FiftyOneReader(Reader):
    name = "fiftyone"
    description = "a FiftyOne dataset: --dataset NAME, fields mapped with --label/--domain/--attr..."

    def detect(self, source: Path, options: ReadOptions) -> bool:
        return options.dataset_name is not None

    def read(self, source: Path | None, options: ReadOptions) -> ReadResult:
        name = options.dataset_name
        if name is None:
            if source is not None and not Path(source).exists():
                name = str(source)  # `audit profile NAME --format fiftyone`
            else:
                raise UsageError("--format fiftyone needs --dataset NAME")
        return read_fiftyone(name, options)
