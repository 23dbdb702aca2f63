"""Helpers shared by the dashboard pages: the selected run, cached table access, escaping and charts.

Pages read run directories only through :mod:`audit.views` (and :class:`audit.rundir.RunDir`); everything
here is presentation. Tables are cached with ``st.cache_data`` keyed by the run path and the mtime of
``run.json``, so a stage that finishes invalidates them.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from audit import views
from audit.core.numfmt import format_number
from audit.errors import AuditError
from audit.rundir import RunDir

HERE = Path(__file__).resolve().parent
PAGE_FILES = {
    "overview": ("app_pages/overview.py", "Overview", ":material/dashboard:"),
    "profile": ("app_pages/profile.py", "Data profile", ":material/dataset:"),
    "performance": ("app_pages/performance.py", "Per-group performance", ":material/bar_chart:"),
    "generalization": ("app_pages/generalization.py", "Generalization", ":material/travel_explore:"),
    "calibration": ("app_pages/calibration.py", "Calibration", ":material/tune:"),
    "gallery": ("app_pages/gallery.py", "Failure gallery", ":material/photo_library:"),
    "slices": ("app_pages/slices.py", "Slices", ":material/scatter_plot:"),
    "mitigation": ("app_pages/mitigation.py", "What closes the gap", ":material/healing:"),
    "compare": ("app_pages/compare.py", "Compare runs", ":material/compare_arrows:"),
}
SEVERITY_COLOR = {"critical": "red", "warning": "orange", "info": "blue"}
EVIDENCE_COLORS = alt.Scale(domain=["ok", "insufficient", "empty"], range=["#4c78a8", "#c8c8c8", "#eeeeee"])
# Distinct colours for unordered groups (domains, attribute values): Streamlit's default range puts a dark and a
# light blue next to each other, so two domains looked alike.
CATEGORY_COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
# Which widget keys a finding's link fills in, per page (query parameter -> session-state key).
LINK_KEYS = {
    "performance": {
        "model": "pg_model",
        "protocol": "pg_protocol",
        "fold": "pg_fold",
        "scope": "pg_scope",
        "by": "pg_by",
        "metric": "pg_metric",
    },
    "calibration": {
        "model": "cl_model",
        "protocol": "cl_protocol",
        "fold": "cl_fold",
        "scope": "cl_scope",
        "by": "cl_by",
    },
    "generalization": {"model": "gn_model", "protocol": "gn_protocol", "metric": "gn_metric"},
}
NO_MODEL = (
    "This run has no model results yet. Train and evaluate a model with "
    "`audit train {run}` and then `audit metrics {run}` (or bring your own predictions: "
    "`audit metrics {run} --predictions FILE`)."
)
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=^])")


# ------------------------------------------------------------------------------------------------ text
def esc(text: object) -> str:
    """Escape a user-controlled string for Streamlit markdown (labels, captions, headers)."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def fmt(v: object, digits: int = 3, *, whole_from: float = 1000, signed: bool = False, missing: str = "—") -> str:
    """A number for display (:func:`audit.core.numfmt.format_number`); NaN / None -> an em dash (never 0).

    Whole numbers of at least ``whole_from`` are written without decimals (``2`` for counts); ``digits=0``
    writes a count (``1,003``; ``+1`` / ``-2`` / ``0`` when ``signed``); ``missing="?"`` for an unknown n.
    """
    return format_number(v, digits, nan=missing, missing=missing, whole_from=whole_from, signed=signed)


def fmt_ci(lo: object, hi: object, digits: int = 3) -> str:
    """``[lo, hi]`` of a 95% interval, or ``no interval`` when both ends are missing."""
    a, b = fmt(lo, digits), fmt(hi, digits)
    return "no interval" if a == "—" and b == "—" else f"[{a}, {b}]"


