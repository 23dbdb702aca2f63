"""Comparisons the metrics stage considers for findings: per (model, protocol, fold, scope) slice of the predictions,
the group disparities, worst groups, calibration and fairness candidates, and the generalization gaps."""



import numpy as np
import pandas as pd

from audit.metrics._bootstrap import bootstrap_pvalue
from audit.metrics.defaults import FAIRNESS_MARGIN, Q_MAX, THRESHOLDS, gap_metrics_for, primary_for
from audit.metrics.encoding import (
    SegmentationCounts,
    encode_clusters,
    encode_groups,
    encode_samples,
    resolve_metrics,
)
from audit.metrics.engine import block_statistics, compute_report
from audit.metrics.fairness import fairness_report
from audit.metrics.generalization import generalization_gap, transfer_matrix
from audit.metrics.inputs import categorical, slice_data
from audit.metrics.registry import build_metric_specs

__all__ = ["PredictionSlice", "fairness_candidates", "generalization_rows", "transfer_rows"]

class PredictionSlice:
    """One (model, protocol, fold, scope) slice of the test predictions."""

    def __init__(self, model, protocol, fold, scope, frame, task, classes, config, man):
        self.model, self.protocol, self.fold, self.scope = model, protocol, fold, scope
        self.frame = frame.reset_index(drop=True)
        self.task = task
        self.config = config
        self.man = man
        self.data, self.has_p = slice_data(self.frame, task, classes)
        self.cluster, self.n_clusters = encode_clusters(
            self.frame["group"].astype(str).to_numpy(object), len(self.frame)
        )
        self.samples = encode_samples(self.frame["sample_id"].to_numpy(object), len(self.frame))
        self.names = resolve_metrics(None, self.data)
        self.specs = build_metric_specs(self.names, self.data)
        self.key = {"model": model, "protocol": protocol, "fold": fold, "scope": scope}

    def _report(self, cols, specs=None):
        cat = categorical(self.frame, self.man, cols) if cols else None
        codes, groups, _ = (
            encode_groups(cat, len(self.frame)) if cat is not None else encode_groups(None, len(self.frame))
        )
        return compute_report(
            self.data,
            specs or self.specs,
            codes,
            groups,
            " x ".join(cols) or "overall",
            self.cluster,
            self.n_clusters,
            n_boot=self.config.n_boot,
            min_n=self.config.min_n,
            seed=self.config.seed,
            proportion_ci="auto",
            confidence=0.95,
            samples=self.samples,
        )

    def groups(self, groupings, cands) -> pd.DataFrame:
        frames = []
        overall = self._report([])
        frames.append(overall.to_frame(include_overall=False))
        primary = primary_for(self.task, self.data.C)
        for cols in groupings:
            rep = self._report(cols)
            frames.append(rep.to_frame(include_overall=False))
            if cands is not None:
                self._group_candidates(rep, cols, primary, cands)
                if self.has_p and cols == ["domain"]:
                    self._calib_candidates(rep, cols, cands)
        out = pd.concat(frames, ignore_index=True)
        for k, v in reversed(list(self.key.items())):
            out.insert(0, k, v)
        return out

    def _group_candidates(self, rep, cols, metric, cands) -> None:
        by = rep.by
        st = rep.status()[metric]
        small = [g for g in rep.groups if st[g] == "insufficient_evidence"]
        if small:
            cands.append(
                {
                    "kind": "insufficient_evidence",
                    "by": by,
                    "cols": cols,
                    "groups": small,
                    "key": self.key,
                    "metric": metric,
                    "n": [int(rep.n_by_group.loc[g, metric]) for g in small],
                    "min_n": rep.min_n,
                }
            )
        ok = [g for g in rep.groups if st[g] == "ok"]
        if len(ok) < 2:
            return
        worst, best = rep.worst(metric), rep.best(metric)
        # an intersection must add to its marginals: the worst group is judged against its siblings too
        within = self._within_marginals(cols, metric, worst["group"], len(ok)) if len(cols) > 1 else None
        pair = rep.compare(metric, best["group"], worst["group"])
        n_pairs = len(ok) * (len(ok) - 1) // 2
        cands.append(
            {
                "kind": "group_disparity",
                "by": by,
                "cols": cols,
                "groups": [worst["group"], best["group"]],
                "key": self.key,
                "metric": metric,
                "effect": pair["difference"],
                "ci": [pair["ci_low"], pair["ci_high"]],
                "p": min(1.0, pair["p"] * n_pairs) if np.isfinite(pair["p"]) else np.nan,
                "n": worst["n"],
                "values": {worst["group"]: worst["value"], best["group"]: best["value"]},
                "n_pairs": n_pairs,
                "within": within,
            }
        )
        _intersection_union(cands[-1])
        if len(ok) >= 3:
            c = rep.compare(metric, worst["group"], "rest")
            cands.append({"kind": "worst_group", "by": by, "cols": cols, "groups": [worst["group"]], "key": self.key,
                          "metric": metric, "effect": -c["difference"], "ci": [-c["ci_high"], -c["ci_low"]],
                          "p": min(1.0, c["p"] * len(ok)) if np.isfinite(c["p"]) else np.nan, "n": worst["n"],
                          "values": {worst["group"]: worst["value"], "rest": worst["value"] - c["difference"]},
                          "worst_ci": [worst["ci_low"], worst["ci_high"]], "within": within})
            _intersection_union(cands[-1])

    def _within_marginals(self, cols, metric, group, n_ok) -> list[dict]:
        """The worst group of an intersection vs its siblings along each column: the groups that share its other
        values (``scanner | navy`` vs ``scanner | black`` for the ink column, vs ``phone | navy`` and
        ``studio | navy`` for the domain column). A finding fully explained by one marginal (no difference to
        the siblings within it) adds nothing to that marginal's own finding."""
        spec = next(s for s in self.specs if s.name == metric)
        cat = categorical(self.frame, self.man, cols)
        mine = np.asarray(cat == group)
        vals = {c: self.frame[c].astype("string") for c in cols}
        first = int(np.flatnonzero(mine)[0])
        out = []
        for c in cols:
            others = [o for o in cols if o != c]
            parent = np.ones(len(self.frame), dtype=bool)
            for o in others:
                parent &= (vals[o] == vals[o].iloc[first]).fillna(False).to_numpy(bool)
            sib = parent & ~mine & vals[c].notna().to_numpy(bool)
            where = " & ".join(f"{o}={vals[o].iloc[first]}" for o in others)
            row = {"column": c, "within": where, "effect": np.nan, "ci": [np.nan, np.nan], "p": np.nan, "n": 0}
            if sib.any():
                codes = np.where(mine, 0, np.where(sib, 1, -1))
                r = compute_report(self.data, [spec], codes, ["group", "siblings"], c, self.cluster, self.n_clusters,
                                    n_boot=self.config.n_boot, min_n=self.config.min_n, seed=self.config.seed,
                                    proportion_ci="auto", confidence=0.95, rest=False, samples=self.samples)
                n_sib = int(r._n[1, 0])
                cmp_ = r.compare(metric, "siblings", "group")
                sign = 1.0 if spec.higher_is_better else -1.0
                lo, hi = sign * cmp_["ci_low"], sign * cmp_["ci_high"]
                row.update(
                    effect=sign * cmp_["difference"],
                    ci=[min(lo, hi), max(lo, hi)],
                    n=n_sib,
                    p=min(1.0, cmp_["p"] * n_ok) if np.isfinite(cmp_["p"]) and n_sib >= self.config.min_n else np.nan,
                )
            out.append(row)
        return out

    def _calib_candidates(self, rep, cols, cands) -> None:
        self._ece_candidate(self._report([], [s for s in self.specs if s.name == "ece"]), None, cands)
        ece = [s for s in self.specs if s.name == "ece"]
        if ece:
            self._ece_candidate(self._report(cols, ece), cols, cands)

    def _ece_candidate(self, rep, cols, cands) -> None:
        thr = THRESHOLDS["miscalibration"]["warning"]
        boot = rep.bootstrap("ece")
        targets = (
            [("all", -1)]
            if cols is None
            else [(g, i) for i, g in enumerate(rep.groups) if rep.status()["ece"][g] == "ok"]
        )
        for g, i in targets:
            v = float(rep.overall["ece"]) if i < 0 else float(rep.by_group["ece"].iloc[i])
            lo, hi = rep.interval("ece", None if i < 0 else g)
            n = int(rep._n[i, 0])
            p = (
                float(bootstrap_pvalue(boot[:, i][:, None], np.array([v]), null=thr, alternative="greater")[0])
                if boot is not None
                else np.nan
            )
            cands.append({"kind": "miscalibration", "by": "overall" if cols is None else rep.by, "cols": cols or [],
                          "groups": [g], "key": self.key, "metric": "ece", "effect": v, "ci": [lo, hi], "p": p, "n": n})

    def fairness(self, groupings, cands) -> pd.DataFrame:
        frames = []
        worst: dict[tuple[str, str], float] = {}  # (attribute column, metric) -> its largest class difference
        pending: list[dict] = []
        for cols in groupings:
            if cols == ["label"] or "label" in cols:
                continue  # fairness is conditional on the label already
            cat = categorical(self.frame, self.man, cols)
            f = fairness_report(
                y_true=np.asarray(self.data.classes, dtype=object)[self.data.y_true],
                y_pred=np.asarray(self.data.classes, dtype=object)[self.data.y_pred],
                sensitive=pd.Series(cat, name=" x ".join(cols)),
                classes=self.data.classes,
                clusters=self.cluster,
                n_boot=self.config.n_boot,
                min_n=self.config.min_n,
                seed=self.config.seed,
                sample_ids=self.frame["sample_id"].to_numpy(object),
                margin=FAIRNESS_MARGIN,
            )
            frames.append(f)
            if len(cols) == 1:
                for metric in ("dp_diff", "eo_diff"):
                    v = pd.to_numeric(f.loc[f["metric"] == metric, "value"], errors="coerce").max()
                    if np.isfinite(v):
                        worst[(cols[0], metric)] = float(v)
            # Fairness findings are about attributes; domain differences are generalization findings already.
            if cands is not None and "domain" not in cols:
                pending.extend(fairness_candidates(f, cols, self.key))
        if cands is not None:
            cands.extend(c for c in pending if _adds_to_marginals(c, worst))
        if not frames:
            return None
        out = pd.concat(frames, ignore_index=True)
        for k, v in reversed(list(self.key.items())):
            out.insert(0, k, v)
        return out

    def calibration(self, groupings, cands) -> pd.DataFrame | None:
        if not self.has_p:
            return None
        d = self.data
        frames = []
        for cols in [[]] + [g for g in groupings if len(g) == 1 and g != ["label"]]:
            cat = categorical(self.frame, self.man, cols) if cols else None
            codes, groups, by = encode_groups(cat, d.n) if cat is not None else encode_groups(None, d.n)
            G = len(groups)
            cell = np.where(codes < 0, G, codes)
            _, point = block_statistics(d, "calib", cell, G + 1, self.cluster, self.n_clusters)
            S = point[:G].reshape(G, -1, 3)
            e = d.bin_edges()
            nb = S.shape[1]
            lo_e = e[:nb]
            hi_e = np.append(e[1:], 1.0)[:nb]
            with np.errstate(invalid="ignore", divide="ignore"):
                conf = np.where(S[..., 0] > 0, S[..., 1] / np.maximum(S[..., 0], 1), np.nan)
                acc = np.where(S[..., 0] > 0, S[..., 2] / np.maximum(S[..., 0], 1), np.nan)
            frames.append(
                pd.DataFrame(
                    {
                        "by": "overall" if not cols else " x ".join(cols),
                        "group": np.repeat(groups, nb),
                        "bin": np.tile(np.arange(nb), G),
                        "bin_low": np.tile(lo_e, G),
                        "bin_high": np.tile(hi_e, G),
                        "confidence": conf.reshape(-1),
                        "accuracy": acc.reshape(-1),
                        "count": S[..., 0].reshape(-1).astype(np.int64),
                    }
                )
            )
        out = pd.concat(frames, ignore_index=True)
        for k, v in reversed(list(self.key.items())):
            out.insert(0, k, v)
        return out


