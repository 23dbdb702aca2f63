"""Integrity: unreadable, missing and oversized files, mode mixes, EXIF orientation, extension mismatches; and the
manifest rows flagged at ingest (paths outside the root, files listed twice, empty paths, folders, unsupported
extensions: column ``flag`` of the manifest, see :func:`audit.manifest.flag_rows`).

``integrity`` reads ``images.parquet``; ``manifest`` reads the manifest alone (so it runs with any ``--check``). One
finding per problem type, listing the affected sample ids (the first 50 in ``evidence``; the full list is
``images.parquet`` filtered on ``error``, or the manifest filtered on ``flag``). A flagged row is reported once, by
``manifest`` (``missing_file`` stays with ``integrity``).
"""

from __future__ import annotations

import pandas as pd

from audit.findings import Finding
from audit.manifest import ATTR_PREFIX
from audit.profile.base import Check, CheckOutput, Context, register

__all__ = ["Integrity", "ManifestRows"]

_UNREADABLE = {
    "truncated": "truncated (the data ends early)",
    "empty_file": "empty (zero bytes)",
    "not_an_image": "not an image (no image signature; e.g. text or HTML)",
    "corrupt": "corrupt (a known format that fails to decode)",
    "unsupported_mode": "in a pixel mode that cannot be converted to RGB",
    "io_error": "unreadable (permissions or not a regular file)",
    "outside_root": "outside the dataset root",
}
_EVIDENCE_IDS = 50


def _share_severity(k: int, n: int, *, warn_at: float = 0.0, crit_at: float = 0.05) -> str:
    share = k / n if n else 0.0
    if share >= crit_at:
        return "critical"
    return "warning" if share > warn_at else "info"


@register
class Integrity(Check):
    name = "integrity"
    order = 10
    description = "unreadable/missing files, decompression bombs, mode mixes, EXIF orientation, extension mismatch"
    requires = ("images",)

    def run(self, ctx: Context) -> CheckOutput:
        im = ctx.images
        n = len(im)
        out: list[Finding] = []
        err = im["error"]
        if "flag" in ctx.manifest.columns:  # flagged rows are reported by the manifest check (missing files here)
            fl = ctx.manifest["flag"].astype("string").to_numpy(dtype=object, na_value=None)
            e = err.astype("string").to_numpy(dtype=object, na_value=None)
            reported = (fl == e) & (fl != None) & (fl != "missing_file")  # noqa: E711 (elementwise)
            err = err.mask(reported)

        def ids(mask) -> list[str]:
            return sorted(im.loc[mask, "sample_id"].astype(str).tolist())[:_EVIDENCE_IDS]

        missing = (err == "missing_file").fillna(False).to_numpy(bool)
        if missing.any():
            k = int(missing.sum())
            out.append(Finding(
                kind="missing_file", severity=_share_severity(k, n), n=n, value=k / n, score=k / n,
                title=f"{k} of {n} manifest rows point to a file that does not exist",
                detail="These rows are kept in images.parquet with readable=false; later stages skip them.",
                columns=["filepath"], groups=["missing_file"],
                evidence={"count": k, "sample_ids": ids(missing)},
            ))
        for code, what in _UNREADABLE.items():
            mask = (err == code).fillna(False).to_numpy(bool)
            if not mask.any():
                continue
            k = int(mask.sum())
            out.append(Finding(
                kind="unreadable_file", severity=_share_severity(k, n), n=n, value=k / n, score=k / n,
                title=f"{k} file{'s' if k > 1 else ''} {'are' if k > 1 else 'is'} {what}",
                detail=f"error code {code!r} in images.parquet; first detail: "
                       f"{im.loc[mask, 'error_detail'].dropna().astype(str).head(1).tolist()}",
                columns=["filepath"], groups=[code],
                evidence={"error": code, "count": k, "sample_ids": ids(mask)},
            ))
        bomb = (err == "decompression_bomb").fillna(False).to_numpy(bool)
        if bomb.any():
            k = int(bomb.sum())
            out.append(Finding(
                kind="oversized_image", severity="warning", n=n, value=k / n, score=k / n,
                title=(f"{k} image{'s' if k > 1 else ''} above max_pixels={ctx.config.max_pixels:,} refused "
                       "without decoding"),
                detail="Possible decompression bombs; raise --max-pixels only for trusted data.",
                columns=["filepath"], groups=["decompression_bomb"],
                evidence={"count": k, "sample_ids": ids(bomb), "max_pixels": int(ctx.config.max_pixels)},
            ))
        ok = im["readable"].to_numpy(bool)
        out += self._mode_mix(ctx, im, ok)
        exif = ok & im["exif_orientation"].fillna(1).ne(1).to_numpy(bool)
        if exif.any():
            k = int(exif.sum())
            out.append(Finding(
                kind="exif_orientation", severity="info", n=int(ok.sum()), value=k / ok.sum(), score=k / ok.sum(),
                title=f"{k} image{'s' if k > 1 else ''} carry an EXIF rotation/flip",
                detail="Loaders that ignore EXIF see these rotated; statistics here use the displayed orientation.",
                columns=["exif_orientation"],
                groups=sorted({str(int(v)) for v in im.loc[exif, "exif_orientation"]}),
                evidence={"count": k, "sample_ids": ids(exif)},
            ))
        mism = im["ext_mismatch"].fillna(False).to_numpy(bool)
        if mism.any():
            k = int(mism.sum())
            pairs = (im.loc[mism, "ext"].fillna("").astype(str) + "->" + im.loc[mism, "format"].fillna("?").astype(str))
            out.append(Finding(
                kind="extension_mismatch", severity="warning", n=n, value=k / n, score=k / n,
                title=f"{k} file{'s' if k > 1 else ''} whose extension does not match the content "
                      f"({', '.join(pairs.value_counts().index[:3])})",
                detail="Loaders that choose a decoder by extension may fail or mis-decode these files.",
                columns=["ext", "format"], groups=sorted(set(pairs)),
                evidence={"count": k, "sample_ids": ids(mism), "pairs": pairs.value_counts().to_dict()},
            ))
        return CheckOutput(findings=out)

    @staticmethod
    def _mode_mix(ctx: Context, im: pd.DataFrame, ok) -> list[Finding]:
        if ok.sum() == 0:
            return []
        kind = im.loc[ok, "mode"].astype(str) + im.loc[ok, "bit_depth"].map(
            lambda b: "" if b in (8, None) or pd.isna(b) else f"/{int(b)}bit")
        counts = kind.value_counts()
        if len(counts) < 2:
            return []
        n_ok = int(ok.sum())
        minority = int(n_ok - counts.iloc[0])
        by_domain = {}
        if ctx.has("domain"):
            dom = ctx.manifest.loc[ok, "domain"].astype("string").fillna("<missing>")
            by_domain = {str(k): v for k, v in pd.crosstab(dom, kind).to_dict(orient="index").items()}
        return [Finding(
            kind="image_mode_mix", severity="info", n=n_ok, value=minority / n_ok, score=minority / n_ok,
            title=f"images come in {len(counts)} pixel modes: "
                  + ", ".join(f"{k} ({v})" for k, v in counts.items()),
            detail="All are converted to 8-bit RGB for statistics and training; a mode tied to a domain is a "
                   "shortcut (see the shortcut check).",
            columns=["mode"], groups=[str(k) for k in counts.index],
            evidence={"counts": counts.to_dict(), "by_domain": by_domain},
        )]