def category_scale(values: Sequence[object] | None = None) -> alt.Scale:
    """A categorical colour scale with clearly distinct colours (optionally pinned to ``values`` in order)."""
    if values is None:
        return alt.Scale(range=list(CATEGORY_COLORS))
    vals = [str(v) for v in values]
    return alt.Scale(domain=vals, range=[CATEGORY_COLORS[i % len(CATEGORY_COLORS)] for i in range(len(vals))])


# ------------------------------------------------------------------------------------------------ run
def _arg_run() -> str | None:
    """The run given on the command line (``-- --run PATH``), else ``$IMGAUDIT_RUN``."""
    argv = sys.argv[1:]
    for i, a in enumerate(argv):
        if a == "--run" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--run="):
            return a.split("=", 1)[1]
    return os.environ.get("IMGAUDIT_RUN") or None


@st.cache_data(show_spinner=False, ttl=30)
def _resolve(path: str) -> tuple[list[str], str]:
    runs, first = views.resolve_runs(path)
    return [str(r) for r in runs], str(first)


def runs_and_default() -> tuple[list[str], str]:
    """All run directories the sidebar offers and the one given on the command line."""
    given = st.session_state.get("imgaudit_root") or _arg_run()
    if not given:
        raise AuditError("no run directory given: start the dashboard with `audit dashboard RUN`")
    return _resolve(str(Path(given).expanduser().resolve()))


def short_name(path: str, runs: Sequence[str]) -> str:
    """A run's name relative to the common parent of all offered runs."""
    try:
        common = os.path.commonpath(list(runs)) if len(runs) > 1 else str(Path(path).parent)
        rel = os.path.relpath(path, common)
        return path if rel == "." else rel
    except ValueError:
        return path


def sidebar() -> RunDir:
    """Draw the run picker and the run's stage status in the sidebar; return the selected run."""
    runs, default = runs_and_default()
    with st.sidebar:
        st.markdown("**imgaudit**")
        current = st.session_state.get("run_choice")
        if current not in runs:
            st.session_state["run_choice"] = default
        choice = st.selectbox(
            "Run directory",
            runs,
            key="run_choice",
            format_func=lambda p: short_name(p, runs),
            help="Run directories found next to (or under) the one given on the command line.",
        )
        run = RunDir.open(choice)
        info = cached_info(choice, views.run_stamp(run))
        ds = info.get("dataset", {}) or {}
        st.caption(f"{esc(ds.get('task', '?'))} · {fmt(ds.get('n'), 0, missing='?')} samples")
        stages = run.stages()
        marks = {
            "ok": ":green[:material/check_circle:]",
            "failed": ":red[:material/error:]",
            "skipped": ":gray[:material/skip_next:]",
            "running": ":orange[:material/hourglass_top:]",
            "stale": ":orange[:material/update:]",
            "interrupted": ":red[:material/stop_circle:]",
        }
        st.caption(
            "  \n".join(
                f"{marks.get((s or {}).get('status'), ':gray[:material/radio_button_unchecked:]')} {esc(k)} "
                f"{esc((s or {}).get('status') or '')}"
                for k, s in stages.items()
            )
        )
        if (stages.get("metrics") or {}).get("status") == "stale":
            st.warning(
                f"The metrics are older than the predictions: {esc(stages['metrics'].get('reason', ''))}",
                icon=":material/update:",
            )
    return run


@st.cache_data(show_spinner=False, max_entries=32)
def cached_info(path: str, stamp: float) -> dict:
    return RunDir(path).info


def current_run() -> RunDir:
    """The run selected in the sidebar."""
    return RunDir.open(st.session_state["run_choice"])


def page(key: str):
    """The ``st.Page`` object of a page key (for ``st.page_link``)."""
    return st.session_state.get("_pages", {}).get(key, PAGE_FILES[key][0])


