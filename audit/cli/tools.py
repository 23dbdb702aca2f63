"""Tool commands: ``audit dashboard``, ``audit demo``, ``audit models``, ``audit formats`` and
``audit fiftyone export``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from audit.cli.base import DemoTask, app, fiftyone_app, handle_errors, summary_console
from audit.cli.options import SeedOpt

__all__ = ["dashboard", "demo", "models", "formats", "fiftyone_export"]


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
    epochs: Annotated[Optional[int], typer.Option(
        "--epochs", min=1, help="Training epochs (default: a quick setting).")] = None,
    device: Annotated[str, typer.Option("--device")] = "auto",
    seed: SeedOpt = 0,
) -> None:
    """Build the bundled demo data and run the full audit on it."""
    from audit import console, pipeline

    runs = pipeline.demo(out, task=task.value, epochs=epochs, device=device, seed=seed, console=summary_console())
    console.print_demo_done(runs, console=summary_console())


@app.command()
def models() -> None:
    """List the model names `--model` accepts and which have pretrained weights on this machine."""
    from audit.console import echo, print_models

    try:
        from audit.train.models import weights_available
    except ImportError:
        echo("the training stage is not installed in this build")
        raise typer.Exit(1) from None
    print_models(weights_available())


@app.command()
def formats() -> None:
    """List the input formats `--format` accepts."""
    from audit.console import print_formats
    from audit.readers import READERS, available_formats

    print_formats([(name, READERS[name].description) for name in available_formats()])


@fiftyone_app.command("export")
@handle_errors
def fiftyone_export(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="Run directory.")],
    name: Annotated[Optional[str], typer.Option("--name", help="Dataset name (default: from the run).")] = None,
    launch: Annotated[bool, typer.Option("--launch", help="Open the FiftyOne App on the dataset.")] = False,
) -> None:
    """Export a run to a persistent FiftyOne dataset (samples, predictions, evaluations, saved views)."""
    from audit.console import echo
    from audit.integrations.fiftyone import export_run
    from audit.rundir import RunDir

    ds_name = export_run(RunDir.open(run_dir), name=name, launch=launch)
    echo(f"exported to FiftyOne dataset {ds_name!r}; open it with: audit fiftyone export {run_dir} --launch")