def _adds_to_marginals(c: dict, worst: dict[tuple[str, str], float]) -> bool:
    """An intersection's fairness candidate (``background x ink``) is kept only when its interval lies above the
    largest difference of each of its attributes alone: otherwise it repeats a marginal's finding (the gap between
    two intersection cells is at least the gap its strongest attribute already shows)."""
    cols = c.get("cols") or []
    if len(cols) < 2:
        return True
    lo = c.get("ci", [np.nan])[0]
    lo = float(lo) if lo is not None else np.nan
    marg = [worst.get((col, c["metric"])) for col in cols]
    marg = [m for m in marg if m is not None]
    if not marg or not np.isfinite(lo):
        return True
    if lo <= max(marg):
        c.setdefault("evidence_extra", {})["explained_by_marginals"] = dict(zip(cols, marg, strict=False))
        return False
    return True


def _intersection_union(c: dict) -> None:
    """An intersection candidate is significant only if the main comparison and every within-marginal comparison
    are (intersection-union test): its p-value is the largest of theirs (a missing one counts as 1)."""
    if not c.get("within"):
        return
    c["p_main"] = c["p"]
    ps = [c["p"]] + [r["p"] for r in c["within"]]
    c["p"] = float(max(x if np.isfinite(x) else 1.0 for x in ps)) if np.isfinite(c["p"]) else np.nan


