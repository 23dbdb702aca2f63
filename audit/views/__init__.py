"""Read-only views of a run directory, shaped for display (the dashboard's data layer).

Every function here reads tables that stages wrote (see docs/formats.md) and filters, sorts, pivots, joins or
samples them. None computes a metric: numbers and their intervals come from the tables as written. The few
derived quantities are plain arithmetic on stored numbers and say so (per-image IoU from stored pixel counts,
the difference between two runs' stored values). Functions take :class:`~audit.rundir.RunDir` or DataFrames
and return DataFrames or dicts, so the dashboard can cache them with ``st.cache_data`` keyed by the run path
and the mtime of ``run.json`` (:func:`run_stamp`).

One module per consumer, all re-exported here:

- :mod:`audit.views.tables`: finding runs and reading (some columns of) their tables, shared by all
- :mod:`audit.views.overview`: headline, stages, ranked findings (overview page)
- :mod:`audit.views.profile`: distributions, intersections, associations, image statistics, duplicates
- :mod:`audit.views.performance`: per-group bars, generalization, transfer and calibration rows
- :mod:`audit.views.gallery`: failure / segmentation samples, thumbnails and overlays
- :mod:`audit.views.compare`: two runs side by side
- :mod:`audit.views.slices`: discovered slices, what separates them, example members (Slices page)
- :mod:`audit.views.mitigation`: mitigation methods side by side with their verdicts ("What closes the gap")

Example::

    from audit import views
    run = RunDir.open("runs/demo/classify")
    bars = views.group_bars(views.read(run, "metrics/groups.parquet"), by="domain", metric="accuracy")
"""

from audit.views.compare import compare_groups, compare_headline
from audit.views.gallery import (
    SEG_COLOUR_NAMES,
    SEG_PALETTE,
    colorize_mask,
    failure_sample,
    overlay,
    segmentation_sample,
    thumbnail,
)
from audit.views.mitigation import (
    VERDICT_RULE,
    mitigation_diffs,
    mitigation_meta,
    mitigation_notes,
    mitigation_view,
)
from audit.views.overview import FINDING_PAGE, PAGES, findings_frame, overview, stage_note, stage_table
from audit.views.performance import (
    calibration_curves,
    generalization_rows,
    group_bars,
    higher_is_better,
    transfer_matrix,
)
from audit.views.profile import (
    association_matrix,
    broken_files,
    distribution_bars,
    distribution_columns,
    duplicate_pairs,
    duplicate_reason,
    flagged_rows,
    image_stat_histogram,
    intersection_matrix,
    stat_histogram,
)
from audit.views.slices import slice_examples, slice_features, slice_rows
from audit.views.tables import has_model, list_runs, options, read, read_manifest_columns, resolve_runs, run_stamp

__all__ = [
    "mitigation_view",
    "mitigation_diffs",
    "mitigation_meta",
    "mitigation_notes",
    "VERDICT_RULE",
    "slice_rows",
    "slice_features",
    "slice_examples",
    "PAGES",
    "FINDING_PAGE",
    "list_runs",
    "resolve_runs",
    "run_stamp",
    "read",
    "read_manifest_columns",
    "has_model",
    "stage_table",
    "stage_note",
    "overview",
    "findings_frame",
    "higher_is_better",
    "distribution_columns",
    "distribution_bars",
    "intersection_matrix",
    "association_matrix",
    "stat_histogram",
    "image_stat_histogram",
    "duplicate_pairs",
    "duplicate_reason",
    "broken_files",
    "flagged_rows",
    "options",
    "group_bars",
    "generalization_rows",
    "transfer_matrix",
    "calibration_curves",
    "failure_sample",
    "segmentation_sample",
    "compare_groups",
    "compare_headline",
    "thumbnail",
    "colorize_mask",
    "overlay",
    "SEG_PALETTE",
    "SEG_COLOUR_NAMES",
]
