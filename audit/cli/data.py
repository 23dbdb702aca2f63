"""The commands that read data into a run directory: ``audit profile`` and ``audit run``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from audit.cli.base import Engine, Protocol, app, handle_errors, summary_console
from audit.cli.jsonout import run_document
from audit.cli.options import (
    AttrOpt,
    DataArg,
    DatasetOpt,
    DeviceOpt,
    DomainOpt,
    EngineOpt,
    EpochsOpt,
    FormatOpt,
    GroupOpt,
    IdOpt,
    ImageDirOpt,
    JsonOpt,
    LabelOpt,
    LayoutOpt,
    MaskDirOpt,
    MaskOpt,
    MinNOpt,
    ModelOpt,
    ModeOpt,
    OutOpt,
    OutsideOpt,
    PathColOpt,
    PatternOpt,
    ProtocolOpt,
    RayAddrOpt,
    RecipeOpt,
    RootOpt,
    SeedOpt,
    SeedsOpt,
    SplitOpt,
    StrictOpt,
    TaskOpt,
    WorkersOpt,
    read_options,
)

__all__ = ["profile", "run"]


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
    near_radius: Annotated[int, typer.Option(
        "--near-radius", min=0, max=32, help="Hamming radius (of 64 bits) for near duplicates.")] = 6,
    near_dup_threshold: Annotated[float, typer.Option(
        "--near-dup-threshold", min=0.0, max=1.0,
        help="Local similarity a near-duplicate pair needs (docs/duplicates.md).",
    )] = 0.8,
    depth: Annotated[int, typer.Option("--depth", min=1, help="Deepest intersection in the distribution table.")] = 3,
    n_boot: Annotated[int, typer.Option("--n-boot", min=0, help="Bootstrap resamples for intervals.")] = 1000,
    max_pixels: Annotated[
        int, typer.Option("--max-pixels", min=1,
                          help="Images with more pixels are refused undecoded (decompression bombs).")
    ] = 89_478_485,
    json_out: JsonOpt = False,
) -> dict | None:
    """Profile a dataset: imbalance, associations, shifts, duplicates, leakage, broken files, shortcuts."""
    from audit import console, pipeline

    opts = read_options(
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
    console.print_summary(run, stages=["profile"], console=summary_console(stderr=json_out))
    return run_document(run.path, command="profile") if json_out else None


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
    task: TaskOpt = None,
    model: ModelOpt = None,
    protocol: ProtocolOpt = Protocol.lodo,
    epochs: EpochsOpt = 8,
    device: DeviceOpt = "auto",
    seeds: SeedsOpt = 1,
    min_n: MinNOpt = 30,
    seed: SeedOpt = 0,
    workers: WorkersOpt = None,
    engine: EngineOpt = Engine.local,
    ray_address: RayAddrOpt = None,
    mode: ModeOpt = "auto",
    json_out: JsonOpt = False,
) -> dict | None:
    """Run the whole audit: profile, train across held-out domains, metrics, report."""
    from audit import console, pipeline

    opts = read_options(
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
    console.print_summary(rd, console=summary_console(stderr=json_out))
    return run_document(rd.path, command="run") if json_out else None
