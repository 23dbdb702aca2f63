"""The ``audit`` command line: one thin command per stage, no logic here.

Exit codes: 0 ok, 1 policy failed (``audit check``) or a stage failed, 2 usage or input error
(one-line message, no traceback unless ``--debug``).
"""

from __future__ import annotations

import errno
import functools
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import typer

from audit import __version__
from audit.errors import AuditError

app = typer.Typer(
    name="audit",
    help="Audit image datasets for bias and measure how models trained on them generalize.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
fiftyone_app = typer.Typer(help="FiftyOne integration: export a run to a FiftyOne dataset.", no_args_is_help=True)
app.add_typer(fiftyone_app, name="fiftyone")

_STATE = {"debug": False, "quiet": False}


class Task(StrEnum):
    classify = "classify"
    segment = "segment"


class DemoTask(StrEnum):
    classify = "classify"
    segment = "segment"
    all = "all"


class Protocol(StrEnum):
    lodo = "lodo"
    split = "split"
    transfer = "transfer"


class Engine(StrEnum):
    local = "local"
    ray = "ray"


def _err(msg: str) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {msg}", markup=True)


def handle_errors(fn):
    """Turn :class:`AuditError` into a one-line message and its exit code (traceback only with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return _call(fn, *args, **kwargs)
        except AuditError as e:
            if _STATE["debug"]:
                raise
            _err(_escape(str(e)))
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt as e:  # Ctrl+C, SIGTERM, SIGHUP: the stage is already recorded "interrupted"
            from audit.core.signals import exit_code, signal_name

            sig = signal_name(e.signum) if hasattr(e, "signum") else "SIGINT"
            _err(f"interrupted by {sig}; re-run the same command to resume")
            raise typer.Exit(exit_code(e)) from None
        except typer.Exit:
            raise
        except OSError as e:
            if _STATE["debug"] or e.errno not in _ENV_ERRNOS:
                raise
            # the machine, not the tool: a full disk, a read-only or forbidden folder -> one line, exit 2
            where = f" ({e.filename})" if e.filename else ""
            _err(_escape(f"{e.strerror or e}{where}; earlier outputs are left as they were"))
            raise typer.Exit(2) from None
        except Exception as e:  # an unexpected bug: still one line, with a hint
            if _STATE["debug"]:
                raise
            _err(_escape(f"{type(e).__name__}: {e} (re-run with --debug for the traceback)"))
            raise typer.Exit(1) from None

    return wrapper


_ENV_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _call(fn, *args, **kwargs):
    """Run a command and release the run-directory locks it took, also when it fails."""
    from audit.rundir import release_locks

    try:
        return fn(*args, **kwargs)
    finally:
        release_locks()


def _escape(s: str) -> str:
    from rich.markup import escape

    return escape(s.splitlines()[0] if s else s)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"imgaudit {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars, short output.")] = False,
    progress: Annotated[
        Optional[str],
        typer.Option("--progress", help="auto (bar on a terminal, plain lines elsewhere), bar, plain or none; "
                                        "default from AUDIT_PROGRESS."),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    _STATE["debug"] = debug
    _STATE["quiet"] = quiet
    from audit.progress import MODES, set_mode, set_quiet

    if progress is not None and progress not in MODES:
        raise typer.BadParameter(f"must be one of {', '.join(MODES)}", param_hint="--progress")
    set_quiet(quiet)
    set_mode(progress)


# ---------------------------------------------------------------------------------------------- options
DataArg = Annotated[Optional[Path], typer.Argument(help="Image folder or table (CSV/Parquet/JSONL).")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")]
FormatOpt = Annotated[str, typer.Option("--format", help="Input format: auto, imagefolder, table, pattern, segdir, recipe, fiftyone.")]
LabelOpt = Annotated[Optional[str], typer.Option("--label", help="Column holding the class label.")]
DomainOpt = Annotated[Optional[str], typer.Option("--domain", help="Column holding the domain (held-out unit).")]
SplitOpt = Annotated[Optional[str], typer.Option("--split", help="Column holding the given split (train/val/test).")]
GroupOpt = Annotated[Optional[str], typer.Option("--group", help="Column holding the cluster (subject, patient...).")]
AttrOpt = Annotated[Optional[list[str]], typer.Option("--attr", help="Attribute column to audit (repeatable).")]
PathColOpt = Annotated[Optional[str], typer.Option("--path-col", help="Column holding image paths (default: guessed).")]
MaskOpt = Annotated[Optional[str], typer.Option("--mask", help="Column holding mask paths (segmentation).")]
IdOpt = Annotated[Optional[str], typer.Option("--id-col", help="Column holding sample ids (default: the path).")]
RootOpt = Annotated[Optional[Path], typer.Option("--root", help="Dataset root the paths are relative to.")]
LayoutOpt = Annotated[Optional[str], typer.Option("--layout", help="Folder levels, e.g. domain/label or label.")]
PatternOpt = Annotated[Optional[str], typer.Option("--pattern", help="Regex or {field} template over relative paths.")]
RecipeOpt = Annotated[Optional[Path], typer.Option("--recipe", help="A datasets/*.toml recipe.")]
ImageDirOpt = Annotated[Optional[str], typer.Option("--image-dir", help="Segmentation: folder of images.")]
MaskDirOpt = Annotated[Optional[str], typer.Option("--mask-dir", help="Segmentation: folder of masks.")]
DatasetOpt = Annotated[Optional[str], typer.Option("--dataset", help="FiftyOne dataset name (--format fiftyone).")]
OutsideOpt = Annotated[bool, typer.Option("--allow-outside-root", help="Allow paths outside the dataset root.")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Exit 2 listing every flagged manifest row (outside the "
                                         "root, missing, listed twice...) instead of profiling them as findings.")]
MinNOpt = Annotated[int, typer.Option("--min-n", min=1, help="Smallest group size to draw a conclusion from.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for every random choice.")]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", min=1, help="Worker processes (default: all cores).")]
EngineOpt = Annotated[Engine, typer.Option("--engine", help="local, or ray for a Ray cluster.")]
RayAddrOpt = Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster address (or RAY_ADDRESS).")]
ModeOpt = Annotated[str, typer.Option("--mode", help="auto (planned), probe (frozen pretrained backbone + linear head) "
                                      "or finetune (train from pretrained weights); docs/pretrained.md.")]


def _read_options(
    *, label, domain, split, group, attr, path_col, mask, id_col, root, layout, pattern, recipe, image_dir,
    mask_dir, dataset, allow_outside_root, strict=False,
):
    from audit.manifest import Roles
    from audit.readers import ReadOptions

    roles = Roles(
        filepath=path_col, label=label, mask=mask, split=split, domain=domain, group=group, sample_id=id_col,
        attrs=list(attr or []),
    )
    return ReadOptions(
        roles=roles, root=root, layout=layout, pattern=pattern, recipe=recipe, image_dir=image_dir,
        mask_dir=mask_dir, dataset_name=dataset, allow_outside_root=allow_outside_root, strict=strict,
    )


def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


# ---------------------------------------------------------------------------------------------- commands
@app.command()
@handle_errors
def profile(
    data: DataArg = None,
    out: OutOpt = Path("runs/latest"),
    format: FormatOpt = "auto",
    label: LabelOpt = None,
    domain: DomainOpt = None,
    split: SplitOpt = None,
    group: GroupOpt = None,
    attr: AttrOpt = None,
    path_col: PathColOpt = None,
    mask: MaskOpt = None,
    id_col: IdOpt = None,
    root: RootOpt = None,
    layout: LayoutOpt = None,
    pattern: PatternOpt = None,
    recipe: RecipeOpt = None,
    image_dir: ImageDirOpt = None,
    mask_dir: MaskDirOpt = None,
    dataset: DatasetOpt = None,
    allow_outside_root: OutsideOpt = False,
    strict: StrictOpt = False,
    min_n: MinNOpt = 30,
    seed: SeedOpt = 0,
    workers: WorkersOpt = None,
    engine: EngineOpt = Engine.local,
    ray_address: RayAddrOpt = None,
    checks: Annotated[
        Optional[list[str]], typer.Option("--check", help="Run only this check (repeatable; default: all).")
    ] = None,
    near_radius: Annotated[int, typer.Option("--near-radius", min=0, max=32, help="Hamming radius (of 64 bits) for near duplicates.")] = 6,
    near_dup_threshold: Annotated[float, typer.Option(
        "--near-dup-threshold", min=0.0, max=1.0, help="Local similarity a near-duplicate pair needs (docs/duplicates.md).",
    )] = 0.75,
    depth: Annotated[int, typer.Option("--depth", min=1, help="Deepest intersection in the distribution table.")] = 3,
    n_boot: Annotated[int, typer.Option("--n-boot", min=0, help="Bootstrap resamples for intervals.")] = 1000,
    max_pixels: Annotated[
        int, typer.Option("--max-pixels", min=1, help="Images with more pixels are refused undecoded (decompression bombs).")
    ] = 89_478_485,
) -> None:
    """Profile a dataset: imbalance, associations, shifts, duplicates, leakage, broken files, shortcuts."""
    from audit import console, pipeline

    opts = _read_options(
        label=label, domain=domain, split=split, group=group, attr=attr, path_col=path_col, mask=mask,
        id_col=id_col, root=root, layout=layout, pattern=pattern, recipe=recipe, image_dir=image_dir,
        mask_dir=mask_dir, dataset=dataset, allow_outside_root=allow_outside_root, strict=strict,
    )
    run = pipeline.ingest(data, out=out, format=format, options=opts, seed=seed)
    pipeline.profile_stage(
        run, min_n=min_n, seed=seed, workers=workers, engine=engine.value, ray_address=ray_address, required=True,
        checks=list(checks) if checks else None, near_radius=near_radius, depth=depth, n_boot=n_boot,
        max_pixels=max_pixels, near_dup_threshold=near_dup_threshold,
    )
    console.print_summary(run, stages=["profile"], console=_console())


@app.command()
@handle_errors
def run(
    data: DataArg = None,
    out: OutOpt = Path("runs/latest"),
    format: FormatOpt = "auto",
    label: LabelOpt = None,
    domain: DomainOpt = None,
    split: SplitOpt = None,
    group: GroupOpt = None,
    attr: AttrOpt = None,
    path_col: PathColOpt = None,
    mask: MaskOpt = None,
    id_col: IdOpt = None,
    root: RootOpt = None,
    layout: LayoutOpt = None,
    pattern: PatternOpt = None,
    recipe: RecipeOpt = None,
    image_dir: ImageDirOpt = None,
    mask_dir: MaskDirOpt = None,
    dataset: DatasetOpt = None,
    allow_outside_root: OutsideOpt = False,
    strict: StrictOpt = False,
    task: Annotated[Optional[Task], typer.Option("--task", help="classify or segment (default: from the data).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Model name (see `audit models`).")] = None,
    protocol: Annotated[Protocol, typer.Option("--protocol")] = Protocol.lodo,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 8,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, mps.")] = "auto",
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Repeat training with N seeds.")] = 1,
    min_n: MinNOpt = 30,
    seed: SeedOpt = 0,
    workers: WorkersOpt = None,
    engine: EngineOpt = Engine.local,
    ray_address: RayAddrOpt = None,
    mode: ModeOpt = "auto",
) -> None:
    """Run the whole audit: profile, train across held-out domains, metrics, report."""
    from audit import console, pipeline

    opts = _read_options(
        label=label, domain=domain, split=split, group=group, attr=attr, path_col=path_col, mask=mask,
        id_col=id_col, root=root, layout=layout, pattern=pattern, recipe=recipe, image_dir=image_dir,
        mask_dir=mask_dir, dataset=dataset, allow_outside_root=allow_outside_root, strict=strict,
    )
    rd = pipeline.ingest(data, out=out, format=format, options=opts, seed=seed)
    pipeline.full_audit(
        rd,
        task=task.value if task else None,
        model=model,
        protocol=protocol.value,
        epochs=epochs,
        device=device,
        seeds=seeds,
        min_n=min_n,
        seed=seed,
        workers=workers,
        engine=engine.value,
        ray_address=ray_address,
        mode=mode,
    )
    console.print_summary(rd, console=_console())


def _is_default(param: str) -> bool:
    """Whether the current command's option was left at its default (not given on the command line)."""
    src = (ctx := __import__("click").get_current_context(silent=True)) and ctx.get_parameter_source(param)
    return src is None or src.name in ("DEFAULT", "DEFAULT_MAP")


@app.command()
@handle_errors
def train(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="Run directory (from `audit profile`).")],
    task: Annotated[Optional[Task], typer.Option("--task", help="classify or segment (default: from the data).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Model name (see `audit models`).")] = None,
    protocol: Annotated[Protocol, typer.Option("--protocol")] = Protocol.lodo,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 8,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1)] = None,
    lr: Annotated[Optional[float], typer.Option("--lr")] = None,
    image_size: Annotated[Optional[int], typer.Option("--image-size", min=8, help="Square input size (default: per model).")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, mps.")] = "auto",
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Repeat training with N seeds.")] = 1,
    seed: SeedOpt = 0,
    weights: Annotated[Optional[Path], typer.Option("--weights", help="Pretrained weights file (.pth).")] = None,
    pretrained: Annotated[bool, typer.Option("--pretrained", help="Use torchvision weights from torch's cache.")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
    balanced: Annotated[bool, typer.Option("--balanced", help="Class-balanced sampling.")] = False,
    workers: WorkersOpt = None,
    engine: EngineOpt = Engine.local,
    ray_address: RayAddrOpt = None,
    distributed: Annotated[int, typer.Option("--distributed", help="Train with torch DDP in N processes (one per GPU) via torchrun.")] = 0,
    mode: ModeOpt = "auto",
    seg_loss: Annotated[str, typer.Option("--seg-loss", help="Segmentation loss: auto, ce or dice_ce (auto: Dice + "
                                          "cross-entropy when the foreground is under 15% of pixels).")] = "auto",
    time_budget: Annotated[Optional[str], typer.Option(
        "--time-budget", help="Wall time the plan should fit: seconds, 15m, 1h30m or none (default: 15m on a CPU, "
        "unlimited on a GPU); only what you did not choose (--model, --image-size, --epochs) is reduced.")] = None,
) -> None:
    """Train and evaluate classifiers or segmenters across held-out domains."""
    from audit import console, pipeline
    from audit.rundir import RunDir

    rd = RunDir.open(run_dir)
    if distributed:  # docs/scale.md: torchrun -m audit.train.ddp, one process per GPU
        from audit.train.ddp import train_distributed

        train_distributed(rd.path, distributed, engine=engine.value, task=task.value if task else None, model=model,
                          protocol=protocol.value, epochs=epochs, batch_size=batch_size, lr=lr, image_size=image_size,
                          device=device, seeds=seeds, seed=seed, weights=weights, pretrained=pretrained,
                          compile=compile, balanced=balanced, workers=workers, mode=mode)
        console.print_summary(rd, stages=["train"], console=_console())
        return
    pipeline.train_stage(
        rd,
        required=True,
        task=task.value if task else None,
        model=model,
        protocol=protocol.value,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        image_size=image_size,
        device=device,
        seeds=seeds,
        seed=seed,
        weights=weights,
        pretrained=pretrained,
        compile=compile,
        balanced=balanced,
        workers=workers,
        engine=engine.value,
        ray_address=ray_address,
        mode=mode,
        seg_loss=seg_loss,
        time_budget=time_budget,
        auto_epochs=_is_default("epochs"),
    )
    console.print_summary(rd, stages=["train"], console=_console())


@app.command()
@handle_errors
def metrics(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="Run directory.")],
    by: Annotated[Optional[list[str]], typer.Option("--by", help="Grouping column (repeatable; a:b for an intersection).")] = None,
    min_n: MinNOpt = 30,
    predictions: Annotated[Optional[Path], typer.Option("--predictions", help="Predictions file from any model.")] = None,
    n_boot: Annotated[int, typer.Option("--n-boot", min=0, help="Bootstrap resamples.")] = 1000,
    depth: Annotated[int, typer.Option("--depth", min=1, help="Deepest intersection of attributes.")] = 2,
    seed: SeedOpt = 0,
) -> None:
    """Per-group metrics, generalization gaps and fairness, each with n and a 95% interval."""
    from audit import console, pipeline
    from audit.rundir import RunDir

    rd = RunDir.open(run_dir)
    if predictions is None and not rd.has("predictions.parquet"):
        from audit.errors import UsageError

        a = console.audit_command()
        raise UsageError(f"{rd.path} has no predictions yet: train a model with `{a} train {rd.path}`, or bring your "
                         f"own with `{a} metrics {rd.path} --predictions FILE` (columns: docs/formats.md)")
    pipeline.metrics_stage(
        rd, required=True, by=by, min_n=min_n, predictions=predictions, n_boot=n_boot, depth=depth, seed=seed
    )
    console.print_summary(rd, stages=["metrics"], console=_console())