def finding_link(finding: dict, page_key: str) -> dict[str, str]:
    """Query parameters that make a finding's page open on its evidence (grouping, metric, model, fold, scope).

    Only the parameters the target page understands (:data:`LINK_KEYS`); the page applies them once with
    :func:`take_link`. The grouping of a finding about an intersection is its columns joined with `` x ``.
    """
    keys = LINK_KEYS.get(page_key)
    if not keys:
        return {}
    ev = finding.get("evidence") if isinstance(finding.get("evidence"), dict) else {}
    q = {
        k: str(ev[k])
        for k in ("model", "protocol", "fold", "scope", "metric")
        if isinstance(ev.get(k), (str, int)) and str(ev[k])
    }
    cols = [str(c) for c in finding.get("columns") or []]
    if cols:
        q["by"] = " x ".join(cols)
    elif list(finding.get("groups") or []) == ["all"]:
        q["by"] = "overall"
    return {k: v for k, v in q.items() if k in keys}


@st.cache_data(show_spinner=False, max_entries=16)
def _finding_links(path: str, stamp: float) -> list[dict[str, str]]:
    run = RunDir(path)
    return [finding_link(f, views.FINDING_PAGE.get(str(f.get("kind")), "overview")) for f in run.findings()]


def finding_links(run: RunDir) -> list[dict[str, str]]:
    """:func:`finding_link` of every finding, in the order of ``findings.json`` (rank - 1)."""
    return _finding_links(str(run.path), views.run_stamp(run))


def take_link(page_key: str) -> list[str]:
    """Apply the query parameters a finding's link carries to this page's widgets, once; return their names.

    The values go to session state (the widgets check them against their options and fall back when a value
    is not offered), and the parameters are removed from the URL so later choices are the user's own.
    """
    applied = []
    for param, key in LINK_KEYS.get(page_key, {}).items():
        if param in st.query_params:
            st.session_state[key] = st.query_params[param]
            applied.append(param)
            del st.query_params[param]
    return applied


@contextlib.contextmanager
def guard() -> Iterator[None]:
    """Show an audit error (damaged table, missing stage) as one red line instead of a traceback."""
    try:
        yield
    except AuditError as e:
        st.error(esc(e))


def no_model(run: RunDir) -> None:
    """Say why a model page is empty and what to run; mention a training stage that is running or failed."""
    stages = run.stages()
    for name in ("train", "metrics"):
        s = stages.get(name) or {}
        if s.get("status") == "running":
            st.info(
                f"The {name} stage is running (started {esc(s.get('started', '?'))}); this page fills in when "
                "`audit metrics` has written its tables. Reload then."
            )
            return
        if s.get("status") == "failed":
            st.error(f"The {name} stage failed: {esc(str(s.get('error', ''))[:300])}")
        if s.get("status") == "interrupted":
            st.warning(f"The {name} stage was {esc(views.stage_note(name, s)[:400])}", icon=":material/stop_circle:")
    st.info(NO_MODEL.format(run=run.path))


# ------------------------------------------------------------------------------------------------ cached reads
@st.cache_data(show_spinner=False, max_entries=64)
def _table(path: str, stamp: float, rel: str, columns: tuple[str, ...] | None) -> pd.DataFrame | None:
    return views.read(RunDir(path), rel, columns=list(columns) if columns else None)


def table(run: RunDir, rel: str, columns: Sequence[str] | None = None) -> pd.DataFrame | None:
    """A run table (``None`` if absent), cached per run path + run.json mtime."""
    return _table(str(run.path), views.run_stamp(run), rel, tuple(columns) if columns else None)


@st.cache_data(show_spinner=False, max_entries=64)
def _columns(path: str, stamp: float, rel: str) -> list[str]:
    import pyarrow.parquet as pq

    p = Path(path) / rel
    if not p.exists():
        return []
    try:
        return list(pq.read_schema(p).names)
    except Exception as e:  # damaged file: one line, like every other read
        raise AuditError(f"cannot read {p}: {e}") from None


def table_columns(run: RunDir, rel: str) -> list[str]:
    """Column names of a run table without reading it ([] if absent)."""
    return _columns(str(run.path), views.run_stamp(run), rel)


