"""The Python API: ``import audit`` (open_run, Run, group_metrics) against fairlearn and real run directories."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import audit
from audit.errors import RunDirError


def _data(seed: int, n: int = 400, k: int = 3):
    rng = np.random.default_rng(seed)
    yt = rng.integers(0, k, n)
    yp = np.where(rng.uniform(size=n) < 0.7, yt, rng.integers(0, k, n))
    sf = pd.DataFrame({"sex": rng.choice(["f", "m"], n), "age": rng.choice(["young", "mid", "old"], n)})
    return yt, yp, sf


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_group_metrics_equal_fairlearn_by_group_with_intersections_and_empty_groups(seed):
    fairlearn = pytest.importorskip("fairlearn.metrics")
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    yt, yp, sf = _data(seed)
    sf.loc[(sf.sex == "m") & (sf.age == "old"), "sex"] = "f"  # one empty intersection
    macro_f1 = lambda t, p: f1_score(t, p, average="macro")  # noqa: E731
    got = audit.group_metrics(yt, yp, sensitive_features=sf, n_boot=100,
                              metrics={"acc": "accuracy", "bal": "balanced_accuracy", "f1": macro_f1})
    mf = fairlearn.MetricFrame(metrics={"acc": accuracy_score, "bal": balanced_accuracy_score, "f1": macro_f1},
                               y_true=yt, y_pred=yp, sensitive_features=sf)
    assert list(got.index.names) == ["sex", "age"]
    for name in ("acc", "bal", "f1"):
        ours = got[name]["value"]
        ref = mf.by_group[name].reindex(ours.index)
        np.testing.assert_allclose(ours.to_numpy(float), ref.to_numpy(float), rtol=1e-12, equal_nan=True)
    empty = got.loc[("m", "old")]
    assert empty[("acc", "status")] == "empty" and empty[("acc", "n")] == 0 and np.isnan(empty[("acc", "value")])
    ok = got[got[("acc", "status")] == "ok"]
    assert ((ok[("acc", "ci_low")] <= ok[("acc", "value")]).all()
            and (ok[("acc", "value")] <= ok[("acc", "ci_high")]).all())


@pytest.mark.parametrize("case", ["int_float", "float_int", "int8_float32_series", "bool_int", "categorical_object"])
def test_group_metrics_equal_fairlearn_when_y_true_and_y_pred_have_different_dtypes(case):
    """Equal values are the same class across dtypes (1 == 1.0 == np.int64(1)), as in fairlearn's MetricFrame."""
    fairlearn = pytest.importorskip("fairlearn.metrics")
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    yt, yp, sf = _data(5)
    names = np.array(["x", "y", "z"], dtype=object)
    yt, yp = {
        "int_float": (yt, yp.astype(float)),
        "float_int": (yt.astype(float), yp),
        "int8_float32_series": (yt.astype(np.int8), pd.Series(yp.astype(np.float32))),
        "bool_int": (yt > 0, (yp > 0).astype(np.int64)),
        "categorical_object": (pd.Categorical(names[yt]), names[yp]),
    }[case]
    got = audit.group_metrics(yt, yp, sensitive_features=sf, n_boot=0,
                              metrics={"acc": "accuracy", "bal": "balanced_accuracy"})
    mf = fairlearn.MetricFrame(metrics={"acc": accuracy_score, "bal": balanced_accuracy_score},
                               y_true=yt, y_pred=yp, sensitive_features=sf)
    for name in ("acc", "bal"):
        ours = got[name]["value"]
        ref = mf.by_group[name].reindex(ours.index)
        np.testing.assert_allclose(ours.to_numpy(float), ref.to_numpy(float), rtol=1e-12, equal_nan=True)
    assert (got[("acc", "value")].dropna() > 0.5).all()  # not the 0 of comparing "1" with "1.0"


