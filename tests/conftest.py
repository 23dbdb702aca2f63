"""Shared fixtures: the demo datasets (built once per session) and helpers to make run directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("AUDIT_NO_PROGRESS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")


def pytest_collection_modifyitems(config, items):
    """Skip `gpu` tests without CUDA."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs CUDA")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def demo_classify(tmp_path_factory):
    """The classification demo dataset (``audit.demo.DemoData``), built once per test session."""
    from audit.demo import build_classify

    return build_classify(tmp_path_factory.mktemp("demo") / "classify", seed=0)


@pytest.fixture(scope="session")
def demo_segment(tmp_path_factory):
    """The segmentation demo dataset, built once per test session."""
    from audit.demo import build_segment

    return build_segment(tmp_path_factory.mktemp("demo") / "segment", seed=0)


def ingest_demo(data, out: Path):
    """Ingest a DemoData into a fresh run directory (manifest + run.json only) and return the RunDir."""
    from audit.ingest import ingest
    from audit.manifest import Roles
    from audit.readers import ReadOptions

    r = data.roles
    opts = ReadOptions(
        roles=Roles(
            filepath=r.get("filepath"), label=r.get("label"), mask=r.get("mask"), split=r.get("split"),
            domain=r.get("domain"), group=r.get("group"), attrs=list(r.get("attrs", [])),
        ),
        root=data.root,
    )
    run = ingest(data.table, out=out, format="table", options=opts, seed=0, command=["audit", "test"])
    if data.classes:
        ds = run.dataset
        ds["classes"] = data.classes
        run.update_info(dataset=ds)
    run.unlock()
    return run


@pytest.fixture
def classify_run(demo_classify, tmp_path):
    """A fresh run directory holding the ingested classification demo (no stage run yet)."""
    return ingest_demo(demo_classify, tmp_path / "run")


@pytest.fixture
def segment_run(demo_segment, tmp_path):
    """A fresh run directory holding the ingested segmentation demo."""
    return ingest_demo(demo_segment, tmp_path / "run")