@st.cache_data(show_spinner=False, max_entries=16)
def _overview(path: str, stamp: float) -> dict:
    return views.overview(RunDir(path))


def overview(run: RunDir) -> dict:
    return _overview(str(run.path), views.run_stamp(run))


@st.cache_data(show_spinner=False, max_entries=16)
def _findings(path: str, stamp: float) -> pd.DataFrame:
    return views.findings_frame(RunDir(path))


def findings(run: RunDir) -> pd.DataFrame:
    return _findings(str(run.path), views.run_stamp(run))


@st.cache_data(show_spinner=False, max_entries=16)
def _manifest_cols(path: str, stamp: float, columns: tuple[str, ...]) -> pd.DataFrame:
    return views.read_manifest_columns(RunDir(path), list(columns))


def manifest_columns(run: RunDir, columns: Sequence[str]) -> pd.DataFrame:
    return _manifest_cols(str(run.path), views.run_stamp(run), tuple(columns))


def cached(fn, run: RunDir, **kwargs):
    """Call a ``views`` function taking a run, cached on its name, the run and the keyword arguments."""
    return _cached(fn.__name__, str(run.path), views.run_stamp(run), tuple(sorted(kwargs.items())))


@st.cache_data(show_spinner=False, max_entries=64)
def _cached(name: str, path: str, stamp: float, kwargs: tuple):
    return getattr(views, name)(RunDir(path), **dict(kwargs))


def duplicate_flags(run: RunDir, ids: Sequence[str]) -> dict[str, str]:
    """``label conflict`` or ``duplicate`` for the given sample ids found in ``profile/duplicates.parquet``."""
    d = table(run, "profile/duplicates.parquet", columns=["a", "b", "label_conflict"])
    if d is None or d.empty or not {"a", "b"} <= set(d.columns):
        return {}
    want = set(map(str, ids))
    a, b = d["a"].astype(str), d["b"].astype(str)
    hit = a.isin(want) | b.isin(want)
    if not hit.any():
        return {}
    conflict = (
        d["label_conflict"].fillna(False).astype(bool)
        if "label_conflict" in d.columns
        else pd.Series(False, index=d.index)
    )
    flags: dict[str, str] = {}
    for sa, sb, c in zip(a[hit], b[hit], conflict[hit], strict=True):
        for sid in (sa, sb):
            if sid in want and flags.get(sid) != "label conflict":
                flags[sid] = "label conflict" if c else "duplicate"
    return flags


def manifest_group_columns(run: RunDir) -> list[str]:
    """Manifest columns worth filtering or grouping on (domain, label, split, attributes)."""
    cols = cached_info(str(run.path), views.run_stamp(run)).get("dataset", {}).get("columns") or []
    if not cols:
        with contextlib.suppress(Exception):
            import pyarrow.parquet as pq

            cols = pq.read_schema(run.file("manifest.parquet")).names
    return [c for c in cols if c in ("domain", "label", "split") or str(c).startswith("attr.")]


@st.cache_data(show_spinner=False, max_entries=2048)
def thumb(path: str, mtime: float, size: int, mask: bool) -> object:
    return views.thumbnail(Path(path), size=size, mask=mask)


@st.cache_data(show_spinner=False, max_entries=1024)
def _overlay(image: str, image_mtime: float, mask: str, mask_mtime: float, size: int) -> object:
    return views.overlay(Path(image), Path(mask), size=size)


def under_run_dir(run: RunDir, relpath: object) -> Path:
    """A path stored in a run's tables (e.g. a predicted mask), refused if it resolves outside the run directory."""
    from audit.manifest import resolve_path

    return resolve_path(run.path, str(relpath))