@app.command()
@handle_errors
def slices(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="Run directory.")],
    embeddings: Annotated[Optional[Path], typer.Option(
        "--embeddings", help="Parquet: sample_id + vectors (a list column or numeric columns).")] = None,
    min_n: Annotated[int, typer.Option("--min-n", min=2, help="Rows a slice needs in each half.")] = 20,
    group: Annotated[Optional[str], typer.Option(
        "--group", help="Cluster column for halves and bootstrap (default: group).")] = None,
    n_boot: Annotated[int, typer.Option("--n-boot", min=100, help="Bootstrap resamples.")] = 2000,
    seed: SeedOpt = 0,
) -> None:
    """Find slices where a model errs (discovered on half the held-out rows, confirmed on the other half)."""
    from audit import console, pipeline
    from audit.rundir import RunDir

    rd = RunDir.open(run_dir)
    pipeline.slices_stage(rd, required=True, embeddings=str(embeddings) if embeddings else None, min_n=min_n,
                          group=group, n_boot=n_boot, seed=seed)
    console.print_summary(rd, stages=["slices"], console=_console())


@app.command()
@handle_errors
def mitigate(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="Run directory with a finished training stage.")],
    method: Annotated[list[str], typer.Option("--method", help="group_balance, reweight, groupdro, augment or dedup "
                                              "(repeatable).")],
    groups: Annotated[Optional[list[str]], typer.Option("--groups", help="Column to balance over (repeatable; "
                                                        "default: domain).")] = None,
    eta: Annotated[float, typer.Option("--eta", min=0.0, help="GroupDRO step size.")] = 0.1,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, mps.")] = "auto",
    n_boot: Annotated[Optional[int], typer.Option("--n-boot", min=0, help="Paired bootstrap resamples.")] = None,
) -> None:
    """Retrain with each mitigation under the run's own settings; compare with the baseline on the same images."""
    from audit.mitigate.runner import mitigate_command

    mitigate_command(run_dir, method, groups=groups, eta=eta, device=device, n_boot=n_boot, echo=typer.echo)


