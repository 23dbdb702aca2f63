"""Evaluation protocols: which samples train, select (val) and test each model, by fold.

* ``lodo``: each domain held out in turn; the other domains are split by ``group`` into train / val / test,
  the last being the *in-domain twin* (never trained on) of the held-out test set.
* ``split``: the manifest's ``split`` column (val or test carved from train, by group, when absent).
* ``transfer``: train on each domain alone; test on its in-domain test part and on every other domain.

Invariants (tested by sample id): the held-out domain never appears in train or val of its fold, no ``group``
appears in two of train / val / test of a fold, and model selection only sees ``val`` (training domains).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from audit.core.protocols import TRAIN_PROTOCOLS
from audit.errors import UsageError

__all__ = ["PROTOCOLS", "Fold", "group_split", "make_folds", "normalize_split"]

PROTOCOLS = TRAIN_PROTOCOLS  # the one list, audit.core.protocols
TRAIN, VAL, TEST = 0, 1, 2
_SPLIT_NAMES = {
    "train": "train", "training": "train", "trn": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test", "tst": "test", "holdout": "test",
}


@dataclass
class Fold:
    """One train/val/test assignment. Index arrays are positions in the table given to :func:`make_folds`."""

    protocol: str
    name: str
    seed: int
    train_domains: list[str]
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    held_out: np.ndarray  # bool, one per test_idx
    notes: dict = field(default_factory=dict)

    @property
    def train_domains_str(self) -> str:
        return "|".join(self.train_domains)

    def membership_hash(self, sample_ids: np.ndarray) -> str:
        """A hash of which sample ids are in which role (changes when the data or the split changes)."""
        h = hashlib.sha1()
        for arr in (self.train_idx, self.val_idx, self.test_idx):
            h.update("\x00".join(map(str, sample_ids[arr])).encode())
            h.update(b"\x01")
        h.update(np.asarray(self.held_out, dtype=bool).tobytes())
        return h.hexdigest()[:16]



def _member(values: np.ndarray, members: set) -> np.ndarray:
    """``np.isin`` by hashing: on 100,000 string group ids np.isin of object arrays took 54 s, this milliseconds."""
    return pd.Series(values, dtype=object).isin(members).to_numpy()

def normalize_split(values: pd.Series) -> pd.Series:
    """Map split names (train/training, val/valid/validation/dev, test/testing) to train/val/test, else <NA>."""
    norm = values.astype("string").str.strip().str.lower()
    return norm.map(lambda v: _SPLIT_NAMES.get(v, pd.NA) if isinstance(v, str) else pd.NA)


def group_split(groups: np.ndarray, *, val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """Assign every row to TRAIN (0) / VAL (1) / TEST (2) so that no group spans two parts.

    Groups are shuffled with ``seed`` and taken in that order into test until ``test_fraction`` of the rows
    are there, then into val, the rest train; at least one group always stays in train.
    """
    groups = np.asarray(groups, dtype=object)
    n = len(groups)
    out = np.full(n, TRAIN, dtype=np.int8)
    if n == 0:
        return out
    uniq, inv = np.unique(groups.astype(str), return_inverse=True)
    sizes = np.bincount(inv, minlength=len(uniq))
    order = np.random.default_rng(seed).permutation(len(uniq))
    part = np.full(len(uniq), TRAIN, dtype=np.int8)
    taken = 0
    test_target, val_target = test_fraction * n, (test_fraction + val_fraction) * n
    for k, g in enumerate(order):
        if k == len(order) - 1:
            break  # keep the last group for training
        if taken + sizes[g] / 2 <= test_target:
            part[g] = TEST
        elif taken + sizes[g] / 2 <= val_target:
            part[g] = VAL
        else:
            break
        taken += sizes[g]
    return part[inv]


def _domains(table: pd.DataFrame) -> np.ndarray:
    return table["domain"].astype(object).where(table["domain"].notna(), None).to_numpy()


def make_folds(table: pd.DataFrame, protocol: str, *, seed: int = 0, val_fraction: float = 0.15,
               test_fraction: float = 0.2) -> tuple[list[Fold], dict]:
    """Folds of ``protocol`` over ``table`` (columns ``sample_id``, ``group``, optionally ``domain``, ``split``).

    Returns ``(folds, notes)``; notes explain fallbacks (e.g. ``lodo`` without domains -> ``split``) and rows
    left out of every fold (``excluded``: reason -> sample ids).

    Raises
    ------
    UsageError
        When the protocol cannot work on this table (e.g. ``transfer`` with fewer than two domains).
    """
    if protocol not in PROTOCOLS:
        raise UsageError(f"unknown --protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise UsageError("val_fraction and test_fraction must be in [0, 1) and sum to less than 1")
    notes: dict = {"protocol_requested": protocol, "excluded": {}}
    groups = table["group"].astype(str).to_numpy() if "group" in table else table["sample_id"].astype(str).to_numpy()
    has_domain = "domain" in table.columns and table["domain"].notna().any()
    n_domains = int(table["domain"].dropna().nunique()) if has_domain else 0
    if protocol == "lodo" and n_domains < 2:
        notes["fallback"] = f"lodo needs >= 2 domains (found {n_domains}); used the split protocol instead"
        protocol = "split"
    if protocol == "transfer" and n_domains < 2:
        raise UsageError(f"--protocol transfer needs a domain column with >= 2 domains (found {n_domains}); "
                         "give --domain")
    notes["protocol"] = protocol
    if protocol == "split":
        return [_split_fold(table, groups, seed, val_fraction, test_fraction, notes)], notes

    dom = _domains(table)
    missing = np.array([d is None for d in dom])
    if missing.any():
        notes["excluded"]["missing_domain"] = table["sample_id"].to_numpy()[missing].tolist()
    domains = sorted({d for d in dom if d is not None})
    part = group_split(groups, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    folds = []
    for d in domains:
        if protocol == "lodo":
            ood = dom == d
            pool = ~ood & ~missing
            ood_groups = set(groups[ood])
            shared = pool & _member(groups, ood_groups) & (part != TEST)
            train = pool & (part == TRAIN) & ~shared
            val = pool & (part == VAL) & ~shared
            id_test = pool & (part == TEST)
            name, train_domains = f"holdout={d}", [x for x in domains if x != d]
        else:  # transfer
            src = dom == d
            train, val, id_test = src & (part == TRAIN), src & (part == VAL), src & (part == TEST)
            tv_groups = set(groups[train | val])
            ood = ~src & ~missing
            shared = ood & _member(groups, tv_groups)
            ood = ood & ~shared
            name, train_domains = f"train={d}", [d]
        test_idx = np.concatenate([np.flatnonzero(id_test), np.flatnonzero(ood)])
        held = np.concatenate([np.zeros(int(id_test.sum()), bool), np.ones(int(ood.sum()), bool)])
        fnotes = {"n_shared_group_dropped": int(shared.sum())}
        if not train.any():
            fnotes["skipped"] = "no training samples"
        folds.append(Fold(protocol, name, seed, train_domains, np.flatnonzero(train), np.flatnonzero(val), test_idx,
                          held, fnotes))
    return folds, notes


def _split_fold(table: pd.DataFrame, groups: np.ndarray, seed: int, val_fraction: float, test_fraction: float,
                notes: dict) -> Fold:
    n = len(table)
    if "split" in table.columns and table["split"].notna().any():
        sp = normalize_split(table["split"]).fillna("").to_numpy(dtype=object)
        bad = sp == ""
        if bad.any():
            notes["excluded"]["missing_or_unknown_split"] = table["sample_id"].to_numpy()[bad].tolist()
        part = np.where(sp == "train", TRAIN, np.where(sp == "val", VAL, np.where(sp == "test", TEST, -1)))
        part = np.asarray(part, dtype=np.int8)
        part[bad] = -1
        notes["split_source"] = "split column"
        if not (part == TRAIN).any():
            raise UsageError("--protocol split: the split column has no 'train' rows")
        if not (part == TEST).any():
            carve = group_split(groups[part == TRAIN], val_fraction=0.0, test_fraction=test_fraction, seed=seed)
            sub = part[part == TRAIN]
            sub[carve == TEST] = TEST
            part[part == TRAIN] = sub
            notes["test_carved_from_train"] = True
        if not (part == VAL).any():
            carve = group_split(groups[part == TRAIN], val_fraction=0.0, test_fraction=val_fraction, seed=seed + 1)
            sub = part[part == TRAIN]
            sub[carve == TEST] = VAL
            part[part == TRAIN] = sub
            notes["val_carved_from_train"] = True
    else:
        part = group_split(groups, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
        notes["split_source"] = f"random group split (seed {seed})"
    # a group in test must not be trained or selected on: drop its train/val rows (the user's split leaked)
    test_groups = set(groups[part == TEST])
    shared = (part != TEST) & (part >= 0) & _member(groups, test_groups)
    val_groups = set(groups[(part == VAL) & ~shared])
    shared_tv = (part == TRAIN) & _member(groups, val_groups) & ~shared
    part = part.copy()
    part[shared | shared_tv] = -1
    dropped = shared | shared_tv
    if dropped.any():
        notes["excluded"]["group_in_two_splits"] = table["sample_id"].to_numpy()[dropped].tolist()
    has_domain = "domain" in table.columns
    dom = _domains(table) if has_domain else np.array([None] * n, dtype=object)
    train_domains = sorted({d for d in dom[part == TRAIN] if d is not None})
    test_idx = np.flatnonzero(part == TEST)
    held = np.array([dom[i] is not None and dom[i] not in train_domains for i in test_idx], dtype=bool)
    fnotes = {"n_shared_group_dropped": int(dropped.sum())}
    return Fold("split", "split", seed, train_domains, np.flatnonzero(part == TRAIN), np.flatnonzero(part == VAL),
                test_idx, held, fnotes)
