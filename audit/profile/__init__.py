"""Dataset profiling: imbalance, spurious associations, covariate shift, duplicates and leakage, broken files,
shortcuts and segmentation masks.

Entry point (called by :func:`audit.pipeline.profile_stage`)::

    findings = run_profile(run, ProfileConfig(min_n=30, seed=0))

Each check is a module in this package registered with :func:`audit.profile.base.register`; the runner
isolates failures (a failed check is recorded in ``run.json`` ``stages.profile.checks`` and as a
``check_failed`` finding; the others still run). Tables are written to ``RUN/profile/<name>.parquet``
(see docs/formats.md and docs/profile.md).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path

from audit.core.protocols import ENGINES
from audit.errors import UsageError
from audit.findings import Finding
from audit.profile import (  # noqa: F401  (importing registers the checks)
    associations,
    distribution,
    duplicates,
    image_stats,
    integrity,
    masks,
    scan,
    shortcuts,
)
from audit.profile.base import REGISTRY, Check, CheckOutput, Context, register, run_checks

__all__ = ["ProfileConfig", "run_profile", "profile_frame", "REGISTRY", "Check", "CheckOutput", "Context", "register",
           "TABLES"]

# Every table a check may write, so stale files of a check that failed or was skipped are removed.
TABLES = ("images", "distribution", "imbalance", "associations", "residuals", "image_stats_shift", "duplicates",
          "shortcuts", "masks")


@dataclass(frozen=True, kw_only=True)
class ProfileConfig:
    """Settings of the profile stage (keyword names are what the pipeline passes).

    Parameters
    ----------
    min_n
        Groups smaller than this are ``under_min_n`` / not given a verdict.
    seed
        Seed of every bootstrap, subsample and CV split.
    workers
        Decoding processes (default: usable cores).
    engine
        ``local`` (process pool) or ``ray`` (Ray tasks; ``ray_address`` to join a cluster).
    near_radius
        Hamming radius (bits of 64) for near-duplicate candidates.
    near_dup_threshold
        A candidate pair is a near duplicate when its aligned thumbnails agree locally at least this much (mean
        band-pass correlation over the regions, see docs/duplicates.md; default 0.8).
    depth
        Deepest intersection of label/domain/attributes in the distribution table (2 = pairs only).
    checks
        Names of the checks to run (default all; ``images`` is added when a requested check needs it).
    n_boot
        Bootstrap replicates for intervals.
    max_pixels
        Images with more pixels are refused without decoding (decompression bombs).
    pixel_md5
        ``auto`` (hash pixels only of images that can be pixel-identical to another) or ``all``.
    """

    min_n: int = 30
    seed: int = 0
    workers: int | None = None
    engine: str = "local"
    ray_address: str | None = None
    near_radius: int = 6
    near_dup_threshold: float = 0.8
    depth: int = 3
    checks: list[str] | None = None
    n_boot: int = 1000
    max_pixels: int = 89_478_485
    pixel_md5: str = "auto"

    def __post_init__(self) -> None:
        if int(self.min_n) < 1:
            raise UsageError(f"min_n must be >= 1, got {self.min_n}")
        if self.workers is not None and int(self.workers) < 1:
            raise UsageError(f"workers must be >= 1, got {self.workers}")
        if self.engine not in ENGINES:
            raise UsageError(f"engine must be 'local' or 'ray', got {self.engine!r}")
        if not 0 <= int(self.near_radius) <= 32:
            raise UsageError(f"near_radius must be between 0 and 32 bits, got {self.near_radius}")
        if not 0.0 <= float(self.near_dup_threshold) <= 1.0:
            raise UsageError(f"near_dup_threshold must be between 0 and 1, got {self.near_dup_threshold}")
        if int(self.depth) < 1:
            raise UsageError(f"depth must be >= 1, got {self.depth}")
        if int(self.n_boot) < 0:
            raise UsageError(f"n_boot must be >= 0, got {self.n_boot}")
        if int(self.max_pixels) < 1:
            raise UsageError(f"max_pixels must be >= 1, got {self.max_pixels}")
        if self.pixel_md5 not in ("auto", "all"):
            raise UsageError(f"pixel_md5 must be 'auto' or 'all', got {self.pixel_md5!r}")
        if isinstance(self.checks, str):
            self.checks = [c.strip() for c in self.checks.split(",") if c.strip()]
        if self.checks is not None:
            unknown = [c for c in self.checks if c not in REGISTRY]
            if unknown:
                raise UsageError(f"unknown profile check {unknown[0]!r}; available: {', '.join(REGISTRY)}")

    def selected(self) -> list[str]:
        """The checks to run, with their requirements added."""
        names = list(REGISTRY) if self.checks is None else list(self.checks)
        for name in list(names):
            for req in REGISTRY[name].requires:
                provider = next((k for k, c in REGISTRY.items() if req in c.provides), None)
                if provider and provider not in names:
                    names.append(provider)
        return [n for n in REGISTRY if n in names]


def profile_frame(manifest, *, root: Path | None = None, config: ProfileConfig | None = None, task: str = "classify",
                  classes: list[str] | None = None, abspath=None, tables: dict | None = None):
    """Profile a manifest DataFrame without a run directory: returns ``(tables, findings, status)``.

    ``tables`` may pre-supply tables (e.g. a synthetic ``images`` table in tests) to skip their checks.
    """
    config = config or ProfileConfig()
    m = manifest.sort_values("sample_id", kind="stable").reset_index(drop=True)
    ctx = Context(manifest=m, config=config, root=Path(root) if root else None, task=task, classes=list(classes or []),
                  abspath=abspath)
    names = config.selected()
    if tables:
        for name, df in tables.items():
            ctx.tables[name] = df.set_index("sample_id").loc[m["sample_id"]].reset_index() if "sample_id" in df else df
        names = [n for n in names if not set(REGISTRY[n].provides) & set(tables)]
    findings, status = run_checks(ctx, names)
    return ctx.tables, findings, status


def run_profile(run, config: ProfileConfig) -> list[Finding]:
    """Profile the dataset of a run directory; write ``profile/*.parquet``; return the findings.

    Per-check status and timings go to ``run.json`` (``stages.profile.checks``); the resolved config to
    ``config.profile``. Each check's outputs are kept under ``RUN/.partial/profile/`` as soon as it finishes, keyed
    by the settings and the manifest fingerprint: after an interruption the same command reuses the finished checks
    (one line says how many) and runs the rest; the pieces are removed when the stage finishes.
    """
    if config.engine == "ray" and "images" in config.selected():
        from audit.integrations.ray_engine import init_ray

        init_ray(config.ray_address)  # an unreachable cluster is a usage error (exit 2), not a failed check
    m = run.manifest().sort_values("sample_id", kind="stable").reset_index(drop=True)
    ctx = Context(manifest=m, config=config, root=run.root, task=run.task, classes=run.classes(), abspath=run.abspath)
    findings, status, reused = _resumable_checks(run, ctx, config.selected())
    tables = ctx.tables
    for name in TABLES:
        rel = f"profile/{name}.parquet"
        if name in tables:
            run.write_table(rel, tables[name])
        elif run.has(rel):
            with contextlib.suppress(OSError):
                run.file(rel).unlink()  # stale output of an earlier run of a check that did not run now
    info = run.info
    stages = info.get("stages", {})
    prof = dict(stages.get("profile", {}))
    prof["checks"] = status
    if reused:
        prof["resumed"] = {"reused": reused, "of": len(status)}
    stages["profile"] = prof
    cfg = dict(info.get("config", {}))
    cfg["profile"] = asdict(config)
    run.update_info(stages=stages, config=cfg)
    run.clear_parts("profile")
    return findings


# Settings that change how fast the checks run, not what they find: a resumed profile may change them.
_SPEED_ONLY = ("workers", "engine", "ray_address", "checks")


def _resumable_checks(run, ctx: Context, names: list[str]) -> tuple[list[Finding], dict[str, dict], list[str]]:
    """Run the checks in order, each stored as it finishes; reuse those stored with the same key."""
    from audit import __version__
    from audit.progress import Bar, message
    from audit.rundir import part_key

    cfg = {k: v for k, v in asdict(ctx.config).items() if k not in _SPEED_ONLY}
    base = (__version__, str(run.dataset.get("fingerprint", "")), run.task, ctx.classes, len(ctx.manifest), cfg)
    order = [n for n in REGISTRY if n in names]
    keys = {n: part_key(*base, n) for n in order}
    ready = [n for n in order if run.has_part("profile", n, keys[n])]
    if ready:
        message(f"resuming profile: {len(ready)} of {len(order)} checks reused ({', '.join(ready)})")
    findings: list[Finding] = []
    status: dict[str, dict] = {}
    reused: list[str] = []
    with Bar(len(order) - len(ready), "profile", unit="check") as bar:  # reused checks are not counted
        for i, name in enumerate(order):
            # a check's in-memory extras (the scan's thumbnails) are read back only when a later check runs again
            part = run.read_part("profile", name, keys[name], arrays=any(n not in ready for n in order[i + 1:])) \
                if name in ready else None
            if part is not None:
                f, st = _restore(ctx, part)
                reused.append(name)
            else:
                bar.advance(0, info=f"now {name}")
                before = set(ctx.extras)
                f, st = run_checks(ctx, [name])
                if st.get(name, {}).get("status") == "ok":
                    extras = {k: v for k, v in ctx.extras.items() if k not in before}
                    _store(run, ctx, name, keys[name], f, st[name], extras)
                bar.advance(1)
            findings.extend(f)
            status.update(st)
    return findings, status, reused


def _store(run, ctx: Context, name: str, key: str, findings: list[Finding], status: dict, extras: dict) -> None:
    """Keep one finished check: its tables (parquet), in-memory extras (arrays), findings and status (JSON)."""
    tables = {t: ctx.tables[t] for t in status.get("tables", []) if t in ctx.tables}
    arrays: dict = {}
    shapes: dict[str, int] = {}  # extra -> number of arrays in its tuple (0: a single array)
    for k, v in extras.items():
        parts = v if isinstance(v, tuple) else (v,)
        shapes[k] = len(parts) if isinstance(v, tuple) else 0
        arrays.update({f"{k}.{j}": a for j, a in enumerate(parts)})
    state = {"name": name, "findings": [asdict(f) for f in findings], "status": status, "extras": shapes}
    run.write_part("profile", name, key, state, tables=tables, arrays=arrays)


def _restore(ctx: Context, part) -> tuple[list[Finding], dict[str, dict]]:
    """A stored check back in the context (its tables, and its extras when they were read), and its results."""
    state, tables, arrays = part
    ctx.tables.update(tables)
    for k, n in state["extras"].items():
        if f"{k}.0" in arrays:
            vals = tuple(arrays[f"{k}.{j}"] for j in range(max(n, 1)))
            ctx.extras[k] = vals if n else vals[0]
    return [Finding(**d) for d in state["findings"]], {state["name"]: {**state["status"], "reused": True}}
