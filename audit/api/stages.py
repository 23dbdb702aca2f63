"""The stage functions of the Python API: ``audit.profile``, ``audit.train``, ``audit.metrics``, ``audit.report``,
and ``audit.run`` (``audit.check`` is in :mod:`audit.api.policy`).

Each takes its CLI command's options as keyword-only arguments with the same names and defaults (``--n-boot`` is
``n_boot``; the repeatable ``--attr``, ``--check`` and ``--by`` are ``attrs``, ``checks`` and ``by``), builds the
stage's typed config (``ReadConfig`` here, ``audit.profile.ProfileConfig``, ``audit.train.TrainConfig``,
``audit.metrics.MetricsConfig``) and runs the stage through ``audit.pipeline`` as the CLI does. An unknown keyword
raises ``TypeError`` naming it (and the closest valid name); a value no stage accepts raises
``audit.errors.UsageError``. Nothing is printed but the stages' progress lines; each function returns a
``Run`` to read the results from.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.api._common import RunLike, _keywords, _rundir
from audit.api.run import Run
from audit.core.config import build_config
from audit.errors import UsageError
from audit.rundir import RunDir

__all__ = ["profile", "train", "metrics", "report", "run", "ReadConfig"]



# ------------------------------------------------------------------------------------------- configs
@dataclass(frozen=True, kw_only=True)
class ReadConfig:
    """How to read a dataset into a run directory: the reading options of ``audit profile`` and ``audit run``.

    Column roles (``label``, ``domain``, ``split``, ``group``, ``attrs``, ``path_col``, ``mask``, ``id_col``) name
    columns of a table; the reader options (``root``, ``layout``, ``pattern``, ``recipe``, ``image_dir``,
    ``mask_dir``, ``dataset``) are described in docs/readers.md.
    """

    format: str = "auto"
    label: str | None = None
    domain: str | None = None
    split: str | None = None
    group: str | None = None
    attrs: tuple[str, ...] = ()
    path_col: str | None = None
    mask: str | None = None
    id_col: str | None = None
    root: Path | None = None
    layout: str | None = None
    pattern: str | None = None
    recipe: Path | None = None
    image_dir: str | None = None
    mask_dir: str | None = None
    dataset: str | None = None
    allow_outside_root: bool = False
    strict: bool = False

    def __post_init__(self) -> None:
        attrs = (self.attrs,) if isinstance(self.attrs, str) else tuple(self.attrs or ())
        if not all(isinstance(a, str) and a for a in attrs):
            raise UsageError(f"attrs must be column names, got {self.attrs!r}")
        object.__setattr__(self, "attrs", attrs)
        for name in ("root", "recipe"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, Path(v))

    def options(self):
        """The readers' ``ReadOptions`` for these settings."""
        from audit.manifest import Roles
        from audit.readers import ReadOptions

        roles = Roles(filepath=self.path_col, label=self.label, mask=self.mask, split=self.split, domain=self.domain,
                      group=self.group, sample_id=self.id_col, attrs=list(self.attrs))
        return ReadOptions(roles=roles, root=self.root, layout=self.layout, pattern=self.pattern, recipe=self.recipe,
                           image_dir=self.image_dir, mask_dir=self.mask_dir, dataset_name=self.dataset,
                           allow_outside_root=self.allow_outside_root, strict=self.strict)


def _fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.init)


def _pick(values: dict[str, Any], cls: type) -> dict[str, Any]:
    names = _fields(cls)
    return {k: v for k, v in values.items() if k in names}


def _as_dict(cfg: Any) -> dict[str, Any]:
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.init}


def _profile_config(values: dict[str, Any]):
    from audit.profile import ProfileConfig

    values = dict(values)
    if values.get("checks") is not None:
        values["checks"] = [values["checks"]] if isinstance(values["checks"], str) else list(values["checks"])
    return build_config(ProfileConfig, "profile", **_pick(values, ProfileConfig))


