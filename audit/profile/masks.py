"""Segmentation masks: encoding, size and class checks, class pixel frequency and object sizes by group.

Reads the mask columns of ``images.parquet`` (decoded once by the scan with :func:`audit.io.decode.scan_mask`).
``masks.parquet``: ``by (overall|domain|attr.x), group, class (index), class_name, pixel_share,
pixel_ci_low, pixel_ci_high (bootstrap over images), mean_object_size (pixels per connected component),
n_objects, image_share (images containing the class), n_images``.

Findings: ``mask_mismatch`` per problem (size_mismatch, unexpected_classes, color_mask, unreadable or
missing masks; warning, critical from 5% of masks), ``empty_mask`` (info, warning from 5%).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from audit.findings import Finding
from audit.profile.base import Check, CheckOutput, Context, register

__all__ = ["Masks"]

_BOOT = 200  # bootstrap replicates for pixel-share intervals (per group and class)


@register
class Masks(Check):
    name = "masks"
    order = 70
    description = "mask encodings, size/class mismatches, empty masks, class pixel frequency and object sizes"
    requires = ("images",)
    tasks = ("segment",)

    def skip_reason(self, ctx: Context) -> str | None:
        if ctx.images is not None and "mask_readable" not in ctx.images.columns:
            return "no mask column"
        return super().skip_reason(ctx)

    def run(self, ctx: Context) -> CheckOutput:
        im = ctx.images
        m = ctx.manifest
        n = len(im)
        findings: list[Finding] = []
        err = im["mask_error"].astype("string")
        codes = sorted({c for e in err.dropna() for c in str(e).split(",")})
        for code in codes:
            mask = err.fillna("").str.split(",").map(lambda xs, c=code: c in xs).to_numpy(bool)
            k = int(mask.sum())
            share = k / n
            detail = {
                "size_mismatch": "mask and image sizes differ: a loader that resizes one of them "
                                 "silently misaligns labels",
                "unexpected_classes": f"values outside 0..{len(ctx.classes) - 1} (255 is treated as ignore)",
                "color_mask": "RGB masks with colours cannot be mapped to class indices; save index (P or L) masks",
            }.get(code, "the mask could not be read")
            ex = im.loc[mask, ["sample_id", "width", "height", "mask_width", "mask_height", "mask_classes"]].head(20)
            findings.append(Finding(
                kind="mask_mismatch", severity="critical" if share >= 0.05 else "warning", n=n, value=share,
                score=share,
                title=f"{k} mask{'s' if k > 1 else ''}: {code.replace('_', ' ')}",
                detail=detail, columns=["mask"], groups=[code],
                evidence={"error": code, "count": k, "sample_ids": sorted(im.loc[mask, "sample_id"].astype(str))[:50],
                          "examples": ex.astype(object).where(ex.notna(), None).to_dict("records")},
            ))
        readable = im["mask_readable"].to_numpy(bool)
        empty = readable & im["mask_empty"].fillna(False).to_numpy(bool)
        if empty.any():
            k = int(empty.sum())
            share = k / max(1, readable.sum())
            findings.append(Finding(
                kind="empty_mask", severity="warning" if share >= 0.05 else "info", n=int(readable.sum()),
                value=share, score=share, title=f"{k} masks contain no foreground class",
                detail="Fine for negatives; check they are intended and not failed annotations.",
                columns=["mask"], groups=["empty"],
                evidence={"count": k, "sample_ids": sorted(im.loc[empty, "sample_id"].astype(str))[:50]},
            ))
        table = self._table(ctx, im, m, readable & ~err.fillna("").str.contains("color_mask").to_numpy(bool))
        return CheckOutput(tables={"masks": table}, findings=findings)

    def _table(self, ctx: Context, im: pd.DataFrame, m: pd.DataFrame, ok: np.ndarray) -> pd.DataFrame:
        idx = np.flatnonzero(ok & im["mask_class_ids"].notna().to_numpy())
        cols = ["by", "group", "class", "class_name", "pixel_share", "pixel_ci_low", "pixel_ci_high",
                "mean_object_size", "n_objects", "image_share", "n_images"]
        if len(idx) == 0:
            return pd.DataFrame(columns=cols)
        ids = im["mask_class_ids"].to_numpy()[idx]
        pix = im["mask_class_pixels"].to_numpy()[idx]
        obj = im["mask_class_objects"].to_numpy()[idx]
        classes = sorted({int(c) for row in ids for c in row})
        cpos = {c: i for i, c in enumerate(classes)}
        P = np.zeros((len(idx), len(classes)))
        Ob = np.zeros((len(idx), len(classes)))
        for r, (ci, pi, oi) in enumerate(zip(ids, pix, obj, strict=True)):
            for c, p_, o_ in zip(ci, pi, oi if oi is not None else [0] * len(ci), strict=True):
                P[r, cpos[int(c)]] = p_
                Ob[r, cpos[int(c)]] = o_
        rng = ctx.rng("masks")
        rows = []
        groupings = [("overall", np.array(["all"] * len(idx), dtype=object))]
        for by in [c for c in ("domain", *ctx.attrs) if ctx.has(c)]:
            groupings.append((by, m[by].astype("string").to_numpy(dtype=object, na_value=None)[idx]))
        names = list(ctx.classes)
        for by, gv in groupings:
            for g in sorted({x for x in gv if x is not None}):
                sel = gv == g
                Pg, Og = P[sel], Ob[sel]
                tot = Pg.sum()
                k = len(Pg)
                boot = rng.integers(0, k, size=(_BOOT, k))
                bs = Pg[boot].sum(axis=1)  # (_BOOT, classes)
                bshare = bs / np.maximum(bs.sum(axis=1, keepdims=True), 1)
                lo, hi = np.percentile(bshare, [2.5, 97.5], axis=0)
                for c, j in cpos.items():
                    nobj = Og[:, j].sum()
                    rows.append({
                        "by": by, "group": str(g), "class": int(c),
                        "class_name": names[c] if 0 <= c < len(names) else ("ignore" if c == 255 else None),
                        "pixel_share": float(Pg[:, j].sum() / tot) if tot else np.nan,
                        "pixel_ci_low": float(lo[j]), "pixel_ci_high": float(hi[j]),
                        "mean_object_size": float(Pg[:, j].sum() / nobj) if nobj else np.nan,
                        "n_objects": int(nobj), "image_share": float((Pg[:, j] > 0).mean()), "n_images": int(k),
                    })
        return pd.DataFrame(rows, columns=cols)