_ROW_FLAGS = {
    "empty_path": ("have an empty path", "give every row a file path, or drop the row"),
    "directory": ("point to a folder, not a file", "list the image files inside the folder instead"),
    "not_a_file": ("point to a device, socket or pipe", "list regular image files only"),
    "unsupported_extension": ("have an extension that is not an image type",
                              "rename the files if they are images, or drop the rows"),
    "duplicate_id": ("repeat the sample id of an earlier row for a different file (renamed id#2, id#3...)",
                     "make the --id-col values unique"),
}


def _listing_diffs(m: pd.DataFrame, first_of: pd.Series) -> tuple[dict[str, int], list[dict]]:
    """For files listed more than once: how many disagree on each role, and examples."""
    cols = [c for c in ("label", "split", "domain", "group", "mask") if c in m.columns]
    cols += [c for c in m.columns if str(c).startswith(ATTR_PREFIX)]
    sub = m.assign(_file=first_of)
    listed = sub[sub["_file"].duplicated(keep=False)]
    counts: dict[str, int] = {}
    examples: list[dict] = []
    for col in cols:
        if col == "group" and "listing_of" in m.columns and (m["group"] == m["sample_id"]).all():
            continue  # default groups differ by construction
        vals = listed[col].astype("string").fillna("<missing>")
        k = vals.groupby(listed["_file"]).nunique()
        counts[col] = int((k > 1).sum())
    for _f, g in listed.groupby("_file", sort=True):
        if len(examples) >= 10:
            break
        diff = [c for c in counts if g[c].astype("string").fillna("<missing>").nunique() > 1]
        examples.append({"file": str(g["filepath"].iloc[0]), "sample_ids": g["sample_id"].astype(str).tolist(),
                         "disagree_on": diff,
                         **{c: g[c].astype("string").fillna("<missing>").tolist() for c in diff}})
    return {c: k for c, k in counts.items() if k}, examples