def _command(name: str, data: Any, values: dict[str, Any]) -> list[str]:
    """Provenance for run.json: the call with the keywords that differ from their defaults."""
    params = inspect.signature(globals()[name]).parameters

    def default(k: str, v: Any) -> bool:
        d = params[k].default
        try:
            return d is v or bool(d == v)
        except Exception:  # a value that does not compare to its default: record it
            return False

    given = [f"{k}={v!r}" for k, v in values.items() if k in params and k != "data" and not default(k, v)]
    return [f"audit.{name}", repr(str(data)) if data is not None else "None", *given]


def _ingest(data: Any, out: str | os.PathLike, read: ReadConfig, seed: int, command: list[str]) -> RunDir:
    from audit import pipeline

    return pipeline.ingest(data, out=Path(out), format=read.format, options=read.options(), seed=seed,
                           command=command)


# ------------------------------------------------------------------------------------------- stages
@_keywords
def profile(
    data: str | os.PathLike | None = None,
    *,
    out: str | os.PathLike,
    format: str = "auto",
    label: str | None = None,
    domain: str | None = None,
    split: str | None = None,
    group: str | None = None,
    attrs: Sequence[str] = (),
    path_col: str | None = None,
    mask: str | None = None,
    id_col: str | None = None,
    root: str | os.PathLike | None = None,
    layout: str | None = None,
    pattern: str | None = None,
    recipe: str | os.PathLike | None = None,
    image_dir: str | None = None,
    mask_dir: str | None = None,
    dataset: str | None = None,
    allow_outside_root: bool = False,
    strict: bool = False,
    min_n: int = 30,
    seed: int = 0,
    workers: int | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    checks: Sequence[str] | None = None,
    near_radius: int = 6,
    near_dup_threshold: float = 0.8,
    depth: int = 3,
    n_boot: int = 1000,
    max_pixels: int = 89_478_485,
) -> Run:
    """Read a dataset into the run directory ``out`` and profile it (``audit profile``).

    Imbalance, associations, shifts, duplicates, leakage, broken files and shortcuts; a check that fails is
    recorded and the others still run.

    Parameters
    ----------
    data
        Image folder or table (CSV, Parquet, JSON lines); None with ``recipe`` or ``dataset``.
    out
        Run directory to write (created, or reused when it holds the same dataset).
    format
        ``auto``, ``imagefolder``, ``table``, ``pattern``, ``segdir``, ``recipe`` or ``fiftyone``.
    label, domain, split, group
        Columns holding the class label, the domain (the held-out unit), the given split (train/val/test) and the
        cluster (subject, patient...).
    attrs
        Attribute columns to audit.
    path_col, mask, id_col
        Columns holding image paths (default: guessed), mask paths (segmentation) and sample ids.
    root
        Dataset root the paths are relative to.
    layout, pattern, recipe, image_dir, mask_dir, dataset
        Reader options: folder levels (``domain/label``), a regex or ``{field}`` template over relative paths, a
        ``datasets/*.toml`` recipe, the segmentation image and mask folders, a FiftyOne dataset name.
    allow_outside_root, strict
        Allow paths outside the dataset root; refuse the data (``InputError`` listing every flagged row) instead
        of profiling flagged rows as findings.
    min_n, seed, workers
        Smallest group size to draw a conclusion from; seed of every random choice; worker processes (default:
        the usable cores).
    engine, ray_address
        ``local``, or ``ray`` for a Ray cluster (at ``ray_address``).
    checks
        Run only these checks (default: all).
    near_radius, near_dup_threshold
        Hamming radius (of 64 bits) for near-duplicate candidates; local similarity a near-duplicate pair needs.
    depth, n_boot, max_pixels
        Deepest intersection in the distribution table; bootstrap resamples for intervals; images with more
        pixels are refused undecoded (decompression bombs).

    Returns
    -------
    Run
        The run directory, with ``manifest.parquet``, ``profile/*.parquet`` and the findings.

    Examples
    --------
    >>> import audit
    >>> run = audit.profile("data/pets.csv", out="runs/pets", label="breed", domain="site")  # doctest: +SKIP
    >>> run.findings[["severity", "check", "title"]].head()                                 # doctest: +SKIP
    """
    values = dict(locals())
    read = build_config(ReadConfig, "profile", **_pick(values, ReadConfig))
    cfg = _profile_config(values)
    from audit import pipeline

    rd = _ingest(data, out, read, seed, _command("profile", data, values))
    try:
        pipeline.profile_stage(rd, required=True, **_as_dict(cfg))
    finally:
        rd.unlock()
    return Run(rd.path)


