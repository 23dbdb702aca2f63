"""Duplicates and leakage: exact (file bytes md5, decoded-pixels md5), near (crop/rescale/flip-robust view
hashes with local verification: :mod:`audit.profile.neardup`, :mod:`audit.profile.nearverify`, see
docs/duplicates.md), across splits, shared ``group`` across splits, and duplicates whose label, attributes or
group disagree.

``duplicates.parquet``: ``a, b, kind (exact|near), distance, cross_split, label_conflict, basis, similarity,
evidence, regions, attribute_conflicts, split_a, split_b, label_a, label_b``. ``basis``: bytes | pixels (exact),
listing (one file listed twice), for near pairs the ``+``-joined transforms found (crop, rescale, rotate, flip,
tone; resave when none) or ``phash`` (a global perceptual hash only, when the scan's descriptors are missing).
``similarity``: mean local band-pass correlation of the aligned thumbnails (1 for exact, NaN for phash).
``evidence``: exact | strong | verified | global. ``attribute_conflicts``: comma-separated attributes (and
``group``) whose values differ between the two images. Pairs are ordered ``a < b`` by sample id. An exact
cluster of ``k`` images gives all ``k(k-1)/2`` pairs up to 50 members, beyond that a star (every member with
the cluster's first). Near pairs are searched between exact-cluster representatives only, so a thousand
copies of one image do not make half a million near pairs.

Findings: ``exact_duplicate`` / ``near_duplicate`` (info, warning above 1% of images), ``split_leakage``
(critical when exact or strongly verified duplicates touch >= 1% of the smaller split involved, else warning;
global-hash-only evidence is never critical), ``group_leakage`` (the same group in several splits; critical
above 1% of groups), ``label_conflict`` and ``attribute_conflict`` (per attribute; exact: warning; near only:
info).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from audit.findings import Finding
from audit.manifest import ATTR_PREFIX, attribute_columns
from audit.profile.base import Check, CheckOutput, Context, register
from audit.profile.exact import MAX_CLIQUE, exact_clusters
from audit.profile.neardup import hamming_pairs, near_pairs

__all__ = ["Duplicates", "MAX_CLIQUE"]

_IDS = 50


@register
class Duplicates(Check):
    name = "duplicates"
    order = 50
    description = "exact and near duplicates, split leakage, group leakage, label conflicts"
    requires = ("images",)

    def run(self, ctx: Context) -> CheckOutput:
        im = ctx.images
        m = ctx.manifest
        n = len(m)
        ok = im["readable"].to_numpy(bool)
        pa, pb, kinds, basis, dist = [], [], [], [], []
        sims: list[np.ndarray] = []
        # Exact duplicates: union of byte-identical and pixel-identical clusters (audit.profile.exact).
        groups, roots = exact_clusters(im, ok)
        for g in groups:
            pa.append(g.i)
            pb.append(g.j)
            kinds.append(np.full(len(g.i), "exact", dtype=object))
            basis.append(np.full(len(g.i), g.basis, dtype=object))
            dist.append(np.zeros(len(g.i), dtype=np.int64))
            sims.append(np.ones(len(g.i)))
        # Near duplicates between exact-cluster representatives.
        ph = im["phash"]
        rep = ok & ph.notna().to_numpy() & (roots == np.arange(n))
        rep_idx = np.flatnonzero(rep)
        near, near_info = self._near(ctx, im, rep, rep_idx)
        ev = [np.full(len(x), "exact", dtype=object) for x in pa]
        regions = [np.full(len(x), -1, dtype=np.int64) for x in pa]
        if len(near["i"]):
            pa.append(near["i"])
            pb.append(near["j"])
            kinds.append(np.full(len(near["i"]), "near", dtype=object))
            basis.append(near["basis"])
            dist.append(near["distance"])
            sims.append(near["similarity"])
            ev.append(near["evidence"])
            regions.append(near["regions"])
        dup = pd.DataFrame({"ia": _cat(pa, np.int64), "ib": _cat(pb, np.int64), "kind": _cat(kinds, object),
                            "basis": _cat(basis, object), "distance": _cat(dist, np.int64),
                            "similarity": _cat(sims, float), "evidence": _cat(ev, object),
                            "regions": _cat(regions, np.int64)})
        # Exact pairs found through both bytes and pixels: keep the bytes one.
        dup = dup.drop_duplicates(["ia", "ib"], keep="first")
        out = _pair_table(m, dup)
        findings = self._findings(ctx, out, roots, ok)
        findings += _attribute_conflicts(out)
        findings += self._group_leakage(ctx)
        info = {"exact_pairs": int((out["kind"] == "exact").sum()), "near_pairs": int(len(near["i"])),
                "near_radius": int(ctx.config.near_radius), "representatives": int(len(rep_idx)), **near_info}
        return CheckOutput(tables={"duplicates": out}, findings=findings, info=info)

    @staticmethod
    def _near(ctx: Context, im: pd.DataFrame, rep: np.ndarray, rep_idx: np.ndarray) -> tuple[dict, dict]:
        """Near pairs: view hashes + local verification when the scan left descriptors, else phash only."""
        desc = ctx.extras.get("desc")
        threshold = float(ctx.config.near_dup_threshold)
        if desc is not None and len(desc[2]) == len(im) and desc[2][rep_idx].all():
            from audit.progress import Bar

            thumbs, codes, _ = desc
            st: dict = {}
            with Bar(0, f"profile: near duplicates of {len(rep_idx)} images", unit="pair") as bar:
                near = near_pairs(codes, thumbs, rep_idx, threshold=threshold, stats=st, workers=_workers(ctx),
                                  widths=im["width"].to_numpy(dtype=float, na_value=np.nan),
                                  heights=im["height"].to_numpy(dtype=float, na_value=np.nan),
                                  progress=lambda done, total: bar.update(done, total=total))
            return near, {"near_method": "views+local", "near_dup_threshold": threshold,
                          "near_candidates": st.get("candidates", 0), "near_collisions": st.get("collisions", 0)}
        i = j = d = np.empty(0, np.int64)
        if len(rep_idx) >= 2:
            h = im["phash"].to_numpy(dtype="int64", na_value=0)[rep_idx]
            i, j, d = hamming_pairs(h, int(ctx.config.near_radius))
            i, j = rep_idx[i], rep_idx[j]
        near = {"i": i, "j": j, "distance": d, "similarity": np.full(len(i), np.nan),
                "regions": np.zeros(len(i), np.int64), "basis": np.full(len(i), "phash", dtype=object),
                "evidence": np.full(len(i), "global", dtype=object)}
        return near, {"near_method": "phash", "near_candidates": int(len(i))}

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
                basis = sel["basis"].astype(str).value_counts().head(4)
                what = f"{len(sel)} near-duplicate pairs (" + ", ".join(f"{k}: {v}" for k, v in basis.items()) + ")"
            out.append(Finding(
                kind=fkind, severity="warning" if share >= 0.01 else "info", n=n_ok, value=share, score=share,
                title=f"{what}; {len(involved)} images involved ({share:.1%})",
                detail="Pairs in profile/duplicates.parquet (a, b, kind, basis, similarity, evidence, cross_split, "
                       "label_conflict, attribute_conflicts).",
                columns=["filepath"], groups=[kind],
                evidence={"pairs": int(len(sel)), "images": len(involved),
                          "examples": sel[["a", "b", "distance"]].head(10).to_dict("records")},
            ))
        cross = dup[dup["cross_split"]]
        if not cross.empty and "split" in ctx.manifest.columns:
            sizes = ctx.manifest["split"].value_counts()
            combos = (cross["split_a"].astype(str) + " | " + cross["split_b"].astype(str))
            norm = sorted({" | ".join(sorted(c.split(" | "))) for c in combos})
            leaked = {}
            worst = worst_strong = 0.0
            firm = cross["evidence"].isin(["exact", "strong"]).to_numpy(bool)  # what may make leakage critical
            for c in norm:
                s1, s2 = c.split(" | ")
                sel = cross[((cross["split_a"] == s1) & (cross["split_b"] == s2))
                            | ((cross["split_a"] == s2) & (cross["split_b"] == s1))]
                ids_small = set(sel["a"]) | set(sel["b"])
                small = min(int(sizes.get(s1, 0)), int(sizes.get(s2, 0))) or 1
                frac = len(ids_small) / 2 / small
                worst = max(worst, frac)
                sel_f = sel[firm[cross.index.get_indexer(sel.index)]]
                worst_strong = max(worst_strong, len(set(sel_f["a"]) | set(sel_f["b"])) / 2 / small)
                leaked[c] = {"pairs": int(len(sel)), "exact": int((sel["kind"] == "exact").sum()),
                             "near": int((sel["kind"] == "near").sum()),
                             "by_evidence": sel["evidence"].astype(str).value_counts().sort_index().to_dict()}
            per_pair = ", ".join(f"{k}: {v['pairs']}" for k, v in leaked.items())
            weak = int((~firm).sum())
            out.append(Finding(
                kind="split_leakage", severity="critical" if worst_strong >= 0.01 else "warning",
                n=int(len(cross)), value=float(len(cross)), score=worst,
                title=f"{len(cross)} duplicate pairs cross splits ({per_pair})",
                detail="The same (or nearly the same) image in train and evaluation inflates scores; remove or regroup."
                       + (f" {weak} of the pairs rest on weaker evidence (verified or global hash only), which alone"
                          " never makes this critical." if weak else ""),
                columns=["split"], groups=norm,
                evidence={"by_split_pair": leaked, "share_exact_or_strong": worst_strong,
                          "examples": cross[["a", "b", "kind", "basis", "evidence", "split_a",
                                             "split_b"]].head(10).to_dict("records")},
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
            evidence={"groups": sorted(bad.index.astype(str).tolist())[:_IDS],
                      "split_combinations": combos.value_counts().to_dict()},
        )]


def _workers(ctx: Context) -> int:
    from audit.core.system import usable_cores

    w = getattr(ctx.config, "workers", None)
    return max(1, int(w) if w else usable_cores())


def _cat(parts: list, dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, dtype)


def _pair_table(m: pd.DataFrame, dup: pd.DataFrame) -> pd.DataFrame:
    """The ``duplicates.parquet`` rows (``a < b``) with splits, labels and the disagreeing attributes."""
    sid = m["sample_id"].astype(str).to_numpy()
    n = len(m)
    ia, ib = dup["ia"].to_numpy(), dup["ib"].to_numpy()
    swap = sid[ia] > sid[ib]
    ia2, ib2 = np.where(swap, ib, ia), np.where(swap, ia, ib)

    def col(name):
        if name not in m.columns:
            return np.full(n, None, dtype=object)
        return m[name].astype("string").to_numpy(dtype=object, na_value=None)

    split, label = col("split"), col("label")
    out = pd.DataFrame({
        "a": pd.array(sid[ia2], dtype="string"), "b": pd.array(sid[ib2], dtype="string"),
        "kind": pd.array(dup["kind"].to_numpy(), dtype="string"),
        "basis": pd.array(dup["basis"].to_numpy(), dtype="string"),
        "distance": dup["distance"].to_numpy(np.int64), "similarity": dup["similarity"].to_numpy(float),
        "evidence": pd.array(dup["evidence"].to_numpy(), dtype="string"),
        "regions": dup["regions"].to_numpy(np.int64),
        "split_a": pd.array(split[ia2], dtype="string"), "split_b": pd.array(split[ib2], dtype="string"),
        "label_a": pd.array(label[ia2], dtype="string"), "label_b": pd.array(label[ib2], dtype="string"),
    })
    if "listing_of" in m.columns:  # the same file listed twice (issue 23): a listing, not a copy
        file_of = m["listing_of"].fillna(m["sample_id"]).astype(str).to_numpy()
        out.loc[file_of[ia2] == file_of[ib2], "basis"] = "listing"

    def differ(x, y):
        return pd.Series((x != None) & (y != None) & (x != y), dtype=bool)  # noqa: E711 (object arrays)

    out["cross_split"] = differ(split[ia2], split[ib2]).to_numpy()
    out["label_conflict"] = differ(label[ia2], label[ib2]).to_numpy()
    conf = [""] * len(out)
    for name in _conflict_columns(m):
        v = col(name)
        hit = differ(v[ia2], v[ib2]).to_numpy() & (out["basis"] != "listing").to_numpy()
        for k in np.flatnonzero(hit):
            conf[k] = f"{conf[k]},{name}" if conf[k] else name
    out["attribute_conflicts"] = pd.array(conf, dtype="string")
    out = out.sort_values(["kind", "a", "b"]).reset_index(drop=True)
    return out[["a", "b", "kind", "distance", "cross_split", "label_conflict", "basis", "similarity", "evidence",
                "regions", "attribute_conflicts", "split_a", "split_b", "label_a", "label_b"]]


def _conflict_columns(m: pd.DataFrame) -> list[str]:
    """Attributes, and ``group`` unless it is the default one group per sample."""
    cols = list(attribute_columns(m))
    if "group" in m.columns:
        g = m["group"].astype("string")
        if not (g.fillna("") == m["sample_id"].astype("string")).all():
            cols.append("group")
    return cols


def _attribute_conflicts(dup: pd.DataFrame) -> list[Finding]:
    """One ``attribute_conflict`` finding per attribute and duplicate kind whose copies disagree."""
    out: list[Finding] = []
    if dup.empty:
        return out
    names = sorted({x for v in dup["attribute_conflicts"].dropna() for x in str(v).split(",") if x})
    for name in names:
        hit = dup["attribute_conflicts"].fillna("").str.split(",").apply(lambda xs, nm=name: nm in xs)
        for kind, sev in (("exact", "warning"), ("near", "info")):
            conf = dup[hit.to_numpy(bool) & (dup["kind"] == kind).to_numpy(bool)]
            if conf.empty:
                continue
            what = "identical" if kind == "exact" else "near-identical"
            label = name.removeprefix(ATTR_PREFIX)
            out.append(Finding(
                kind="attribute_conflict", severity=sev, n=int(len(conf)), value=float(len(conf)),
                score=float(len(conf)),
                title=f"{len(conf)} {what} image pair{'s' if len(conf) > 1 else ''} disagree on {label}",
                detail=f"The same picture carries two values of {label}; at most one is right. Pairs in "
                       "profile/duplicates.parquet (attribute_conflicts).",
                columns=[name], groups=[kind],
                evidence={"attribute": name, "pairs": conf[["a", "b", "kind", "basis"]].head(_IDS).to_dict("records"),
                          "id_extra": kind},
            ))
    return out
