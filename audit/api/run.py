"""``audit.Run``: one run directory read as Python objects (findings, tables, manifest, predictions, stages)."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from audit.errors import RunDirError
from audit.rundir import RunDir

__all__ = ["Run", "open_run", "FINDING_COLUMNS"]

#: columns of ``Run.findings``, one row per finding (``interval`` is ``(ci_low, ci_high)``, None without one)
FINDING_COLUMNS = ("id", "check", "severity", "title", "effect", "ci_low", "ci_high", "interval", "n", "stage",
                   "detail")


def _finding_rows(findings: list[dict]) -> pd.DataFrame:
    rows = []
    for f in findings:
        ci = f.get("ci") or (None, None)
        ci = list(ci) + [None, None]
        rows.append({
            "id": f.get("id"),
            "check": f.get("kind"),
            "severity": f.get("severity"),
            "title": f.get("title"),
            "effect": f.get("value"),
            "ci_low": ci[0],
            "ci_high": ci[1],
            "interval": (ci[0], ci[1]) if ci[0] is not None and ci[1] is not None else None,
            "n": f.get("n"),
            "stage": f.get("stage"),
            "detail": f.get("detail"),
        })
    df = pd.DataFrame(rows, columns=list(FINDING_COLUMNS))
    for c in ("effect", "ci_low", "ci_high"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    df["n"] = pd.to_numeric(df["n"], errors="coerce").astype("Int64")
    return df


class Run:
    """A run directory, read lazily.

    >>> import audit
    >>> run = audit.open_run("runs/pets")                      # doctest: +SKIP
    >>> run.findings.head()                                    # doctest: +SKIP
    >>> run.table("metrics/groups")                            # doctest: +SKIP

    Attributes
    ----------
    path : pathlib.Path
        The run directory.
    """

    def __init__(self, path: str | Path):
        self._dir = RunDir.open(path)
        self.path = self._dir.path

    def __fspath__(self) -> str:  # a Run goes wherever a path does (os.fspath, subprocess arguments, Path(run))
        return str(self.path)

    # ------------------------------------------------------------------ contents
    @property
    def findings(self) -> pd.DataFrame:
        """One row per finding, most serious first: check, severity, title, effect, ci_low, ci_high, interval, n."""
        return _finding_rows(self._dir.findings())

    @property
    def stages(self) -> dict[str, dict]:
        """Stage name -> its record in run.json (status, seconds, ...)."""
        return self._dir.stages()

    @property
    def manifest(self) -> pd.DataFrame:
        """The canonical manifest (one row per input row)."""
        return self._dir.manifest()

    @property
    def predictions(self) -> pd.DataFrame | None:
        """Every model's predictions (None before ``audit train`` or ``audit metrics --predictions``)."""
        return self._dir.read_table("predictions.parquet", required=False)

    @property
    def info(self) -> dict:
        """The whole run.json."""
        return self._dir.info

    def tables(self) -> list[str]:
        """Names of the tables in this run (``profile/imbalance``, ``metrics/groups``, ...)."""
        out = []
        for p in sorted(self.path.rglob("*.parquet")):
            rel = p.relative_to(self.path).with_suffix("").as_posix()
            if not any(part.startswith(".") for part in Path(rel).parts):
                out.append(rel)
        return out

    def table(self, name: str) -> pd.DataFrame:
        """A table by its run-directory name, with or without ``.parquet`` (``"metrics/groups"``)."""
        rel = name if name.endswith(".parquet") else f"{name}.parquet"
        df = self._dir.read_table(rel, required=False)
        if df is None:
            have = ", ".join(self.tables()) or "none yet"
            raise KeyError(f"{self.path} has no table {name!r}; tables: {have}")
        return df

    # ------------------------------------------------------------------ display
    def _counts(self) -> dict[str, int]:
        f = self._dir.findings()
        return {s: sum(1 for x in f if x.get("severity") == s) for s in ("critical", "warning", "info")}

    def __repr__(self) -> str:
        st = ", ".join(f"{k}={v.get('status')}" for k, v in self.stages.items()) or "no stages"
        c = self._counts()
        return (f"Run({str(self.path)!r}: {st}; findings critical={c['critical']} warning={c['warning']} "
                f"info={c['info']})")

    def _repr_html_(self) -> str:
        esc = html.escape
        stages = "".join(f"<tr><td>{esc(k)}</td><td>{esc(str(v.get('status')))}</td></tr>"
                         for k, v in self.stages.items())
        top = self.findings.head(10)
        rows = "".join(
            f"<tr><td>{esc(str(r.severity))}</td><td>{esc(str(r.check))}</td><td>{esc(str(r.title))}</td></tr>"
            for r in top.itertuples()
        )
        return (f"<div><b>imgaudit run</b> <code>{esc(str(self.path))}</code>"
                f"<table><tr><th>stage</th><th>status</th></tr>{stages}</table>"
                f"<table><tr><th>severity</th><th>check</th><th>finding</th></tr>{rows}</table></div>")


def open_run(path: str | Path) -> Run:
    """Open an existing run directory.

    Raises
    ------
    audit.errors.RunDirError
        When ``path`` is not a run directory.
    """
    p = Path(path)
    if not (p / "run.json").exists():
        raise RunDirError(f"{p} is not a run directory (no run.json); create one with audit.profile(...)")
    return Run(p)
