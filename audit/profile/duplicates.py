"""Duplicates and leakage: exact (file bytes md5, decoded-pixels md5), near (perceptual hash within
``config.near_radius`` bits, multi-index hashing: :mod:`audit.profile.neardup`, verified by a 16x16 grey
thumbnail correlation >= ``config.near_min_corr``, which removes look-alikes such as two different handwritten
"1"s that share a perceptual hash), across splits, shared
``group`` across splits, and duplicates with different labels.

``duplicates.parquet``: ``a, b, kind (exact|near), basis (bytes|pixels|phash; listing: one file listed twice),
distance, cross_split, label_conflict, similarity (thumbnail correlation; 1 for exact), split_a, split_b, label_a, label_b``. Pairs are ordered ``a < b`` by sample id. An exact
cluster of ``k`` images gives all ``k(k-1)/2`` pairs up to 50 members, beyond that a star (every member with
the cluster's first). Near pairs are searched between exact-cluster representatives only, so a thousand
copies of one image do not make half a million near pairs.

Findings: ``exact_duplicate`` / ``near_duplicate`` (info, warning above 1% of images), ``split_leakage``
(critical when duplicates touch >= 1% of the smaller split involved, else warning), ``group_leakage``
(the same group in several splits; critical above 1% of groups), ``label_conflict`` (exact: warning;
near only: info).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from audit.findings import Finding
from audit.profile.base import Check, CheckResult, Context, register
from audit.profile.neardup import hamming_pairs

__all__ = ["Duplicates", "MAX_CLIQUE"]

MAX_CLIQUE = 50
_IDS = 50


def thumb_similarity(thumbs, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Pearson correlation of the grey thumbnails of pairs (NaN when thumbnails are unavailable).

    Two flat thumbnails (standard deviation < 1 grey level) count as similar (1.0) when their means differ by
    less than 8 grey levels; one flat and one textured thumbnail are dissimilar (0.0).
    """
    if thumbs is None or len(i) == 0:
        return np.full(len(i), np.nan)
    arr, present = thumbs
    out = np.full(len(i), np.nan)
    ok = present[i] & present[j]
    if not ok.any():
        return out
    a = arr[i[ok]].astype(np.float64)
    b = arr[j[ok]].astype(np.float64)
    ma, mb = a.mean(axis=1, keepdims=True), b.mean(axis=1, keepdims=True)
    sa, sb = a.std(axis=1), b.std(axis=1)
    flat_a, flat_b = sa < 1, sb < 1
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = ((a - ma) * (b - mb)).mean(axis=1) / (sa * sb)
    corr = np.where(flat_a & flat_b, (np.abs(ma - mb).ravel() < 8).astype(float),
                    np.where(flat_a | flat_b, 0.0, corr))
    out[ok] = corr
    return out