def test_group_metrics_label_names_are_by_value_and_distinct_values_stay_apart():
    got = audit.group_metrics(np.array([1, 2, 2, 1]), np.array([1.0, 2.0, 1.0, 1.0]), sensitive_features=list("aabb"),
                              metrics=["recall"], n_boot=0)
    assert set(got.columns.get_level_values("metric")) == {"recall.1", "recall.2"}
    mixed = audit.group_metrics([1, "1", 2], [1, "1", 2], sensitive_features=list("aab"),
                                metrics=["accuracy", "recall"], n_boot=0)
    assert mixed[("accuracy", "value")].tolist() == [1.0, 1.0]
    assert {"recall.1 (int)", "recall.1 (str)", "recall.2"} <= set(mixed.columns.get_level_values("metric"))


def test_group_metrics_single_feature_series_min_n_and_recall_per_class():
    yt, yp, sf = _data(3, n=120)
    got = audit.group_metrics(pd.Series(yt), pd.Series(yp), sensitive_features=sf["sex"],
                              metrics=["accuracy", "recall"], min_n=70, n_boot=50)
    assert got.index.name == "sex"
    assert {"recall.0", "recall.1", "recall.2"} <= set(got.columns.get_level_values("metric"))
    n = got[("accuracy", "n")]
    assert n.sum() == 120
    assert (got[("accuracy", "status")] == np.where(n < 70, "insufficient_evidence", "ok")).all()


def test_group_metrics_callable_interval_covers_and_is_seeded():
    from sklearn.metrics import accuracy_score

    yt, yp, sf = _data(4)
    a = audit.group_metrics(yt, yp, sensitive_features=sf["age"], metrics=[accuracy_score], n_boot=200, seed=7)
    b = audit.group_metrics(yt, yp, sensitive_features=sf["age"], metrics=[accuracy_score], n_boot=200, seed=7)
    pd.testing.assert_frame_equal(a, b)
    v = a["accuracy_score"]
    assert ((v["ci_low"] < v["value"]) & (v["value"] < v["ci_high"])).all()


def test_group_metrics_refuses_bad_arguments():
    with pytest.raises(TypeError, match="positional"):
        audit.group_metrics([1], [1], [1])  # sensitive_features is keyword-only
    with pytest.raises(ValueError, match="rows"):
        audit.group_metrics([1, 0], [1], sensitive_features=["a", "b"])


def test_open_run_reads_findings_tables_and_stages(tmp_path):
    from audit.testing import make_fake_run

    make_fake_run(tmp_path / "run", n=120)
    run = audit.open_run(tmp_path / "run")
    f = run.findings
    assert {"check", "severity", "title", "effect", "ci_low", "ci_high", "n"} <= set(f.columns)
    assert len(f) == len(run._dir.findings()) > 0
    assert set(f["severity"]) <= {"critical", "warning", "info"}
    assert "metrics/groups" in run.tables()
    groups = run.table("metrics/groups")
    assert {"by", "group", "metric", "value", "ci_low", "ci_high", "n"} <= set(groups.columns)
    pd.testing.assert_frame_equal(run.table("profile/imbalance.parquet"), run.table("profile/imbalance"))
    with pytest.raises(KeyError, match="metrics/groups"):
        run.table("metrics/nope")
    assert len(run.manifest) > 0 and run.predictions is not None
    assert run.stages["metrics"]["status"] == "ok"
    assert "critical=" in repr(run) and "<table>" in run._repr_html_()


def test_open_run_html_escapes_user_text(tmp_path):
    from audit.testing import make_fake_run

    make_fake_run(tmp_path / "run", n=120, hostile=True)
    html = audit.open_run(tmp_path / "run")._repr_html_()
    assert "<script" not in html.lower()


def test_open_run_refuses_a_folder_that_is_no_run(tmp_path):
    with pytest.raises(RunDirError, match="not a run directory"):
        audit.open_run(tmp_path)


def test_import_audit_is_light():
    code = "import sys, audit; audit.open_run; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        audit.nope  # noqa: B018
