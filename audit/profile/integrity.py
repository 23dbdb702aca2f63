"""Integrity: unreadable, missing and oversized files, mode mixes, EXIF orientation, extension mismatches.

Reads ``images.parquet`` only. One finding per problem type, listing the affected sample ids (the first 50
in ``evidence``; the full list is ``images.parquet`` filtered on ``error``).
"""

from __future__ import annotations

import pandas as pd

from audit.findings import Finding
from audit.profile.base import Check, CheckResult, Context, register

__all__ = ["Integrity"]

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

    def run(self, ctx: Context) -> CheckResult:
        im = ctx.images
        n = len(im)
        out: list[Finding] = []
        err = im["error"]

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
                title=f"{k} image{'s' if k > 1 else ''} above max_pixels={ctx.config.max_pixels:,} refused without decoding",
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
        return CheckResult(findings=out)

    @staticmethod
    def _mode_mix(ctx: Context, im: pd.DataFrame, ok) -> list[Finding]:
        if ok.sum() == 0:
            return []
        kind = im.loc[ok, "mode"].astype(str) + im.loc[ok, "bit_depth"].map(lambda b: "" if b in (8, None) or pd.isna(b) else f"/{int(b)}bit")
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