def _cluster_pairs(members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = len(members)
    if k <= MAX_CLIQUE:
        i, j = np.triu_indices(k, 1)
        return members[i], members[j]
    return np.repeat(members[0], k - 1), members[1:]


@register
class Duplicates(Check):
    name = "duplicates"
    order = 50
    description = "exact and near duplicates, split leakage, group leakage, label conflicts"
    requires = ("images",)

    def run(self, ctx: Context) -> CheckResult:
        im = ctx.images
        m = ctx.manifest
        sid = m["sample_id"].astype(str).to_numpy()
        n = len(m)
        ok = im["readable"].to_numpy(bool)
        pa, pb, kinds, basis, dist = [], [], [], [], []
        sims: list[np.ndarray] = []
        # Exact duplicates: union of byte-identical and pixel-identical clusters.
        parent = np.arange(n)

        def find(x):
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for key, bname in (("md5", "bytes"), ("pixel_md5", "pixels")):
            col = im[key]
            valid = col.notna().to_numpy() & (ok | (key == "md5"))
            valid &= ~(im["error"] == "empty_file").fillna(False).to_numpy()
            sub = pd.Series(np.flatnonzero(valid), index=col[valid].astype(str).to_numpy())
            for _, idx in sub.groupby(level=0, sort=True):
                members = np.sort(idx.to_numpy())
                if len(members) < 2:
                    continue
                roots = {find(x) for x in members}
                if bname == "pixels" and len(roots) == 1:
                    continue  # already a byte-identical cluster
                for x in members[1:]:
                    ra, rb = find(members[0]), find(x)
                    if ra != rb:
                        parent[max(ra, rb)] = min(ra, rb)
                i, j = _cluster_pairs(members)
                pa.append(i)
                pb.append(j)
                kinds.append(np.full(len(i), "exact", dtype=object))
                basis.append(np.full(len(i), bname, dtype=object))
                dist.append(np.zeros(len(i), dtype=np.int64))
                sims.append(np.ones(len(i)))
        roots = np.array([find(x) for x in range(n)])
        # Near duplicates between exact-cluster representatives.
        ph = im["phash"]
        rep = ok & ph.notna().to_numpy() & (roots == np.arange(n))
        rep_idx = np.flatnonzero(rep)
        near_n = near_candidates = 0
        if len(rep_idx) >= 2 and int(ctx.config.near_radius) >= 0:
            h = ph.to_numpy(dtype="int64", na_value=0)[rep_idx]
            i, j, d = hamming_pairs(h, int(ctx.config.near_radius))
            i, j = rep_idx[i], rep_idx[j]
            near_candidates = len(i)
            sim = thumb_similarity(ctx.extras.get("thumbs"), i, j)
            keep = ~(sim < float(ctx.config.near_min_corr))  # NaN (no thumbnails) keeps the phash verdict
            i, j, d, sim = i[keep], j[keep], d[keep], sim[keep]
            near_n = len(i)
            sims.append(sim)
            pa.append(i)
            pb.append(j)
            kinds.append(np.full(len(i), "near", dtype=object))
            basis.append(np.full(len(i), "phash", dtype=object))
            dist.append(d)
        if pa:
            a, b = np.concatenate(pa), np.concatenate(pb)
            kd, bs, ds = np.concatenate(kinds), np.concatenate(basis), np.concatenate(dist)
            sm = np.concatenate(sims)
        else:
            a = b = ds = np.empty(0, np.int64)
            kd = bs = np.empty(0, object)
            sm = np.empty(0)
        # Exact pairs found through both bytes and pixels: keep the bytes one.
        dup = pd.DataFrame({"ia": a, "ib": b, "kind": kd, "basis": bs, "distance": ds, "similarity": sm})
        dup = dup.drop_duplicates(["ia", "ib"], keep="first")
        ia, ib = dup["ia"].to_numpy(), dup["ib"].to_numpy()
        swap = sid[ia] > sid[ib]
        ia2, ib2 = np.where(swap, ib, ia), np.where(swap, ia, ib)
        split = m["split"].astype("string").to_numpy(dtype=object, na_value=None) if "split" in m.columns else np.full(n, None)
        label = m["label"].astype("string").to_numpy(dtype=object, na_value=None) if "label" in m.columns else np.full(n, None)
        out = pd.DataFrame({
            "a": pd.array(sid[ia2], dtype="string"), "b": pd.array(sid[ib2], dtype="string"),
            "kind": pd.array(dup["kind"].to_numpy(), dtype="string"), "basis": pd.array(dup["basis"].to_numpy(), dtype="string"),
            "distance": dup["distance"].to_numpy(np.int64), "similarity": dup["similarity"].to_numpy(float),
            "split_a": pd.array(split[ia2], dtype="string"), "split_b": pd.array(split[ib2], dtype="string"),
            "label_a": pd.array(label[ia2], dtype="string"), "label_b": pd.array(label[ib2], dtype="string"),
        })
        if "listing_of" in m.columns:  # the same file listed twice (issue 23): a listing, not a copy
            file_of = m["listing_of"].fillna(m["sample_id"]).astype(str).to_numpy()
            out.loc[file_of[ia2] == file_of[ib2], "basis"] = "listing"
        out["cross_split"] = (out["split_a"].notna() & out["split_b"].notna() & (out["split_a"] != out["split_b"])).fillna(False).astype(bool)
        out["label_conflict"] = (out["label_a"].notna() & out["label_b"].notna() & (out["label_a"] != out["label_b"])).fillna(False).astype(bool)
        out = out.sort_values(["kind", "a", "b"]).reset_index(drop=True)
        out = out[["a", "b", "kind", "distance", "cross_split", "label_conflict", "basis", "similarity", "split_a",
                   "split_b", "label_a", "label_b"]]
        findings = self._findings(ctx, out, roots, ok)
        findings += self._group_leakage(ctx)
        info = {"exact_pairs": int((out["kind"] == "exact").sum()), "near_pairs": int(near_n),
                "near_candidates": int(near_candidates), "near_min_corr": float(ctx.config.near_min_corr),
                "near_radius": int(ctx.config.near_radius), "representatives": int(len(rep_idx))}
        return CheckResult(tables={"duplicates": out}, findings=findings, info=info)

    @staticmethod
    def _findings(ctx: Context, dup: pd.DataFrame, roots: np.ndarray, ok: np.ndarray) -> list[Finding]:
        out: list[Finding] = []
        n_ok = max(1, int(ok.sum()))
        for kind, fkind in (("exact", "exact_duplicate"), ("near", "near_duplicate")):
            sel = dup[(dup["kind"] == kind) & (dup["basis"] != "listing")]  # listings: duplicate_listing
            if sel.empty:
                continue
            involved = sorted(set(sel["a"]) | set(sel["b"]))
            share = len(involved) / n_ok
            if kind == "exact":
                m = ctx.manifest
                extra = m["listing_of"].notna().to_numpy(bool) if "listing_of" in m.columns else np.zeros(len(ok), bool)
                counts = pd.Series(roots[ok & ~extra]).value_counts()
                clusters = int((counts >= 2).sum())
                redundant = int((counts[counts >= 2] - 1).sum())
                what = f"{redundant} redundant copies in {clusters} clusters of identical images"
            else:
                what = f"{len(sel)} near-duplicate pairs (perceptual hash within {int(ctx.config.near_radius)} bits)"
            out.append(Finding(
                kind=fkind, severity="warning" if share >= 0.01 else "info", n=n_ok, value=share, score=share,
                title=f"{what}; {len(involved)} images involved ({share:.1%})",
                detail="Pairs in profile/duplicates.parquet (a, b, kind, distance, cross_split, label_conflict).",
                columns=["filepath"], groups=[kind],
                evidence={"pairs": int(len(sel)), "images": len(involved), "examples": sel[["a", "b", "distance"]].head(10).to_dict("records")},
            ))
        cross = dup[dup["cross_split"]]
        if not cross.empty and "split" in ctx.manifest.columns:
            sizes = ctx.manifest["split"].value_counts()
            combos = (cross["split_a"].astype(str) + " | " + cross["split_b"].astype(str))
            norm = sorted({" | ".join(sorted(c.split(" | "))) for c in combos})
            leaked = {}
            worst = 0.0
            for c in norm:
                s1, s2 = c.split(" | ")
                sel = cross[((cross["split_a"] == s1) & (cross["split_b"] == s2)) | ((cross["split_a"] == s2) & (cross["split_b"] == s1))]
                ids_small = set(sel["a"]) | set(sel["b"])
                small = min(int(sizes.get(s1, 0)), int(sizes.get(s2, 0))) or 1
                frac = len(ids_small) / 2 / small
                worst = max(worst, frac)
                leaked[c] = {"pairs": int(len(sel)), "exact": int((sel["kind"] == "exact").sum()),
                             "near": int((sel["kind"] == "near").sum())}
            per_pair = ", ".join(f"{k}: {v['pairs']}" for k, v in leaked.items())
            out.append(Finding(
                kind="split_leakage", severity="critical" if worst >= 0.01 else "warning",
                n=int(len(cross)), value=float(len(cross)), score=worst,
                title=f"{len(cross)} duplicate pairs cross splits ({per_pair})",
                detail="The same (or nearly the same) image in train and evaluation inflates scores; remove or regroup.",
                columns=["split"], groups=norm,
                evidence={"by_split_pair": leaked, "examples": cross[["a", "b", "kind", "split_a", "split_b"]].head(10).to_dict("records")},
            ))
        for kind, sev in (("exact", "warning"), ("near", "info")):
            conf = dup[dup["label_conflict"] & (dup["kind"] == kind)]
            if conf.empty:
                continue
            labels = sorted({" | ".join(sorted((str(r.label_a), str(r.label_b)))) for r in conf.itertuples()})
            out.append(Finding(
                kind="label_conflict", severity=sev, n=int(len(conf)), value=float(len(conf)), score=float(len(conf)),
                title=f"{len(conf)} {'identical' if kind == 'exact' else 'near-identical'} image pair"
                      f"{'s' if len(conf) > 1 else ''} with different labels",
                detail="One of each pair is probably mislabelled.",
                columns=["label"], groups=labels[:20],
                evidence={"pairs": conf[["a", "b", "label_a", "label_b", "distance"]].head(_IDS).to_dict("records"),
                          "id_extra": kind},
            ))
        return out

    @staticmethod
    def _group_leakage(ctx: Context) -> list[Finding]:
        m = ctx.manifest
        if not ctx.has("split") or "group" not in m.columns:
            return []
        sub = m[["group", "split"]].dropna()
        if (sub["group"] == m.loc[sub.index, "sample_id"]).all():
            return []  # default groups (one per sample) cannot leak
        nsplit = sub.groupby("group")["split"].nunique()
        bad = nsplit[nsplit > 1]
        if bad.empty:
            return []
        frac = len(bad) / len(nsplit)
        combos = sub[sub["group"].isin(bad.index)].groupby("group")["split"].apply(lambda s: " | ".join(sorted(set(s))))
        return [Finding(
            kind="group_leakage", severity="critical" if frac >= 0.01 else "warning",
            n=int(len(nsplit)), value=float(frac), score=float(frac),
            title=f"{len(bad)} of {len(nsplit)} groups ({frac:.1%}) have samples in more than one split",
            detail="Samples of one group (patient, subject, writer...) are correlated; splitting a group leaks it.",
            columns=["group", "split"], groups=sorted(combos.unique().tolist()),
            evidence={"groups": sorted(bad.index.astype(str).tolist())[:_IDS], "split_combinations": combos.value_counts().to_dict()},
        )]
