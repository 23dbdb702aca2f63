"""The model commands: ``audit train``, ``audit metrics``, ``audit slices`` and ``audit mitigate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from audit.cli.base import Engine, Protocol, app, handle_errors, is_default, summary_console
from audit.cli.jsonout import run_document
from audit.cli.options import (
    DeviceOpt,
    EngineOpt,
    EpochsOpt,
    JsonOpt,
    MinNOpt,
    ModelOpt,
    ModeOpt,
    ProtocolOpt,
    RayAddrOpt,
    SeedOpt,
    SeedsOpt,
    TaskOpt,
    WorkersOpt,
)

__all__ = ["train", "metrics", "slices", "mitigate"]


@app.command()
@handle_errors
def train(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="Run directory (from `audit profile`).")],
    task: TaskOpt = None,
    model: ModelOpt = None,
    protocol: ProtocolOpt = Protocol.lodo,
    epochs: EpochsOpt = 8,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1)] = None,
    lr: Annotated[Optional[float], typer.Option("--lr")] = None,
    image_size: Annotated[Optional[int], typer.Option(
        "--image-size", min=8, help="Square input size (default: per model).")] = None,
    device: DeviceOpt = "auto",
    seeds: SeedsOpt = 1,
    seed: SeedOpt = 0,
    weights: Annotated[Optional[Path], typer.Option("--weights", help="Pretrained weights file (.pth).")] = None,
    pretrained: Annotated[bool, typer.Option(
        "--pretrained", help="Use torchvision weights from torch's cache.")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
    balanced: Annotated[bool, typer.Option("--balanced", help="Class-balanced sampling.")] = False,
    workers: WorkersOpt = None,
    engine: EngineOpt = Engine.local,
    ray_address: RayAddrOpt = None,
    distributed: Annotated[int, typer.Option(
        "--distributed", help="Train with torch DDP in N processes (one per GPU) via torchrun.")] = 0,
    mode: ModeOpt = "auto",
    seg_loss: Annotated[str, typer.Option("--seg-loss", help="Segmentation loss: auto, ce or dice_ce (auto: Dice + "
                                          "cross-entropy when the foreground is under 15% of pixels).")] = "auto",
    time_budget: Annotated[Optional[str], typer.Option(
        "--time-budget", help="Wall time the plan should fit: seconds, 15m, 1h30m or none (default: 15m on a CPU, "
        "unlimited on a GPU); only what you did not choose (--model, --image-size, --epochs) is reduced.")] = None,
    json_out: JsonOpt = False,
) -> dict | None:
    """Train and evaluate classifiers or segmenters across held-out domains."""
    from audit import console, pipeline
    from audit.rundir import RunDir

    rd = RunDir.open(run_dir)
    options = dict(
        task=task.value if task else None, model=model, protocol=protocol.value, epochs=epochs,
        batch_size=batch_size, lr=lr, image_size=image_size, device=device, seeds=seeds, seed=seed, weights=weights,
        pretrained=pretrained, compile=compile, balanced=balanced, workers=workers, engine=engine.value,
        ray_address=ray_address, mode=mode, seg_loss=seg_loss, time_budget=time_budget,
        auto_epochs=is_default("epochs"),
    )
    if distributed:  # docs/scale.md: torchrun -m audit.train.ddp, one process per GPU
        from audit.train.config import train_config
        from audit.train.ddp import train_distributed

        # the same TrainConfig a local run builds (None: the default), every field of it passed to the ranks
        train_distributed(rd.path, distributed, train_config(**{k: v for k, v in options.items() if v is not None}))
    else:
        pipeline.train_stage(rd, required=True, **options)
    console.print_summary(rd, stages=["train"], console=summary_console(stderr=json_out))
    return run_document(rd.path, command="train") if json_out else None


@app.command()
@handle_errors
def metrics(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="Run directory.")],
    by: Annotated[Optional[list[str]], typer.Option(
        "--by", help="Grouping column (repeatable; a:b for an intersection).")] = None,
    min_n: MinNOpt = 30,
    predictions: Annotated[Optional[Path], typer.Option(
        "--predictions", help="Predictions file from any model.")] = None,
    n_boot: Annotated[int, typer.Option("--n-boot", min=0, help="Bootstrap resamples.")] = 1000,
    depth: Annotated[int, typer.Option("--depth", min=1, help="Deepest intersection of attributes.")] = 2,
    seed: SeedOpt = 0,
    json_out: JsonOpt = False,
) -> dict | None:
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
    console.print_summary(rd, stages=["metrics"], console=summary_console(stderr=json_out))
    return run_document(rd.path, command="metrics") if json_out else None


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
    console.print_summary(rd, stages=["slices"], console=summary_console())


@app.command()
@handle_errors
def mitigate(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="Run directory with a finished training stage.")],
    method: Annotated[list[str], typer.Option("--method", help="group_balance, reweight, groupdro, augment or dedup "
                                              "(repeatable).")],
    groups: Annotated[Optional[list[str]], typer.Option("--groups", help="Column to balance over (repeatable; "
                                                        "default: domain).")] = None,
    eta: Annotated[float, typer.Option("--eta", min=0.0, help="GroupDRO step size.")] = 0.1,
    device: DeviceOpt = "auto",
    n_boot: Annotated[Optional[int], typer.Option("--n-boot", min=0, help="Paired bootstrap resamples.")] = None,
) -> None:
    """Retrain with each mitigation under the run's own settings; compare with the baseline on the same images."""
    from audit.console import echo
    from audit.mitigate.runner import mitigate_command

    for line in mitigate_command(run_dir, method, groups=groups, eta=eta, device=device, n_boot=n_boot):
        echo(line)
