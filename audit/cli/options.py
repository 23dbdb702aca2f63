"""Options shared by several commands (one definition, one help text) and the reading options they build."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from audit.cli.base import Engine, Protocol, Task

DataArg = Annotated[Optional[Path], typer.Argument(help="Image folder or table (CSV/Parquet/JSONL).")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")]
FormatOpt = Annotated[str, typer.Option(
    "--format", help="Input format: auto, imagefolder, table, pattern, segdir, recipe, fiftyone.")]
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
TaskOpt = Annotated[Optional[Task], typer.Option("--task", help="classify or segment (default: from the data).")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", help="Model name (see `audit models`).")]
ProtocolOpt = Annotated[Protocol, typer.Option("--protocol")]
EpochsOpt = Annotated[int, typer.Option("--epochs", min=1)]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, mps.")]
SeedsOpt = Annotated[int, typer.Option("--seeds", min=1, help="Repeat training with N seeds.")]
RunArg = Annotated[Path, typer.Argument(metavar="RUN", help="Run directory.")]
JsonOpt = Annotated[bool, typer.Option(
    "--json", help="Print one JSON document on stdout (progress and the summary go to stderr).")]


def read_options(
    *, label, domain, split, group, attr, path_col, mask, id_col, root, layout, pattern, recipe, image_dir,
    mask_dir, dataset, allow_outside_root, strict=False,
):
    """The ``ReadOptions`` of ``audit profile`` / ``audit run`` from their role and layout flags."""
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