@_keywords
def train(
    run: RunLike,
    *,
    task: str | None = None,
    model: str | None = None,
    protocol: str = "lodo",
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    image_size: int | None = None,
    device: str = "auto",
    seeds: int = 1,
    seed: int = 0,
    weights: str | os.PathLike | None = None,
    pretrained: bool = False,
    compile: bool = False,
    balanced: bool = False,
    workers: int | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    distributed: int = 0,
    mode: str = "auto",
    seg_loss: str = "auto",
    time_budget: str | float | None = None,
) -> Run:
    """Train and evaluate classifiers or segmenters across held-out domains (``audit train``).

    Needs the ``[train]`` extra: without torch this raises ``audit.errors.MissingExtraError`` (a ``UsageError``)
    saying ``pip install 'imgaudit[train]'``.

    Parameters
    ----------
    run
        The run directory (a ``Run``, a path or a str), profiled or at least ingested.
    task
        ``classify`` or ``segment`` (default: from the data).
    model
        Model name (``audit models`` lists them; default: chosen by the image size).
    protocol
        ``lodo`` (leave one domain out), ``split`` (the given or a random split) or ``transfer``.
    epochs
        Training epochs. None: 8, which the plan may lower to fit ``time_budget`` (as when ``--epochs`` is not given).
    batch_size, lr, image_size
        None: the model's defaults and the images' own size (small models) or up to 224.
    device
        ``auto``, ``cpu``, ``cuda`` or ``mps``.
    seeds
        Repeat training with this many seeds.
    seed
        The first seed.
    weights, pretrained
        A pretrained weights file (.pth), or torchvision weights from torch's cache.
    compile
        ``torch.compile`` the model.
    balanced
        Class-balanced sampling.
    workers
        Worker processes (default: all cores).
    engine, ray_address
        ``local``, or ``ray`` for inference on a Ray cluster (at ``ray_address``).
    distributed
        Train with torch DDP in this many processes (one per GPU) via torchrun; 0: one process.
    mode
        ``auto`` (planned), ``probe`` (frozen pretrained backbone and a linear head) or ``finetune``.
    seg_loss
        Segmentation loss: ``auto``, ``ce`` or ``dice_ce``.
    time_budget
        Wall time the plan should fit: seconds, ``"15m"``, ``"1h30m"`` or ``"none"`` (default: 15 minutes on a
        CPU, unlimited on a GPU); only what was not chosen (model, image size, epochs) is reduced.

    Returns
    -------
    Run
        The same run directory, now with ``predictions.parquet``.
    """
    values = dict(locals())
    rd = _rundir(values.pop("run"))
    distributed = values.pop("distributed")
    if values["weights"] is not None:
        values["weights"] = Path(values["weights"])
    if values["epochs"] is None:  # the default epochs, which the plan may lower to fit the time budget
        values.pop("epochs")
        values["auto_epochs"] = True
    from audit.train.config import train_config  # raises MissingExtraError without torch

    cfg = train_config(**values)
    from audit import pipeline

    if distributed:
        from audit.train.ddp import train_distributed

        train_distributed(rd.path, distributed, cfg)  # every field of cfg reaches the ranks
    else:
        try:
            pipeline.train_stage(rd, required=True, **_as_dict(cfg))
        finally:
            rd.unlock()
    return Run(rd.path)


