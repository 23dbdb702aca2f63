"""``report.html``: one self-contained file (inline CSS, inline SVG charts, a few base64 thumbnails).

Everything that comes from the data (labels, attribute values, file names, finding texts) is escaped with
:func:`html.escape`; no external URL is referenced. Tables and thumbnails are capped so the file stays small
for very large runs (see the ``MAX_*`` constants).
"""

from __future__ import annotations

import json
import math

import pandas as pd

from audit.headline import headline, read_optional
from audit.report.blocks import (
    MAX_FINDINGS,
    MAX_GROUPS,
    MAX_JSON_CHARS,
    MAX_ROWS,
    MAX_THUMBS,
    card,
    ci,
    e,
    num,
    section,
    table,
    thumb,
)
from audit.report.markdown import metric_label
from audit.report.mitigation import mitigation_section
from audit.report.model_sections import (
    calibration_section,
    fairness_section,
    generalization_section,
    group_metrics_section,
    sanity_section,
)
from audit.report.slices_section import slices_section
from audit.report.svg import bar_chart, heatmap
from audit.rundir import RunDir
from audit.views.overview import stage_note

__all__ = ["render_html", "MAX_ROWS", "MAX_THUMBS", "MAX_GROUPS"]

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#222;background:#fafafa;line-height:1.4}
header{background:#1f3550;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header .sub{opacity:.8;font-size:13px}
nav{background:#fff;border-bottom:1px solid #ddd;padding:6px 28px;font-size:13px;position:sticky;top:0}
nav a{margin-right:14px;color:#1f3550;text-decoration:none}
main{padding:8px 28px 40px;max-width:1200px}
section{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:12px 18px;margin:16px 0}
h2{font-size:18px;margin:4px 0 10px;color:#1f3550}h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0}
th,td{border-bottom:1px solid #eee;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f5f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid #e3e3e3;border-radius:6px;padding:8px 12px;
min-width:150px;background:#fcfcfd}.card .k{font-size:11px;color:#666;text-transform:uppercase}
.card .v{font-size:18px;font-weight:600}.card .d{font-size:11.5px;color:#555}
.sev{font-weight:600;padding:1px 6px;border-radius:3px;font-size:11px}
.sev-critical{background:#fde2e1;color:#a61b1b}.sev-warning{background:#fff1cc;color:#8a5a00}
.sev-info{background:#e3eefc;color:#1d4f91}
.muted{color:#888}.note{font-size:12px;color:#666}pre{background:#f6f8fa;padding:8px;overflow:auto;font-size:11.5px;
max-height:480px}.thumb{image-rendering:pixelated;border:1px solid #ccc;width:64px;height:64px;object-fit:contain}
details summary{cursor:pointer;color:#1f3550}.chart{display:block;margin:4px 0}
"""


# ---------------------------------------------------------------------------------------------- sections
def _overview(run: RunDir, h: dict) -> str:
    c = h["findings"]
    cards = [
        card("samples", num(h["n"]), f"task {e(h['task'])}"),
        card("domains", str(h["n_domains"]), e(", ".join(h["domains"][:6]))),
        card("classes", str(h["n_classes"]), e(", ".join(h["classes"][:6]))),
        card("findings", str(c["total"]), f"{c['critical']} critical, {c['warning']} warning, {c['info']} info"),
    ]
    if h.get("n_unreadable") is not None:
        cards.append(card("unreadable files", num(h["n_unreadable"]) if h["n_unreadable"] else "0"))
    o, w, g, a = h.get("overall"), h.get("worst_group"), h.get("largest_gap"), h.get("biggest_association")
    if o:
        cards.append(
            card(
                f"overall {e(metric_label(o['metric']))}",
                num(o["value"]),
                f"95% CI {ci(o['ci_low'], o['ci_high'])}, n={num(o['n'])} ({e(o.get('scope'))})",
            )
        )
    if w:
        cards.append(
            card(
                f"worst group {e(metric_label(w['metric']))}",
                num(w["value"]),
                f"{e(w['by'])} = {e(w['group'])}<br>95% CI {ci(w['ci_low'], w['ci_high'])}, n={num(w['n'])}",
            )
        )
    if g:
        cards.append(
            card(
                "largest generalization gap",
                num(g["gap"]),
                f"held-out {e(g['test_domain'])}: in {num(g['in_domain'])} vs out {num(g['out_domain'])}"
                f"<br>95% CI {ci(g['ci_low'], g['ci_high'])}",
            )
        )
    if a:
        cards.append(
            card(
                "strongest association",
                num(a["value"]),
                f"{e(a['a'])} x {e(a['b'])} (Cramér's V)<br>95% CI {ci(a['ci_low'], a['ci_high'])}",
            )
        )
    # the report stage is this document being written: its status is always "running" here
    stages = " ".join(f"{e(k)}=<b>{e(v)}</b>" for k, v in h["stages"].items() if k != "report")
    for name, st in run.stages().items():
        note = stage_note(name, st)
        if note and (st.get("status") in ("failed", "skipped", "interrupted") or st.get("plan")):
            stages += f"<br>{e(name)} {e(st.get('status'))}: {e(note[:600])}"
        for cname, cst in (st.get("checks") or {}).items():
            if cst.get("status") in ("failed", "skipped"):
                why = str(cst.get("error") or cst.get("reason") or "")[:300]
                stages += f"<br>{e(name)} check {e(cname)} {e(cst.get('status'))}: {e(why)}"
    probs = "".join(f'<p class="note">problem: {e(p)}</p>' for p in h.get("problems", []))
    if not h.get("models"):
        probs += '<p class="note">No model was trained on this run: model sections are omitted.</p>'
    return section(
        "overview", "Overview", f'<div class="cards">{"".join(cards)}</div><p class="note">stages: {stages}</p>{probs}'
    )


def _findings(run: RunDir) -> str:
    fs = run.findings()
    if not fs:
        return section("findings", "Findings", '<p class="muted">no findings</p>')
    rows = []
    for f in fs[:MAX_FINDINGS]:
        sev = str(f.get("severity", ""))
        fci = f.get("ci") or []
        ev = f.get("evidence") or {}
        ev_txt = json.dumps(ev, default=str)[:600] if ev else ""
        detail = e(f.get("detail", ""))
        cols = ", ".join(map(str, f.get("columns") or []))
        groups = ", ".join(map(str, f.get("groups") or []))
        rows.append(
            f'<tr><td><span class="sev sev-{e(sev)}">{e(sev)}</span></td><td>{e(f.get("kind"))}</td>'
            f"<td><b>{e(f.get('title'))}</b><br><span class='note'>{detail}</span>"
            + (
                f"<br><span class='note'>columns: {e(cols)}{'; groups: ' + e(groups) if groups else ''}</span>"
                if cols or groups
                else ""
            )
            + (f"<details><summary>evidence</summary><pre>{e(ev_txt)}</pre></details>" if ev_txt else "")
            + f'</td><td class="num">{num(f.get("value"))}</td><td>{ci(*fci) if len(fci) == 2 else ""}</td>'
            f'<td class="num">{num(f.get("n"))}</td><td>{e(f.get("stage"))}</td></tr>'
        )
    more = f'<p class="note">{len(fs) - MAX_FINDINGS} more in findings.json</p>' if len(fs) > MAX_FINDINGS else ""
    return section(
        "findings",
        f"Findings ({len(fs)}, ranked by severity)",
        "<table><tr><th>severity</th><th>kind</th><th>finding and evidence</th><th>value</th>"
        "<th>95% CI</th><th>n</th><th>stage</th></tr>" + "".join(rows) + "</table>" + more,
    )


def _datasheet(
    run: RunDir, h: dict, m: pd.DataFrame | None, images: pd.DataFrame | None, imb: pd.DataFrame | None
) -> str:
    ds = run.dataset
    parts = ["<h3>Composition</h3><table>"]
    parts.append(f"<tr><th>instances</th><td>{num(h['n'])} ({e(h['task'])})</td></tr>")
    parts.append(f"<tr><th>source format</th><td>{e(ds.get('format'))}</td></tr>")
    parts.append(f"<tr><th>fingerprint</th><td>{e(ds.get('fingerprint'))}</td></tr>")
    if m is not None:
        for col in ["label", "split", "domain"] + [c for c in m.columns if str(c).startswith("attr.")]:
            if col in m.columns:
                vc = m[col].value_counts(dropna=False)
                missing = int(m[col].isna().sum())
                txt = ", ".join(f"{k} ({v:,})" for k, v in vc.head(12).items() if k is not pd.NA and k == k)
                more = f", … {len(vc) - 12} more" if len(vc) > 12 else ""
                parts.append(
                    f"<tr><th>{e(col)}</th><td>{len(vc) - (1 if missing else 0)} values: {e(txt)}{e(more)}"
                    f"{f'; {missing:,} missing' if missing else ''}</td></tr>"
                )
        if "group" in m.columns:
            parts.append(f"<tr><th>groups (clusters)</th><td>{m['group'].nunique():,}</td></tr>")
    parts.append("</table>")
    if imb is not None and len(imb):
        parts.append(
            "<h3>Balance</h3>"
            + table(
                imb,
                [
                    "column",
                    "n_groups",
                    "imbalance_ratio",
                    "normalized_entropy",
                    "effective_n",
                    "min_group",
                    "max_group",
                ],
            )
        )
    if m is not None and "domain" in m.columns:
        parts.append("<h3>Collection domains</h3>")
        d = m.groupby("domain", dropna=False).size().rename("n").to_frame()
        if images is not None:
            im = images.set_index("sample_id").reindex(m["sample_id"])
            im.index = m.index
            im["domain"] = m["domain"]
            agg = {c: "mean" for c in ("width", "height", "brightness", "contrast", "sharpness") if c in im.columns}
            if "format" in im.columns:
                agg["format"] = lambda s: ", ".join(sorted(map(str, s.dropna().unique()))[:4])
            if "readable" in im.columns:
                im["unreadable"] = ~im["readable"].fillna(False).astype(bool)
                agg["unreadable"] = "sum"
            d = d.join(im.groupby("domain", dropna=False).agg(agg))
        parts.append(table(d.reset_index()))
    known = [f for f in run.findings() if f.get("stage") == "profile" and f.get("severity") in ("critical", "warning")]
    parts.append("<h3>Known biases and issues (from the profile)</h3>")
    if known:
        parts.append(
            "<ul>"
            + "".join(
                f"<li><span class='sev sev-{e(f.get('severity'))}'>{e(f.get('severity'))}</span> "
                f"{e(f.get('title'))}</li>"
                for f in known[:25]
            )
            + "</ul>"
        )
    else:
        parts.append(
            '<p class="muted">none at warning level or above'
            + (" (the profile has not run)" if not run.finished("profile") else "")
            + "</p>"
        )
    notes = ds.get("notes") or []
    if notes:
        parts.append("<h3>Notes from ingestion</h3><ul>" + "".join(f"<li>{e(n)}</li>" for n in notes[:20]) + "</ul>")
    return section("datasheet", "Datasheet", "".join(parts))


def _distributions(dist: pd.DataFrame | None) -> str:
    if dist is None or dist.empty:
        return ""
    out = []
    for col, g in dist.groupby("column", sort=False):
        g = g.sort_values("n", ascending=False)
        head = g.head(MAX_GROUPS)
        note = [
            f"({s * 100:.1f}%)" + (" under min_n" if st != "ok" else "")
            for s, st in zip(head["share"], head.get("status", pd.Series(["ok"] * len(head))), strict=False)
        ]
        out.append(f"<h3>{e(col)}</h3>" + bar_chart(head["group"].tolist(), head["n"].tolist(), note=note))
        if len(g) > MAX_GROUPS:
            out.append(f'<p class="note">{len(g) - MAX_GROUPS} smaller groups not drawn</p>')
    return section("distributions", "Class, attribute and intersection distributions", "".join(out))


def _associations(assoc: pd.DataFrame | None, resid: pd.DataFrame | None) -> str:
    if assoc is None or assoc.empty:
        return ""
    a = assoc[assoc["within"].isna()] if "within" in assoc.columns else assoc
    if "stat" in a.columns:
        a = a[a["stat"] == "cramers_v"]
    rows = sorted(set(a["a"].astype(str)))
    cols = sorted(set(a["b"].astype(str)))
    mat = [[math.nan] * len(cols) for _ in rows]
    for _, r in a.iterrows():
        mat[rows.index(str(r["a"]))][cols.index(str(r["b"]))] = float(r["value"])
    body = [
        "<p class='note'>Cramér's V over the whole dataset (0 = independent, 1 = determined).</p>",
        heatmap(rows, cols, mat),
    ]
    body.append(
        "<h3>All associations</h3>"
        + table(
            assoc.sort_values("value", ascending=False),
            ["a", "b", "within", "value", "ci_low", "ci_high", "p", "q", "n"],
        )
    )
    if resid is not None and len(resid):
        top = resid.reindex(resid["std_residual"].abs().sort_values(ascending=False).index).head(20)
        body.append(
            "<h3>Largest cells (standardized residuals)</h3>"
            + table(top, ["a", "b", "within", "a_value", "b_value", "observed", "expected", "std_residual", "lift"])
        )
    return section("associations", "Associations (spurious correlations)", "".join(body))


def _image_stats(
    images: pd.DataFrame | None, shift: pd.DataFrame | None, shortcuts: pd.DataFrame | None, m: pd.DataFrame | None
) -> str:
    body = []
    if images is not None and m is not None and "domain" in m.columns:
        im = images.set_index("sample_id").reindex(m["sample_id"])
        im["domain"] = m["domain"].to_numpy()
        stats = [
            c
            for c in ("brightness", "contrast", "saturation", "colorfulness", "sharpness", "entropy", "bytes")
            if c in im.columns
        ]
        if stats:
            t = im.groupby("domain", dropna=False)[stats].agg(["mean", "std"])
            t.columns = [f"{a} {b}" for a, b in t.columns]
            body.append("<h3>Per-domain image statistics (mean, std)</h3>" + table(t.reset_index()))
    if shift is not None and len(shift):
        s = shift.reindex(shift["effect"].abs().sort_values(ascending=False).index)
        body.append(
            "<h3>Covariate shift: standardized mean difference vs the rest</h3>"
            + table(s, ["by", "group", "statistic", "effect", "ks", "p", "q", "n"], limit=30)
        )
    if shortcuts is not None and len(shortcuts):
        body.append(
            "<h3>Shortcuts: predicting a target from cheap features</h3>"
            + table(shortcuts, ["target", "features", "balanced_accuracy", "ci_low", "ci_high", "chance", "n"])
        )
    return section("image-stats", "Per-domain image statistics and shortcuts", "".join(body)) if body else ""


def _duplicates(run: RunDir, dups: pd.DataFrame | None, images: pd.DataFrame | None, m: pd.DataFrame | None) -> str:
    body = []
    if dups is not None and len(dups):
        d = dups.copy()
        key = d.get("cross_split", False).astype(bool) * 2 + d.get("label_conflict", False).astype(bool) * 4
        d = d.assign(_k=key).sort_values(["_k", "distance"], ascending=[False, True])
        n_cross = int(d["cross_split"].sum()) if "cross_split" in d else 0
        n_conf = int(d["label_conflict"].sum()) if "label_conflict" in d else 0
        body.append(f"<p>{len(d):,} duplicate pairs ({n_cross:,} across splits, {n_conf:,} with different labels).</p>")
        path = m.set_index("sample_id")["filepath"] if m is not None else pd.Series(dtype=str)
        rows = []
        for _, r in d.head(MAX_THUMBS).iterrows():
            ta = thumb(run, path.get(r["a"], r["a"]))
            tb = thumb(run, path.get(r["b"], r["b"]))
            flags = ", ".join(
                x
                for x, on in (("cross-split", r.get("cross_split")), ("label conflict", r.get("label_conflict")))
                if bool(on)
            )
            rows.append(
                f"<tr><td>{ta}</td><td>{tb}</td><td>{e(r['a'])}<br>{e(r['b'])}</td><td>{e(r.get('kind'))}</td>"
                f"<td class='num'>{num(r.get('distance'))}</td><td>{e(flags)}</td></tr>"
            )
        body.append(
            "<table><tr><th>a</th><th>b</th><th>sample ids</th><th>kind</th><th>distance</th><th>flags</th></tr>"
            + "".join(rows)
            + "</table>"
        )
        if len(d) > MAX_THUMBS:
            body.append(
                "<h3>More pairs</h3>"
                + table(d.iloc[MAX_THUMBS:], ["a", "b", "kind", "distance", "cross_split", "label_conflict"])
            )
    elif dups is not None:
        body.append('<p class="muted">no duplicates found</p>')
    if images is not None and "readable" in images.columns:
        bad = images[~images["readable"].fillna(False).astype(bool)]
        if len(bad):
            body.append(
                f"<h3>Unreadable or missing files ({len(bad):,})</h3>"
                + table(bad, ["sample_id", "filepath", "error", "bytes"])
            )
    return section("duplicates", "Duplicates, leakage and broken files", "".join(body)) if body else ""


def _flagged(m: pd.DataFrame | None) -> str:
    """Manifest rows flagged at ingest (issue 23): kept, never opened, left out of training."""
    if m is None or "flag" not in m.columns or not m["flag"].notna().any():
        return ""
    bad = m[m["flag"].notna()]
    counts = ", ".join(f"{e(k)} ({v:,})" for k, v in bad["flag"].value_counts().items())
    return section(
        "flagged",
        f"Flagged manifest rows ({len(bad):,})",
        f"<p>{len(bad):,} of {len(m):,} rows are kept but not used (never opened; left out of training, reason in "
        f"train/excluded.parquet): {counts}.</p>"
        + table(bad, ["sample_id", "filepath", "flag", "listing_of", "label", "split"]),
    )


def _masks(masks: pd.DataFrame | None) -> str:
    if masks is None or masks.empty:
        return ""
    return section(
        "masks",
        "Segmentation masks: class pixel share by group",
        table(masks, ["by", "group", "class", "pixel_share", "mean_object_size", "n_images"]),
    )


def _provenance(run: RunDir) -> str:
    info = run.info
    txt = json.dumps(info, indent=2, default=str)
    if len(txt) > MAX_JSON_CHARS:
        txt = txt[:MAX_JSON_CHARS] + "\n… (truncated; see run.json)"
    return section(
        "provenance",
        "Provenance (run.json)",
        f"<p class='note'>tool {e(info.get('version'))}, created {e(info.get('created'))}, seed "
        f"{e(info.get('seed'))}, command <code>{e(' '.join(map(str, info.get('command', []))))}</code></p>"
        f"<details><summary>run.json</summary><pre>{e(txt)}</pre></details>",
    )


# ---------------------------------------------------------------------------------------------- page
def render_html(run: RunDir, *, h: dict | None = None) -> str:
    """The full report page for ``run`` as a string."""
    h = h or headline(run)
    probs: list[str] = []

    def t(rel: str) -> pd.DataFrame | None:
        return read_optional(run, rel, probs)

    try:
        m = run.manifest()
    except Exception:  # reported through headline problems
        m = None
    images, groups = t("profile/images.parquet"), t("metrics/groups.parquet")
    parts = [
        _overview(run, h),
        _findings(run),
        _datasheet(run, h, m, images, t("profile/imbalance.parquet")),
        _distributions(t("profile/distribution.parquet")),
        _associations(t("profile/associations.parquet"), t("profile/residuals.parquet")),
        _image_stats(images, t("profile/image_stats_shift.parquet"), t("profile/shortcuts.parquet"), m),
        _duplicates(run, t("profile/duplicates.parquet"), images, m),
        _flagged(m),
        _masks(t("profile/masks.parquet")),
        sanity_section(t("metrics/sanity.parquet")),
        group_metrics_section(groups, h["task"]),
        generalization_section(t("metrics/generalization.parquet"), t("metrics/transfer.parquet")),
        fairness_section(t("metrics/fairness.parquet")),
        calibration_section(t("metrics/calibration.parquet"), groups),
        slices_section(run, t("slices/slices.parquet"), t("slices/examples.parquet")),
        mitigation_section(run),
        _provenance(run),
    ]
    body = [p for p in parts if p]
    ids = [(s.split('id="', 1)[1].split('"', 1)[0], s.split("<h2>", 1)[1].split("</h2>", 1)[0]) for s in body]
    nav = "".join(f'<a href="#{i}">{title.split(" (")[0]}</a>' for i, title in ids)
    title = f"imgaudit report: {run.path.name}"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        # no network: forbid every external load even if something slipped through
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{e(title)}</title>"
        f"<style>{CSS}</style></head><body>"
        f"<header><h1>{e(title)}</h1><div class='sub'>{e(h['n'])} samples · task {e(h['task'])} · "
        f"generated by imgaudit {e(run.info.get('version'))}</div></header><nav>{nav}</nav><main>"
        + "".join(body)
        + "</main></body></html>\n"
    )
