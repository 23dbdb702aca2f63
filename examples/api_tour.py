# %% [markdown]
# # A tour of imgaudit's Python API
#
# The whole audit from Python, on the bundled demo data (about 1,600 digits of 32x32 from three sites, with
# planted problems): profile the data, train a small model across held-out sites, measure per-group metrics,
# write the report and gate on a policy. Every step returns an object to read, not text to scrape.
#
# Run it as a script (`python examples/api_tour.py`) or open it as a notebook (the `# %%` cells work in
# VS Code, PyCharm and Jupytext). It takes about half a minute on a laptop CPU; training needs the `[train]`
# extra (`pip install 'imgaudit[train]'`), everything else runs on the core install.

# %%
import os
import tempfile
from pathlib import Path

import audit
from audit.demo import build_classify

# Where the data and the run go (AUDIT_TOUR_DIR keeps them; default: a fresh temporary folder).
WORK = Path(os.environ.get("AUDIT_TOUR_DIR") or tempfile.mkdtemp(prefix="imgaudit-tour-"))
data = build_classify(WORK / "data", seed=0)
print(f"demo data: {data.table} ({data.roles})")

# %% [markdown]
# ## 1. Profile the dataset
#
# The keywords are the `audit profile` flags (`--n-boot` is `n_boot`, `--attr` is `attrs`). A small `n_boot`
# keeps the tour quick; `workers=1` scans in this process (the data is small, and a script is re-imported by
# worker processes).

# %%
run = audit.profile(
    data.table,
    out=WORK / "run",
    root=data.root,
    path_col="path",
    label="digit",
    domain="site",
    split="split",
    group="writer",
    attrs=["background", "ink"],
    n_boot=200,
    workers=1,
)
print(run)

# %%
# One row per finding, most serious first.
print(run.findings[["severity", "check", "title", "effect", "n"]].head(10).to_string())

# %%
# Any table of the run directory by its name, e.g. the class imbalance.
print(run.table("profile/imbalance").head())

# %% [markdown]
# ## 2. Train across held-out sites
#
# Leave-one-domain-out: each site is held out once. One epoch at 16 px is enough to show the API; the real
# thing uses the defaults (the plan picks the model, the image size and the epochs to fit the time budget).

# %%
run = audit.train(run, protocol="lodo", epochs=1, image_size=16, device="cpu", workers=1)
print(run.predictions[["sample_id", "fold", "held_out", "y_true", "y_pred", "confidence"]].head())

# %% [markdown]
# ## 3. Per-group metrics, each with n and an interval

# %%
run = audit.metrics(run, n_boot=200)
groups = run.table("metrics/groups")
overall = groups[(groups["by"] == "domain") & (groups["metric"] == "accuracy") & (groups["fold"] == "all")]
print(overall[["scope", "group", "value", "ci_low", "ci_high", "n", "status"]].to_string(index=False))

# %% [markdown]
# The same kind of table for any predictions, fairlearn-style: `audit.group_metrics` takes labels, predictions
# and the sensitive features (several give intersections).

# %%
test = run.predictions.query("role == 'test' and held_out")
attrs = run.manifest.set_index("sample_id").loc[test["sample_id"], ["attr.background", "attr.ink"]]
by_group = audit.group_metrics(test["y_true"], test["y_pred"], sensitive_features=attrs.reset_index(drop=True),
                               metrics=("accuracy",), n_boot=200)
print(by_group)

# %% [markdown]
# ## 4. The report

# %%
report = audit.report(run)
print(f"report: {report}")

# %% [markdown]
# ## 5. Gate on a policy
#
# The same check as `audit check RUN --policy FILE` in CI: `passed`, `exit_code` and the failed rules as a
# DataFrame.

# %%
policy = WORK / "policy.toml"
policy.write_text("""
[policy]
name = "tour"
min_n = 30

[[rule]]
id = "no-unreadable-files"
check = "no_unreadable_files"

[[rule]]
id = "worst-group-accuracy"
check = "worst_group"
threshold = 0.5
""")
result = audit.check(run, policy)
print(result)
print(result.failures[["id", "message"]].to_string(index=False))

# %% [markdown]
# ## 6. Reopen a run later
#
# `audit.open_run` reads any run directory, also one written by the CLI.

# %%
again = audit.open_run(WORK / "run")
print(sorted(again.stages), len(again.findings), "findings")