def fairness_candidates(f: pd.DataFrame, cols: list[str], key: dict) -> list[dict]:
    """Finding candidates (dp_diff, eo_diff) from one attribute's :func:`fairness_report` table.

    With more than two classes the candidate is one class, judged on its own difference, interval and p-value:
    the class with the largest difference among those significant after Bonferroni over the classes tested
    (on top of the group pairs), else the most significant one (which then fails the q test). Not the ``worst``
    row: a max over many classes is biased upward (with small groups some class exceeds the threshold by
    noise) and its p-value (the smallest over classes) may belong to another class than its value.
    """
    out = []
    for metric in ("dp_diff", "eo_diff"):
        rows = f[(f["metric"] == metric) & ~f["class"].isin(["macro", "worst"])]
        rows = rows[np.isfinite(rows["value"].to_numpy(float))]
        if rows.empty:
            continue
        p = rows["p"].to_numpy(float)
        tested = np.isfinite(p)
        k = max(1, int(tested.sum()))
        padj = np.where(tested, np.minimum(1.0, p * k), np.nan)
        v = rows["value"].to_numpy(float)
        sig = tested & (padj < Q_MAX)
        if sig.any():
            i = int(np.argmax(np.where(sig, v, -np.inf)))
        elif tested.any():
            i = int(np.nanargmin(padj))
        else:
            i = int(np.argmax(v))
        r = rows.iloc[i]
        binary = r["class"] == "binary"
        groups = [] if r["groups"] is None or isinstance(r["groups"], float) else str(r["groups"]).split(" vs ")
        out.append({"kind": "fairness_violation", "by": r["attribute"], "cols": cols, "groups": groups, "key": key,
                    "metric": metric, "cls": "binary" if binary else "worst", "class": str(r["class"]),
                    "n_classes": 1 if binary else k, "effect": float(r["value"]), "ci": [r["ci_low"], r["ci_high"]],
                    "p": float(padj[i]), "n": int(r["n"])})
    return out


