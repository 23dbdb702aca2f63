"""Policy files: TOML parsed (never evaluated) into typed rules, with errors that name the key and line.

A policy is a ``[policy]`` table of defaults and a list of ``[[rule]]`` tables; see docs/policy.md::

    [policy]
    name = "release gate"
    min_n = 30
    on_insufficient = "warn"

    [[rule]]
    id = "worst-group-accuracy"
    check = "worst_group"
    bound = "ci_low"
    op = ">="
    threshold = 0.70
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.core.directions import lower_is_better
from audit.errors import UsageError

__all__ = ["Policy", "Rule", "PolicyError", "CHECKS", "OPS", "load_policy", "parse_policy"]

OPS = (">=", ">", "<=", "<")
SEVERITIES = ("error", "warn")
ON_INSUFFICIENT = ("skip", "warn", "fail")
ON_MISSING = ("skip", "warn", "fail")
BOUNDS = ("value", "ci_low", "ci_high")
SCOPES = ("ood", "id", "all")
FINDING_SEVERITIES = ("info", "warning", "critical")

_NAME = re.compile(r"^[A-Za-z0-9_.\- x|]+$")


class PolicyError(UsageError):
    """The policy file is invalid (exit code 2); the message names the file, line and key."""


# ------------------------------------------------------------------ parameter specs
@dataclass(frozen=True)
class Param:
    """One rule parameter: its type (``float``, ``int``, ``str``, ``strs``, ``bool``), choices and default."""

    kind: str
    default: Any = None
    choices: tuple | None = None
    required: bool = False
    doc: str = ""


_COMMON = {
    "id": Param("str", doc="unique name of the rule (default: check name + position)"),
    "check": Param("str", required=True, doc="what to check (see CHECKS)"),
    "description": Param("str", doc="free text shown in reports"),
    "severity": Param("str", "error", SEVERITIES, doc="error: a violation fails the check; warn: reported only"),
    "min_n": Param("int", doc="groups with fewer samples are 'insufficient' (default: [policy] min_n or 30)"),
    "on_insufficient": Param("str", None, ON_INSUFFICIENT, doc="what groups under min_n do: skip, warn, fail"),
    "on_missing": Param("str", None, ON_MISSING, doc="what happens when the table the rule needs is absent"),
}
_MODEL_SEL = {
    "model": Param("strs", doc="only these models"),
    "protocol": Param("strs", doc="only these protocols (lodo, split, transfer)"),
    "fold": Param("str", doc="fold to read (default: 'all', pooled over folds, when present)"),
}
_THRESH = {
    "op": Param("str", None, OPS, doc="comparison that must hold: value OP threshold"),
    "threshold": Param("float", required=True, doc="the limit"),
    "bound": Param("str", "value", BOUNDS, doc="compare the point value or an end of its 95% interval"),
}
_GROUP = {
    **_MODEL_SEL,
    **_THRESH,
    "metric": Param("str", doc="metric name in metrics/groups.parquet"),
    "by": Param("strs", doc="groupings to check (default: every grouping except 'overall')"),
    "groups": Param("strs", doc="only these group values"),
    "scope": Param("str", None, SCOPES, doc="ood, id or all (default: ood when present, else all)"),
}

#: check name -> (parameters, default op, one-line description)
CHECKS: dict[str, tuple[dict[str, Param], str | None, str]] = {
    "worst_group": (_GROUP, ">=", "every group's primary metric (accuracy / mIoU) must satisfy op threshold"),
    "group_metric": (_GROUP, None, "every group's value of `metric` must satisfy op threshold"),
    "ece": ({**_GROUP, "by": Param("strs", ["overall"])}, "<=", "expected calibration error (metric 'ece')"),
    "fairness": (
        {
            **_MODEL_SEL,
            **_THRESH,
            "metric": Param("str", required=True, choices=("dp_diff", "dp_ratio", "eo_diff", "eop_diff")),
            "attribute": Param("strs", doc="attributes (or intersections) to check; default all"),
            "class": Param(
                "strs",
                doc="class rows to check ('worst', 'macro', 'binary' or a class); "
                "default 'worst' (or 'binary') when present, else all",
            ),
            "scope": Param("str", None, SCOPES, doc="ood, id or all (default: ood when present, else all)"),
        },
        None,
        "fairness gap per attribute from metrics/fairness.parquet",
    ),
    "generalization_gap": (
        {
            **_MODEL_SEL,
            **_THRESH,
            "fold": Param("str", doc="only this fold (default every fold)"),
            "metric": Param("str", doc="metric (default: the primary metric)"),
            "test_domain": Param("strs", doc="only these held-out domains"),
        },
        "<=",
        "in-domain minus out-of-domain performance per held-out domain",
    ),
    "no_split_leakage": (
        {"max_count": Param("int", 0), "include_near": Param("bool", True), "include_groups": Param("bool", True)},
        "<=",
        "duplicate images (and shared groups) across splits",
    ),
    "no_label_conflicts": ({"max_count": Param("int", 0)}, "<=", "duplicate images with different labels"),
    "no_unreadable_files": ({"max_count": Param("int", 0)}, "<=", "files that cannot be decoded or are missing"),
    "imbalance_ratio": (
        {**_THRESH, "columns": Param("strs", doc="columns to check (label, domain, attr.x...); default all")},
        "<=",
        "largest / smallest group size per column",
    ),
    "association": (
        {
            **_THRESH,
            "columns": Param("strs", doc="only pairs involving one of these columns"),
            "within": Param("str", doc="a domain value, or 'any' for every stratum (default: whole dataset)"),
            "max_q": Param("float", 0.05, doc="only associations with BH q-value <= max_q count"),
        },
        "<=",
        "Cramer's V between label / domain and attributes (spurious correlation)",
    ),
    "shortcut": (
        {
            **_THRESH,
            "target": Param("strs", doc="domain, label or attr.x (default all)"),
            "features": Param("strs", doc="image_stats, file_properties"),
        },
        "<=",
        "balanced accuracy above chance of predicting a target from cheap features",
    ),
    "findings": (
        {
            "kinds": Param("strs", doc="finding kinds to count (default all)"),
            "min_severity": Param("str", "warning", FINDING_SEVERITIES, doc="count findings at least this severe"),
            "max_count": Param("int", 0),
        },
        "<=",
        "number of findings of some kinds",
    ),
    "regression": (
        {
            **_MODEL_SEL,
            "of": Param("str", "worst_group", ("worst_group", "overall", "groups")),
            "metric": Param("str", doc="metric (default: the primary metric)"),
            "by": Param("strs"),
            "scope": Param("str", None, SCOPES),
            "max_drop": Param("float", required=True, doc="the largest allowed drop versus --baseline"),
        },
        None,
        "worst-group / overall / per-group metric may not drop by more than max_drop versus --baseline",
    ),
    # slice discovery (issue 20): slices/slices.parquet
    "max_slice_gap": (
        {
            **_MODEL_SEL,
            **_THRESH,
            "confirmed_only": Param("bool", True, doc="only slices confirmed on the held-out half"),
        },
        "<=",
        "accuracy gap (rest - slice) of each discovered slice, from slices/slices.parquet",
    ),
    "tracked_slices": (
        {
            **_THRESH,
            "confirmed_only": Param("bool", True, doc="only the slices the baseline confirmed"),
            "n_boot": Param("int", 2000, doc="bootstrap resamples of each gap's interval"),
        },
        "<=",
        "accuracy gap (rest - slice) of the --baseline run's saved slices applied to this run (same embedding space)",
    ),
    # mitigation experiments (issue 21): mitigations/summary.parquet
    "mitigation_tradeoff": (
        {
            "methods": Param("strs", doc="only these methods (default: every method in the summary)"),
            "by": Param("str", doc="worst-group grouping (default: the first one after domain)"),
            "max_drop": Param("float", 0.02, doc="largest allowed drop of held-out accuracy (ood_accuracy)"),
        },
        None,
        "a mitigation that raises worst-group accuracy may not lower held-out accuracy by more than max_drop "
        "(paired intervals, mitigations/summary.parquet)",
    ),
}

_POLICY_KEYS = {
    "name": Param("str"),
    "description": Param("str"),
    "min_n": Param("int", 30),
    "on_insufficient": Param("str", "warn", ON_INSUFFICIENT),
    "on_missing": Param("str", "fail", ON_MISSING),
}


@dataclass
class Rule:
    """One validated rule. ``params`` holds the check-specific parameters with defaults filled in."""

    id: str
    check: str
    severity: str
    op: str | None
    threshold: float | None
    bound: str
    min_n: int
    on_insufficient: str
    on_missing: str
    params: dict[str, Any]
    line: int
    description: str = ""

    def get(self, key: str, default: Any = None) -> Any:
        v = self.params.get(key)
        return default if v is None else v


@dataclass
class Policy:
    """A validated policy file."""

    path: Path
    name: str
    rules: list[Rule]
    min_n: int = 30
    text: str = ""
    extra: dict = field(default_factory=dict)

    def where(self, rule: Rule, key: str | None = None) -> str:
        """``path:line`` of a rule (or one of its keys), for messages."""
        line = _key_line(self.text, rule.line, key) if key else rule.line
        return f"{self.path}:{line}"

    def error(self, rule: Rule, key: str | None, msg: str) -> PolicyError:
        return PolicyError(f"{self.where(rule, key)}: rule {rule.id!r}: {msg}")


# ------------------------------------------------------------------ line lookup
_HEADER = re.compile(r"^\s*\[")


def _rule_header_lines(text: str) -> list[int]:
    return [i + 1 for i, ln in enumerate(text.splitlines()) if re.match(r"^\s*\[\[\s*rule\s*\]\]", ln)]


def _table_line(text: str, name: str) -> int:
    for i, ln in enumerate(text.splitlines()):
        if re.match(rf"^\s*\[\s*{re.escape(name)}\s*\]", ln):
            return i + 1
    return 1


def _key_line(text: str, start: int, key: str | None) -> int:
    """Line of ``key = ...`` in the table that starts at line ``start`` (the table's line if not found)."""
    if not key:
        return start
    lines = text.splitlines()
    pat = re.compile(rf"^\s*(\"{re.escape(key)}\"|'{re.escape(key)}'|{re.escape(key)})\s*=")
    for i in range(start, len(lines)):  # lines after the header (0-based index start == line start+1)
        if _HEADER.match(lines[i]):
            break
        if pat.match(lines[i]):
            return i + 1
    return start


# common misspellings of the comparison operators (=> for >=, words, unicode signs)
_OP_ALIASES = {
    "=>": ">=",
    "=<": "<=",
    "≥": ">=",
    "≤": "<=",
    "⩾": ">=",
    "⩽": "<=",
    "!<": ">=",
    "!>": "<=",
    "ge": ">=",
    "gte": ">=",
    "gt": ">",
    "le": "<=",
    "lte": "<=",
    "lt": "<",
    ">>": ">",
    "<<": "<",
}


def _hint(name: str, choices) -> str:
    """`` (did you mean 'x'?)`` for a misspelled name, or ``""``.

    Comparison operators get their own rules first: difflib sees ``=>`` as closer to ``>`` than to ``>=``, so
    known mistakes (``=>``, ``=<``, ``gte``...), the reversed string and the string without spaces are tried
    before the fuzzy match.
    """
    name = str(name)
    cs = [str(c) for c in choices]
    for cand in (_OP_ALIASES.get(name.strip().lower()), name.strip()[::-1], "".join(name.split())):
        if cand and cand != name and cand in cs:
            return f" (did you mean {cand!r}?)"
    m = difflib.get_close_matches(name, cs, n=1, cutoff=0.6)
    return f" (did you mean {m[0]!r}?)" if m else ""


# ------------------------------------------------------------------ validation
def _coerce(value: Any, spec: Param, where: str, key: str) -> Any:
    kind = spec.kind
    tname = type(value).__name__
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PolicyError(f"{where}: {key} must be a number, got {tname} {value!r}")
        value = float(value)
        if value != value:  # NaN
            raise PolicyError(f"{where}: {key} must be a number, got nan")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise PolicyError(f"{where}: {key} must be an integer, got {tname} {value!r}")
        if value < 0:
            raise PolicyError(f"{where}: {key} must be >= 0, got {value}")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise PolicyError(f"{where}: {key} must be true or false, got {tname} {value!r}")
    elif kind == "str":
        if not isinstance(value, str):
            raise PolicyError(f"{where}: {key} must be a string, got {tname} {value!r}")
    elif kind == "strs":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise PolicyError(f"{where}: {key} must be a string or a list of strings, got {tname} {value!r}")
    if spec.choices is not None and value not in spec.choices:
        raise PolicyError(
            f"{where}: {key} = {value!r} is not allowed{_hint(value, spec.choices)}; choose one of "
            + ", ".join(map(repr, spec.choices))
        )
    return value


def parse_policy(text: str, path: Path | str = "policy.toml") -> Policy:
    """Parse and validate policy text; raise :class:`PolicyError` naming the line and key of any problem."""
    path = Path(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PolicyError(f"{path}: invalid TOML: {e}") from None
    for key in data:
        if key not in ("policy", "rule"):
            line = _key_line(text, 0, key) if not isinstance(data[key], (dict, list)) else _table_line(text, key)
            raise PolicyError(
                f"{path}:{line}: unknown top-level key {key!r}{_hint(key, ['policy', 'rule'])}; "
                "a policy has a [policy] table and [[rule]] tables"
            )
    head = data.get("policy", {})
    if not isinstance(head, dict):
        raise PolicyError(f"{path}:{_key_line(text, 0, 'policy')}: 'policy' must be a table ([policy])")
    pline = _table_line(text, "policy")
    defaults = {}
    for key, value in head.items():
        where = f"{path}:{_key_line(text, pline, key)}"
        if key not in _POLICY_KEYS:
            raise PolicyError(
                f"{where}: unknown key {key!r} in [policy]{_hint(key, _POLICY_KEYS)}; allowed: "
                + ", ".join(_POLICY_KEYS)
            )
        defaults[key] = _coerce(value, _POLICY_KEYS[key], where, key)
    for key, spec in _POLICY_KEYS.items():
        defaults.setdefault(key, spec.default)
    raw_rules = data.get("rule", [])
    if not isinstance(raw_rules, list):
        raise PolicyError(f"{path}:{_key_line(text, 0, 'rule')}: rules are written as [[rule]] tables")
    if not raw_rules:
        raise PolicyError(f"{path}: the policy has no [[rule]] tables; nothing to check")
    headers = _rule_header_lines(text)
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_rules):
        line = headers[i] if i < len(headers) else 1
        rules.append(_parse_rule(raw, i, line, text, path, defaults))
        rid = rules[-1].id
        if rid in seen:
            raise PolicyError(
                f"{path}:{_key_line(text, line, 'id')}: duplicate rule id {rid!r} (also rule {seen[rid] + 1})"
            )
        seen[rid] = i
    return Policy(
        path=path,
        name=defaults.get("name") or path.stem,
        rules=rules,
        min_n=defaults["min_n"],
        text=text,
        extra=defaults,
    )


def _parse_rule(raw: Any, i: int, line: int, text: str, path: Path, defaults: dict) -> Rule:
    where0 = f"{path}:{line}: rule {i + 1}"
    if not isinstance(raw, dict):
        raise PolicyError(f"{where0}: a rule must be a table")
    check = raw.get("check")
    if check is None:
        raise PolicyError(f"{where0}: missing key 'check'; choose one of " + ", ".join(CHECKS))
    if not isinstance(check, str) or check not in CHECKS:
        raise PolicyError(
            f"{path}:{_key_line(text, line, 'check')}: rule {i + 1}: unknown check {check!r}{_hint(check, CHECKS)}; "
            "choose one of " + ", ".join(CHECKS)
        )
    specs, default_op, _ = CHECKS[check]
    allowed = {**_COMMON, **specs}
    vals: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{path}:{_key_line(text, line, key)}: rule {i + 1} ({check})"
        if key not in allowed:
            raise PolicyError(f"{where}: unknown key {key!r}{_hint(key, allowed)}; allowed keys: " + ", ".join(allowed))
        vals[key] = _coerce(value, allowed[key], where, key)
    for key, spec in allowed.items():
        if spec.required and key not in vals:
            raise PolicyError(f"{where0} ({check}): missing required key {key!r}")
        if key not in vals and spec.default is not None:
            vals[key] = spec.default
    rid = vals.get("id") or f"{check}-{i + 1}"
    if not _NAME.match(rid):
        raise PolicyError(
            f"{path}:{_key_line(text, line, 'id')}: rule {i + 1}: id {rid!r} may only use letters, "
            "digits, '_', '-', '.'"
        )
    op = vals.get("op") or default_op
    if op is None and "op" in allowed:
        # group_metric / fairness: the metric's direction (the one rule of audit.core.directions)
        op = "<=" if lower_is_better(str(vals.get("metric", ""))) else ">="
    params = {k: v for k, v in vals.items() if k not in _COMMON and k not in ("op", "threshold", "bound")}
    if "max_count" in params:
        vals["threshold"] = float(params["max_count"])
    if check == "regression":
        vals["threshold"] = params["max_drop"]
        if params["max_drop"] < 0:
            raise PolicyError(f"{path}:{_key_line(text, line, 'max_drop')}: rule {rid!r}: max_drop must be >= 0")
    return Rule(
        id=rid,
        check=check,
        severity=vals.get("severity", "error"),
        op=op,
        threshold=vals.get("threshold"),
        bound=vals.get("bound", "value"),
        min_n=vals.get("min_n", defaults["min_n"]),
        on_insufficient=vals.get("on_insufficient") or defaults["on_insufficient"],
        on_missing=vals.get("on_missing") or defaults["on_missing"],
        params=params,
        line=line,
        description=vals.get("description", ""),
    )


def load_policy(path: Path | str) -> Policy:
    """Read and validate a policy file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(
            f"policy file {path} does not exist; write a starter one with `audit init-policy RUN`"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise PolicyError(f"cannot read policy file {path}: {e}") from None
    return parse_policy(text, path)