@app.command()
@handle_errors
def report(run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="Run directory.")]) -> None:
    """Write RUN/report.html (one self-contained file) and RUN/summary.md."""
    from audit import console, pipeline
    from audit.rundir import RunDir

    rd = RunDir.open(run_dir)
    pipeline.report_stage(rd, required=True)
    console.print_summary(rd, stages=["report"], console=_console())


@app.command()
@handle_errors
def check(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="Run directory.")],
    policy: Annotated[Path, typer.Option("--policy", help="Policy file (TOML).")],
    baseline: Annotated[Optional[Path], typer.Option("--baseline", help="A previous run directory.")] = None,
    junit: Annotated[Optional[Path], typer.Option("--junit", help="Write JUnit XML here.")] = None,
    github: Annotated[bool, typer.Option("--github", help="GitHub step summary and annotations.")] = False,
) -> None:
    """Gate CI on a fairness / bias policy: exit 0 pass, 1 a rule failed, 2 invalid policy or run."""
    from audit.check import run_check

    result = run_check(run_dir, policy, baseline=baseline, junit=junit, github=github, console=_console())
    raise typer.Exit(result.exit_code)


@app.command("init-policy")
@handle_errors
def init_policy(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="Run directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Policy file to write.")] = Path("audit-policy.toml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a starter policy from a run's current values with sensible margins."""
    from audit.check import init_policy as _init
    from audit.rundir import RunDir

    path = _init(RunDir.open(run_dir), out, force=force)
    typer.echo(f"wrote {path}; gate CI with: audit check {run_dir} --policy {path}")


@app.command()
@handle_errors
def dashboard(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="Run directory (or a folder of runs).")],
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1.")] = 8501,
    host: Annotated[str, typer.Option("--host", help="Address to bind (default: localhost only).")] = "127.0.0.1",
) -> None:
    """Start the Streamlit dashboard on localhost."""
    from audit.dashboard import launch

    raise typer.Exit(launch(run_dir, port=port, host=host))