def generalization_rows(mp, model, protocol, folds, task, classes, config, cands) -> list[dict]:
    rows = []
    pieces = [(f, mp[mp["fold"] == f]) for f in folds]
    if len(folds) > 1:
        pieces.append(("all", mp))
    for fold, fdf in pieces:
        ins = fdf[~fdf["held_out"]]
        outs = fdf[fdf["held_out"]]
        if ins.empty or outs.empty:
            continue
        targets = (
            [("all", outs)]
            if fold == "all"
            else [(str(t), o) for t, o in outs.groupby(outs["test_domain"].astype(str), sort=True)]
        )
        for test_domain, o in targets:
            sub = pd.concat([ins, o], ignore_index=True)
            data, has_p = slice_data(sub, task, classes)
            train_domains = (
                "all" if fold == "all" else "|".join(sorted({str(x) for x in fdf["train_domains"].dropna().unique()}))
            )
            for metric in gap_metrics_for(task, data.C):
                kw = (
                    {
                        "segmentation": SegmentationCounts(
                            data.inter, data.union, data.pred_px, data.true_px, data.seg_classes
                        )
                    }
                    if task == "segment"
                    else {
                        "y_true": np.asarray(data.classes, dtype=object)[data.y_true],
                        "y_pred": np.asarray(data.classes, dtype=object)[data.y_pred],
                        "classes": data.classes,
                    }
                )
                g = generalization_gap(
                    held_out=sub["held_out"].to_numpy(bool),
                    metric=metric,
                    seeds=sub["seed"].to_numpy(),
                    sample_ids=sub["sample_id"].astype(str).to_numpy(object),
                    clusters=sub["group"].astype(str).to_numpy(object),
                    n_boot=config.n_boot,
                    seed=config.seed,
                    **kw,
                )
                row = {
                    "model": model,
                    "protocol": protocol,
                    "fold": fold,
                    "train_domains": train_domains,
                    "test_domain": test_domain,
                    **g,
                }
                rows.append(row)
                if metric == primary_for(task, data.C) and fold != "all":
                    key = {"model": model, "protocol": protocol, "fold": fold, "scope": "ood"}
                    if min(row["n_in"], row["n_out"]) < config.min_n:
                        cands.append(
                            {
                                "kind": "insufficient_evidence",
                                "by": "domain",
                                "cols": ["domain"],
                                "groups": [test_domain],
                                "key": key,
                                "metric": metric,
                                "n": [row["n_in"], row["n_out"]],
                                "min_n": config.min_n,
                                "gap": row,
                            }
                        )
                    else:
                        cands.append(
                            {
                                "kind": "generalization_gap",
                                "by": "domain",
                                "cols": ["domain"],
                                "groups": [test_domain],
                                "key": key,
                                "metric": metric,
                                "effect": row["gap"],
                                "ci": [row["gap_ci_low"], row["gap_ci_high"]],
                                "p": row["p"],
                                "n": row["n_out"],
                                "row": row,
                            }
                        )
    return rows


def transfer_rows(mp, model, task, classes, config) -> pd.DataFrame | None:
    data, _ = slice_data(mp.reset_index(drop=True), task, classes)
    train = mp["fold"].astype(str).str.replace(r"^train=", "", regex=True).to_numpy(object)
    kw = (
        {"segmentation": SegmentationCounts(data.inter, data.union, data.pred_px, data.true_px, data.seg_classes)}
        if task == "segment"
        else {
            "y_true": np.asarray(data.classes, dtype=object)[data.y_true],
            "y_pred": np.asarray(data.classes, dtype=object)[data.y_pred],
            "classes": data.classes,
        }
    )
    f = transfer_matrix(
        train_domain=train,
        test_domain=mp["test_domain"].to_numpy(object),
        metric=primary_for(task, data.C),
        clusters=mp["group"].astype(str).to_numpy(object),
        n_boot=config.n_boot,
        min_n=config.min_n,
        seed=config.seed,
        **kw,
    )
    f.insert(0, "model", model)
    return f.drop(columns=["ci_method"], errors="ignore")