def overlay_or_note(
    run: RunDir, image_rel: object, mask_rel: object, *, size: int = 160, mask_under_run: bool = False
) -> None:
    """Show an image with its mask blended on top, or one grey line saying why it cannot be shown."""
    if any(v is None or v is pd.NA or (isinstance(v, float) and v != v) for v in (image_rel, mask_rel)):
        st.caption("no mask" if image_rel is not None else "no file")
        return
    try:
        img = run.abspath(str(image_rel))
        mask = under_run_dir(run, mask_rel) if mask_under_run else run.abspath(str(mask_rel))
        st.image(_overlay(str(img), os.stat(img).st_mtime, str(mask), os.stat(mask).st_mtime, size), width=size)
    except AuditError as e:
        st.caption(esc(e))
    except FileNotFoundError:
        st.caption("file missing")
    except Exception as e:  # unreadable image or mask: reported by the profile, not a crash here
        st.caption(esc(f"cannot show: {type(e).__name__}"))


def image_or_note(
    run: RunDir, relpath: object, *, size: int = 160, mask: bool = False, under_run: bool = False
) -> None:
    """Show one thumbnail, or one grey line saying why it cannot be shown."""
    if relpath is None or relpath is pd.NA or (isinstance(relpath, float) and relpath != relpath):
        st.caption("no file")
        return
    try:
        full = under_run_dir(run, relpath) if under_run else run.abspath(str(relpath))
        st.image(thumb(str(full), os.stat(full).st_mtime, size, mask), width=size)
    except AuditError as e:
        st.caption(esc(e))
    except FileNotFoundError:
        st.caption("file missing")
    except Exception as e:  # an unreadable image is a finding of the profile, not a crash of the page
        st.caption(esc(f"cannot show: {type(e).__name__}"))


# ------------------------------------------------------------------------------------------------ widgets
def select(
    label: str, opts: Sequence[str], *, key: str, prefer: Sequence[str] = (), help: str | None = None, format_func=str
) -> str | None:
    """A select box that keeps its choice valid across runs (falls back to a preferred or the first option)."""
    opts = list(opts)
    if not opts:
        return None
    if st.session_state.get(key) not in opts:
        st.session_state[key] = next((p for p in prefer if p in opts), opts[0])
    return st.selectbox(label, opts, key=key, help=help, format_func=format_func)


# ------------------------------------------------------------------------------------------------ charts
def rows_height(n: int, *, per: int = 26, extra: int = 110) -> int:
    """Chart height for ``n`` rows on a discrete axis: Streamlit's height includes the axes and legend."""
    return extra + per * max(int(n), 1)


def ci_bars(
    df: pd.DataFrame,
    *,
    x_title: str,
    domain: tuple[float, float] | None = None,
    height_per: int = 30,
    color: tuple[str, alt.Scale, str] | None = None,
) -> alt.LayerChart:
    """Horizontal bars (value) with 95% interval error bars and n beside each, in the frame's row order.

    Expects ``label, value, ci_low, ci_high, n, evidence`` columns (see :func:`audit.views.group_bars`).
    ``color`` = (column, scale, legend title) colours the bars by another column than ``evidence``.
    """
    d = df.copy()
    d["n_text"] = ["n=" + fmt(n, 0, missing="?") for n in d["n"]]
    d["ci_text"] = [fmt_ci(lo, hi) for lo, hi in zip(d["ci_low"], d["ci_high"], strict=True)]
    d["_x_text"] = (
        pd.concat([pd.to_numeric(d["ci_high"], errors="coerce"), pd.to_numeric(d["value"], errors="coerce")], axis=1)
        .max(axis=1)
        .fillna(0)
    )
    order = d["label"].tolist()
    scale = alt.Scale(domain=list(domain)) if domain else alt.Scale(zero=True)
    y = alt.Y("label:N", sort=order, title=None, axis=alt.Axis(labelLimit=320))
    tooltip = [
        alt.Tooltip("group:N"),
        alt.Tooltip("value:Q", format=".3f"),
        alt.Tooltip("ci_text:N", title="95% interval"),
        alt.Tooltip("n:Q", format=","),
        alt.Tooltip("evidence:N"),
    ]
    base = alt.Chart(d).encode(y=y)
    bars = base.mark_bar().encode(
        x=alt.X("value:Q", title=x_title, scale=scale),
        color=alt.Color(
            f"{color[0] if color else 'evidence'}:N",
            scale=color[1] if color else EVIDENCE_COLORS,
            legend=alt.Legend(title=color[2] if color else "evidence", orient="top", direction="horizontal"),
        ),
        tooltip=tooltip,
    )
    err = base.mark_errorbar(ticks=True, color="#222").encode(
        x=alt.X("ci_low:Q", scale=scale, title=x_title), x2="ci_high:Q"
    )
    text = base.mark_text(align="left", dx=6, fontSize=11, color="#555").encode(
        x=alt.X("_x_text:Q", scale=scale, title=x_title), text="n_text:N"
    )
    return (bars + err + text).properties(height=rows_height(len(d), per=height_per, extra=150))