@app.command()
@handle_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo data and runs.")] = Path("demo_runs"),
    task: Annotated[DemoTask, typer.Option("--task", help="classify, segment or all.")] = DemoTask.all,
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, help="Training epochs (default: a quick setting).")] = None,
    device: Annotated[str, typer.Option("--device")] = "auto",
    seed: SeedOpt = 0,
) -> None:
    """Build the bundled demo data and run the full audit on it."""
    from audit import console, pipeline

    runs = pipeline.demo(out, task=task.value, epochs=epochs, device=device, seed=seed, console=_console())
    console.print_demo_done(runs, console=_console())


@app.command()
def models() -> None:
    """List the model names `--model` accepts and which have pretrained weights on this machine."""
    try:
        from audit.train.models import weights_available
    except ImportError:
        typer.echo("the training stage is not installed in this build")
        raise typer.Exit(1) from None
    for row in weights_available():
        if row["available"]:
            weights = f"weights: {row['source']} ({row['path']})"
        elif row["how"]:
            weights = f"no weights here: {row['how']}"
        else:
            weights = "no pretrained weights exist" if row["source"] is None else "no weights here"
        typer.echo(f"{row['name']:30s} {row['task']:9s} {weights}")


@app.command()
def formats() -> None:
    """List the input formats `--format` accepts."""
    from audit.readers import READERS, available_formats

    for name in available_formats():
        typer.echo(f"{name:12s} {READERS[name].description}")


