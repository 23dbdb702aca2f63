"""Failure gallery: misclassified samples by group and class; segmentation overlays with per-image IoU.

Only the sampled rows' images are loaded (a seeded sample of at most a few dozen), whatever the run's size.
"""

import dashlib as dl
import pandas as pd
import streamlit as st

from audit import views

SCOPES = {"held-out": True, "in-domain": False, "all": None}  # -> the held_out value kept (None: both)


def _badges(r, flags: dict[str, str]) -> str:
    """Held-out / in-domain, and a label-conflict or duplicate badge from the profile's duplicate pairs."""
    ho = r.get("held_out")
    out = (
        []
        if ho is None or ho is pd.NA or ho != ho
        else [":violet-badge[held-out]" if bool(ho) else ":gray-badge[in-domain]"]
    )
    flag = flags.get(str(r.get("sample_id")))
    if flag:
        out.append(f":{'red' if flag == 'label conflict' else 'orange'}-badge[{flag}]")
    return " ".join(out)


run = dl.current_run()
st.title("Failure gallery")
st.caption(dl.esc(run.path))

with dl.guard():
    if not run.has("predictions.parquet"):
        dl.no_model(run)
        st.stop()
    keys = dl.table(run, "predictions.parquet", columns=["model", "protocol", "fold", "role", "held_out"])
    seg = run.task == "segment"

    c = st.columns(5)
    with c[0]:
        model = dl.select("Model", views.options(keys, "model"), key="gl_model")
    k = keys[keys["model"].astype(str) == model] if model else keys
    with c[1]:
        protocol = dl.select("Protocol", views.options(k, "protocol"), key="gl_protocol", prefer=["lodo"])
    k = k[k["protocol"].astype(str) == protocol] if protocol else k
    with c[2]:
        fold = dl.select("Fold", ["(all folds)", *views.options(k, "fold")], key="gl_fold")
    with c[3]:
        role = dl.select("Role", views.options(k, "role", first=["test"]), key="gl_role", prefer=["test"])
    held = k["held_out"].astype("boolean").fillna(False) if "held_out" in k.columns else None
    scope = "all"
    with c[4]:
        if held is not None:
            scope = dl.select(
                "Scope",
                list(SCOPES),
                key="gl_scope",
                prefer=["held-out" if held.any() else "all"],
                help="held-out: predictions on the domain each fold held out of training; in-domain: on "
                "test samples of the domains it trained on; all: both.",
            )

    f = st.columns(4)
    group_cols = dl.manifest_group_columns(run)
    with f[0]:
        gcol = dl.select("Filter by", ["(none)", *group_cols], key="gl_gcol", prefer=["(none)"])
    gval = None
    if gcol and gcol != "(none)":
        vals = views.options(dl.manifest_columns(run, [gcol]), gcol)[:500]
        with f[1]:
            gval = dl.select("equal to", vals, key=f"gl_gval_{gcol}")
    true_class = None
    if not seg:
        with f[2]:
            classes = ["(any)", *map(str, run.classes())]
            tc = dl.select("True class", classes, key="gl_class")
            true_class = None if tc == "(any)" else tc
    with f[3]:
        order = dl.select("Order", ["worst first", "random (seeded)"], key="gl_order")
    g = st.columns([1, 3])
    per_image = g[0].checkbox(
        "One tile per image",
        value=True,
        key="gl_per_image",
        help="An image is scored once per fold it is a test sample in; show it once, with its "
        + ("most confident wrong prediction." if not seg else "lowest IoU."),
    )
    with g[1]:
        n_show = st.slider("Samples to show", 6, 60, 24 if not seg else 12, step=6, key="gl_n")
    kw = dict(
        model=model,
        protocol=protocol,
        fold=None if fold == "(all folds)" else fold,
        role=role,
        group_col=None if gcol == "(none)" else gcol,
        group_value=gval,
        held_out=SCOPES.get(scope),
        per_image=per_image,
        n=n_show,
        seed=0,
    )
    what = f"{scope} predictions" if held is not None else "predictions"
    what += "; one tile per image" if per_image else "; an image once per fold it was scored in"

    if not seg:
        sample, total = dl.cached(
            views.failure_sample,
            run,
            true_class=true_class,
            order="confident" if order == "worst first" else "random",
            **kw,
        )
        st.caption(
            f"{total:,} misclassified samples in this selection ({what}); showing {len(sample)} "
            f"({'most confidently wrong first' if order == 'worst first' else 'a seeded random sample'})."
        )
        if sample.empty:
            st.success("No misclassified samples in this selection.")
        flags = dl.duplicate_flags(run, sample["sample_id"].astype(str).tolist()) if len(sample) else {}
        per_row = 6
        for start in range(0, len(sample), per_row):
            cols = st.columns(per_row)
            for col, (_, r) in zip(cols, sample.iloc[start : start + per_row].iterrows(), strict=False):
                with col:
                    dl.image_or_note(run, r.get("filepath"), size=128)
                    st.caption(
                        f"{_badges(r, flags)}  \ntrue **{dl.esc(r['y_true'])}** → pred **{dl.esc(r['y_pred'])}** "
                        f"({dl.fmt(r.get('confidence'), 2)})  \n{dl.esc(r.get('test_domain', ''))} · "
                        f"{dl.esc(r['sample_id'])}"
                        + (f" · {dl.esc(r.get('fold'))}" if fold == "(all folds)" else "")
                    )
    else:
        sample, total = dl.cached(
            views.segmentation_sample, run, order="worst" if order == "worst first" else "random", **kw
        )
        flags = dl.duplicate_flags(run, sample["sample_id"].astype(str).tolist()) if len(sample) else {}
        st.caption(
            f"{total:,} images in this selection ({what}); showing {len(sample)} "
            f"({'lowest per-image IoU first' if order == 'worst first' else 'a seeded random sample'}). "
            "Per-image IoU: mean over the classes present of the stored intersection / union pixel counts."
        )
        names = run.classes()
        if names:
            st.caption(
                "Mask colours: "
                + ", ".join(
                    f"{dl.esc(n)} = {views.SEG_COLOUR_NAMES[i % len(views.SEG_COLOUR_NAMES)]}"
                    for i, n in enumerate(names)
                )
            )
        for _, r in sample.iterrows():
            with st.container(border=True):
                cols = st.columns([1, 1, 1, 2])
                with cols[0]:
                    st.caption("image")
                    dl.image_or_note(run, r.get("filepath"), size=128)
                with cols[1]:
                    st.caption("truth")
                    dl.overlay_or_note(run, r.get("filepath"), r.get("mask"), size=128)
                with cols[2]:
                    st.caption("prediction")
                    dl.overlay_or_note(run, r.get("filepath"), r.get("pred_mask"), size=128, mask_under_run=True)
                cols[3].markdown(
                    f"**IoU {dl.fmt(r.get('iou'), 3)}** · pixel accuracy {dl.fmt(r.get('pixel_acc'), 3)} "
                    f"{_badges(r, flags)}  \n"
                    f"{dl.esc(r['sample_id'])}  \ndomain {dl.esc(r.get('test_domain', ''))} · fold "
                    f"{dl.esc(r.get('fold', ''))}"
                )