@_keywords
def metrics(
    run: RunLike,
    *,
    by: str | Sequence[str] | None = None,
    min_n: int = 30,
    predictions: str | os.PathLike | None = None,
    n_boot: int = 1000,
    depth: int = 2,
    seed: int = 0,
) -> Run:
    """Per-group metrics, generalization gaps and fairness, each with n and a 95% interval (``audit metrics``).

    Runs without torch on predictions from any model (``predictions``, columns in docs/formats.md).

    Parameters
    ----------
    run
        The run directory (a ``Run``, a path or a str).
    by
        Grouping columns (``domain``, ``label``, an attribute; ``a:b`` for an intersection). None: domain, label,
        each attribute and their intersections up to ``depth``.
    min_n
        Groups with fewer samples get status ``insufficient_evidence``.
    predictions
        A predictions file (Parquet or CSV) to use instead of the run's own ``predictions.parquet``.
    n_boot
        Bootstrap resamples.
    depth
        Deepest intersection of attributes.
    seed
        Seed of every bootstrap.

    Returns
    -------
    Run
        The same run directory, now with ``metrics/*.parquet`` and the metrics findings.
    """
    from audit import pipeline
    from audit.metrics import MetricsConfig

    rd = _rundir(run)
    cfg = build_config(MetricsConfig, "metrics", by=[by] if isinstance(by, str) else (list(by) if by else None),
                       min_n=min_n, predictions=Path(predictions) if predictions is not None else None,
                       n_boot=n_boot, depth=depth, seed=seed)
    if cfg.predictions is None and not rd.has("predictions.parquet"):
        raise UsageError(f"{rd.path} has no predictions yet: train a model with audit.train(run), or bring your own "
                         "with audit.metrics(run, predictions=FILE) (columns: docs/formats.md)")
    pipeline.metrics_stage(rd, required=True, **_as_dict(cfg))
    return Run(rd.path)


@_keywords
def report(run: RunLike) -> Path:
    """Write ``RUN/report.html`` (one self-contained file) and ``RUN/summary.md`` (``audit report``).

    Parameters
    ----------
    run
        The run directory (a ``Run``, a path or a str).

    Returns
    -------
    pathlib.Path
        The path of ``report.html``.
    """
    from audit import pipeline

    rd = _rundir(run)
    html_path, _ = pipeline.report_stage(rd, required=True)
    return Path(html_path)


@_keywords
def run(
    data: str | os.PathLike | None = None,
    *,
    out: str | os.PathLike,
    format: str = "auto",
    label: str | None = None,
    domain: str | None = None,
    split: str | None = None,
    group: str | None = None,
    attrs: Sequence[str] = (),
    path_col: str | None = None,
    mask: str | None = None,
    id_col: str | None = None,
    root: str | os.PathLike | None = None,
    layout: str | None = None,
    pattern: str | None = None,
    recipe: str | os.PathLike | None = None,
    image_dir: str | None = None,
    mask_dir: str | None = None,
    dataset: str | None = None,
    allow_outside_root: bool = False,
    strict: bool = False,
    task: str | None = None,
    model: str | None = None,
    protocol: str = "lodo",
    epochs: int = 8,
    device: str = "auto",
    seeds: int = 1,
    min_n: int = 30,
    seed: int = 0,
    workers: int | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    mode: str = "auto",
) -> Run:
    """The whole audit: profile, train across held-out domains, metrics, slices, report (``audit run``).

    A stage that fails is recorded in run.json and the next independent ones still run; then
    ``audit.errors.StageError`` names the failed stages (``audit.open_run(out)`` reads what was written).
    Without torch the training stage fails with the extra to install and metrics is skipped.

    Parameters
    ----------
    data, out, format
        What to read and the run directory to write, as for ``audit.profile``.
    label, domain, split, group, attrs, path_col, mask, id_col
        The columns' roles, as for ``audit.profile``.
    root, layout, pattern, recipe, image_dir, mask_dir, dataset, allow_outside_root, strict
        The reader options, as for ``audit.profile``.
    task, model, protocol, epochs, device, seeds, mode
        What to train, as for ``audit.train``.
    min_n, seed, workers, engine, ray_address
        Shared by the stages.

    Returns
    -------
    Run
        The run directory with every stage's outputs and ``report.html``.
    """
    values = dict(locals())
    read = build_config(ReadConfig, "run", **_pick(values, ReadConfig))
    _profile_config(values)  # refuse a bad min_n, workers or engine before reading anything
    from audit import pipeline

    rd = _ingest(data, out, read, seed, _command("run", data, values))
    try:
        pipeline.full_audit(rd, task=task, model=model, protocol=protocol, epochs=epochs, device=device, seeds=seeds,
                            min_n=min_n, seed=seed, workers=workers, engine=engine, ray_address=ray_address, mode=mode)
    finally:
        rd.unlock()
    return Run(rd.path)
