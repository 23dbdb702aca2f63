"""The "Hidden slices" block of report.html (``audit slices``; docs/slices.md): the slices table and, for the
confirmed ones, a few example thumbnails. Everything user-controlled is escaped by :mod:`audit.report.blocks`."""

from __future__ import annotations

import pandas as pd

from audit.report.blocks import ci, e, num, section, table, thumb
from audit.rundir import RunDir

__all__ = ["slices_section"]

MAX_SLICES_SHOWN = 4  # confirmed slices with thumbnails
THUMBS_PER_SLICE = 8  # the dashboard's Slices page shows all 16


def slices_section(run: RunDir, slices: pd.DataFrame | None, examples: pd.DataFrame | None) -> str:
    if slices is None:
        return ""
    if slices.empty:
        return section("slices", "Hidden slices", '<p class="muted">slice discovery found no candidate slice</p>')
    s = slices.sort_values(["confirmed", "gap"], ascending=[False, False], kind="stable").copy()
    s["interval"] = [ci(lo, hi) for lo, hi in zip(s["ci_low"], s["ci_high"], strict=True)]
    n_conf = int(s["confirmed"].astype(bool).sum())
    body = [f"<p>{n_conf} of {len(s)} candidate slice(s) confirmed. Each slice was found on one half of the "
            "held-out predictions (error-aware clustering of penultimate-layer embeddings) and measured on the "
            "other half: gap = rest accuracy - slice accuracy with a 95% bootstrap interval; q = BH over all "
            "candidates; confirmed = q &lt; 0.05, interval above 0, n &ge; min_n.</p>",
            table(s, ["slice_id", "confirmed", "n_confirm", "accuracy", "rest_accuracy", "gap", "interval", "q",
                      "description"])]
    for r in s[s["confirmed"].astype(bool)].head(MAX_SLICES_SHOWN).itertuples():
        ex = examples[examples["slice_id"] == r.slice_id].sort_values("rank") if examples is not None else None
        thumbs = "".join(
            f'<figure style="display:inline-block;margin:2px">{thumb(run, x.filepath)}'
            f'<figcaption class="muted">{"error" if not x.correct else "correct"}</figcaption></figure>'
            for x in (ex.head(THUMBS_PER_SLICE).itertuples() if ex is not None else [])
        )
        body.append(f"<h3>{e(r.slice_id)}: accuracy {num(r.accuracy)} vs {num(r.rest_accuracy)}</h3>"
                    f"<p>{e(r.description)}</p><div>{thumbs}</div>")
    return section("slices", "Hidden slices (discovered and confirmed on held-out halves)", "".join(body))