@fiftyone_app.command("export")
@handle_errors
def fiftyone_export(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="Run directory.")],
    name: Annotated[Optional[str], typer.Option("--name", help="Dataset name (default: from the run).")] = None,
    launch: Annotated[bool, typer.Option("--launch", help="Open the FiftyOne App on the dataset.")] = False,
) -> None:
    """Export a run to a persistent FiftyOne dataset (samples, predictions, evaluations, saved views)."""
    from audit.integrations.fiftyone import export_run
    from audit.rundir import RunDir

    ds_name = export_run(RunDir.open(run_dir), name=name, launch=launch)
    typer.echo(f"exported to FiftyOne dataset {ds_name!r}; open it with: audit fiftyone export {run_dir} --launch")


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    from audit.core.signals import install

    install()  # SIGTERM/SIGHUP unwind like Ctrl+C: stages record "interrupted", exit 128 + signal
    app(args=hoist_global_flags(sys.argv[1:]), prog_name="audit")


_GLOBAL_FLAGS = ("--quiet", "-q", "--debug")


def hoist_global_flags(args: list[str]) -> list[str]:
    """Let ``--quiet``/``--debug`` appear anywhere (``audit profile DATA --quiet``), not only before the command."""
    if "--" in args:
        cut = args.index("--")
        head, tail = args[:cut], args[cut:]
    else:
        head, tail = args, []
    flags, rest, i = [], [], 0
    while i < len(head):
        a = head[i]
        if a in _GLOBAL_FLAGS or a.startswith("--progress="):
            flags.append(a)
        elif a == "--progress" and i + 1 < len(head):
            flags += [a, head[i + 1]]
            i += 1
        else:
            rest.append(a)
        i += 1
    return flags + rest + tail


if __name__ == "__main__":  # pragma: no cover
    main()
    sys.exit(0)