def heatmap(
    df: pd.DataFrame,
    *,
    x: str,
    y: str,
    color: str,
    text: str,
    tooltip: list,
    color_title: str,
    scheme: str = "blues",
    domain: tuple[float, float] | None = None,
    stroke_col: str | None = None,
    x_title: str | None = None,
    y_title: str | None = None,
) -> alt.LayerChart:
    """A labelled heatmap; cells where ``stroke_col`` is true get an orange outline."""
    scale = alt.Scale(scheme=scheme, domain=list(domain)) if domain else alt.Scale(scheme=scheme)
    axis_x = alt.Axis(labelAngle=-30, labelLimit=180, labelOverlap=False)
    base = alt.Chart(df).encode(
        x=alt.X(f"{x}:N", title=x_title or x, axis=axis_x),
        y=alt.Y(f"{y}:N", title=y_title or y, axis=alt.Axis(labelLimit=220, labelOverlap=False)),
    )
    enc = {"color": alt.Color(f"{color}:Q", scale=scale, title=color_title), "tooltip": tooltip}
    if stroke_col:
        enc["stroke"] = alt.condition(f"datum.{stroke_col}", alt.value("#e8590c"), alt.value(None))
        enc["strokeWidth"] = alt.condition(f"datum.{stroke_col}", alt.value(2.5), alt.value(0))
    rect = base.mark_rect().encode(**enc)
    # white text on the darker half of the colour scale, so every number stays readable
    vals = pd.to_numeric(df[color], errors="coerce") if len(df) else pd.Series(dtype=float)
    hi = domain[1] if domain else (float(vals.max()) if vals.notna().any() else 1.0)
    lo = domain[0] if domain else (float(vals.min()) if vals.notna().any() else 0.0)
    mid = lo + 0.55 * (hi - lo)
    labels = base.mark_text(fontSize=11).encode(
        text=f"{text}:N",
        color=alt.condition(f"datum.{color} > {mid}", alt.value("white"), alt.value("#111")),
    )
    n_y = df[y].nunique() if len(df) else 1
    n_x = df[x].nunique() if len(df) else 1
    return (rect + labels).properties(
        height=rows_height(n_y, per=34, extra=170), width=max(320, min(900, 90 * n_x + 200))
    )


def pq_columns(df: pd.DataFrame, extra: Sequence[str] = ()) -> dict:
    """Column config showing p- and q-values (and ``extra`` columns) in scientific notation, e.g. ``1.26e-128``.

    The default number format prints a tiny p-value as a long run of zeros cut off on the left.
    """
    return {k: st.column_config.NumberColumn(format="%.2e") for k in ("p", "q", *extra) if k in df.columns}


def download(df: pd.DataFrame, name: str, *, key: str) -> None:
    st.download_button(
        "Download as CSV", df.to_csv(index=False).encode("utf-8"), file_name=name, mime="text/csv", key=key
    )