def _listing_conflicts(m: pd.DataFrame) -> list[Finding]:
    """Listings of one file that give it two values of an attribute or the domain: an ``attribute_conflict``, like a
    byte-identical copy that disagrees (issue 23; labels and splits are judged with the copies, in duplicates)."""
    extra = m["listing_of"].notna().to_numpy(bool)
    firsts = m.drop_duplicates("sample_id").set_index("sample_id")
    out = []
    for col in [c for c in m.columns if str(c).startswith(ATTR_PREFIX)] + (["domain"] if "domain" in m else []):
        mine = m.loc[extra, col].astype("string")
        first = pd.Series(firsts[col].astype("string").reindex(m.loc[extra, "listing_of"].astype(str)).to_numpy(),
                          index=mine.index, dtype="string")
        hit = (mine.notna() & first.notna() & (mine.fillna("") != first.fillna(""))).to_numpy(bool)
        if not hit.any():
            continue
        rows = m.loc[extra].loc[hit]
        k, label = int(hit.sum()), str(col).removeprefix(ATTR_PREFIX)
        pairs = [{"a": str(a), "b": str(b), "kind": "exact", "basis": "listing"}
                 for a, b in rows[["listing_of", "sample_id"]].head(_EVIDENCE_IDS).itertuples(index=False)]
        out.append(Finding(
            kind="attribute_conflict", severity="warning", n=k, value=float(k), score=float(k),
            title=f"{k} file listing{'s' if k > 1 else ''} disagree{'' if k > 1 else 's'} with the file's first "
                  f"listing on {label}",
            detail=f"The same file is listed with two values of {label}; at most one is right. Pairs: manifest "
                   "columns listing_of and sample_id.",
            columns=[str(col)], groups=["exact"],
            evidence={"attribute": str(col), "pairs": pairs, "id_extra": "listing"},
        ))
    return out


@register
class ManifestRows(Check):
    name = "manifest"
    order = 5
    description = "rows flagged at ingest: outside the root, listed twice, empty path, folder, unsupported extension"

    def run(self, ctx: Context) -> CheckOutput:
        m = ctx.manifest
        n = len(m)
        out: list[Finding] = []
        flag = m["flag"] if "flag" in m.columns else pd.Series(pd.NA, index=m.index, dtype="string")

        def examples(mask) -> list[dict]:
            sel = m.loc[mask, ["sample_id", "filepath"]].head(_EVIDENCE_IDS)
            return [{"sample_id": str(a), "filepath": None if pd.isna(b) else str(b)} for a, b in sel.itertuples(
                index=False)]

        outside = flag.eq("outside_root").fillna(False).to_numpy(bool)
        if outside.any():
            k = int(outside.sum())
            out.append(Finding(
                kind="outside_root", severity="warning", n=n, value=k / n, score=k / n,
                title=f"{k} of {n} manifest rows point outside the dataset root; they were kept but never opened",
                detail="A '../' path, an absolute path elsewhere, or a symlink leading out of the root. Their images "
                       "are not profiled and they are left out of training; pass --allow-outside-root to read them.",
                columns=["filepath"], groups=["outside_root"],
                evidence={"count": k, "examples": examples(outside), "flag": "--allow-outside-root"},
            ))
        if "listing_of" in m.columns and m["listing_of"].notna().any():
            first_of = m["listing_of"].fillna(m["sample_id"])
            extra = m["listing_of"].notna().to_numpy(bool)
            files = int(first_of[extra].nunique())
            diffs, ex = _listing_diffs(m, first_of)
            what = "; listings disagree on " + ", ".join(f"{c} ({k} file{'s' if k > 1 else ''})"
                                                         for c, k in diffs.items()) if diffs else ""
            out.append(Finding(
                kind="duplicate_listing", severity="warning", n=n, value=int(extra.sum()) / n,
                score=int(extra.sum()) / n,
                title=f"{files} file{'s are' if files > 1 else ' is'} listed more than once "
                      f"({int(extra.sum())} extra row{'s' if extra.sum() > 1 else ''}){what}",
                detail="Each listing is its own row (sample ids path, path#2, ...; column listing_of names the first). "
                       "Training uses the first listing only. Listings in different splits are leakage and "
                       "different labels a label conflict (see the duplicate findings).",
                columns=["filepath"] + list(diffs), groups=["duplicate_listing"],
                evidence={"files": files, "extra_rows": int(extra.sum()), "disagree": diffs, "examples": ex},
            ))
            out += _listing_conflicts(m)
        for code, (what, fix) in _ROW_FLAGS.items():
            mask = flag.eq(code).fillna(False).to_numpy(bool)
            if not mask.any():
                continue
            k = int(mask.sum())
            exts = {}
            if code == "unsupported_extension":
                exts = m.loc[mask, "filepath"].astype(str).str.extract(r"(\.[^./\\]*)$")[0].fillna("(none)")
                exts = {"extensions": exts.str.lower().value_counts().to_dict()}
            out.append(Finding(
                kind="flagged_row", severity="warning", n=n, value=k / n, score=k / n,
                title=f"{k} of {n} manifest rows {what}",
                detail=f"Kept in the manifest with flag {code!r}, never opened, left out of training; {fix}.",
                columns=["filepath"], groups=[code],
                evidence={"flag": code, "count": k, "examples": examples(mask), **exts},
            ))
        return CheckOutput(findings=out, info={"flagged": {str(k): int(v) for k, v in flag.value_counts().items()}})
