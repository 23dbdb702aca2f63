"""Exact duplicates, vectorized: byte-identical and pixel-identical clusters of the scanned images.

Rows sharing a hash (``md5`` of the file bytes, ``pixel_md5`` of the decoded pixels) are grouped with
``pandas.factorize`` and joined into clusters with ``scipy.sparse.csgraph.connected_components``: no Python loop
over rows or groups, so a million rows take well under a second. A cluster's representative (its *root*) is its
smallest row index. Pairs are all pairs of a group up to :data:`MAX_CLIQUE` members, and a star around the
group's first member beyond that (a thousand copies of one image are 999 pairs, not half a million).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

__all__ = ["MAX_CLIQUE", "ExactPairs", "exact_clusters", "group_pairs"]

MAX_CLIQUE = 50


class ExactPairs:
    """The exact pairs of one basis (``bytes`` or ``pixels``): row indices ``i < j`` in each group."""

    def __init__(self, basis: str, i: np.ndarray, j: np.ndarray):
        self.basis, self.i, self.j = basis, i, j


def _groups(keys: pd.Series, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows (sorted within each group) and group codes (sorted) of the groups of >= 2 valid rows sharing a key."""
    idx = np.flatnonzero(valid)
    codes = pd.factorize(keys[valid].astype(str).to_numpy(), sort=True)[0]
    order = np.lexsort((idx, codes))
    idx, codes = idx[order], codes[order]
    big = np.bincount(codes)[codes] >= 2 if len(codes) else np.zeros(0, bool)
    idx, codes = idx[big], codes[big]
    _, codes = np.unique(codes, return_inverse=True)
    return idx, codes.astype(np.int64)


def group_pairs(idx: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of every group: all pairs up to MAX_CLIQUE members, a star around the first member beyond."""
    if not len(idx):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    sizes = np.diff(np.r_[starts, len(idx)])
    first = np.repeat(idx[starts], sizes)
    star = np.repeat(sizes > MAX_CLIQUE, sizes)
    head = np.zeros(len(idx), bool)
    head[starts] = True
    pa, pb = [first[star & ~head]], [idx[star & ~head]]
    for k in np.unique(sizes[sizes <= MAX_CLIQUE]):
        rows = starts[sizes == k][:, None] + np.arange(k)[None, :]  # groups of k members, one per row
        members = idx[rows]
        a, b = np.triu_indices(int(k), 1)
        pa.append(members[:, a].ravel())
        pb.append(members[:, b].ravel())
    return np.concatenate(pa).astype(np.int64), np.concatenate(pb).astype(np.int64)


def exact_clusters(im: pd.DataFrame, ok: np.ndarray) -> tuple[list[ExactPairs], np.ndarray]:
    """Pairs per basis and each row's cluster root (its smallest row index; the row itself when unique).

    ``md5`` counts for every file that is not empty (an unreadable file can still be a byte copy); ``pixel_md5``
    only for readable images. A pixel group whose members are all one byte group adds nothing and is left out.
    """
    n = len(im)
    not_empty = ~(im["error"] == "empty_file").fillna(False).to_numpy(bool)
    out, edges_a, edges_b = [], [], []
    byte_code = np.full(n, -1, np.int64)
    for key, basis in (("md5", "bytes"), ("pixel_md5", "pixels")):
        col = im[key]
        valid = col.notna().to_numpy(bool) & not_empty & (ok if key == "pixel_md5" else True)
        idx, codes = _groups(col, valid)
        if basis == "bytes":
            byte_code[idx] = codes
        elif len(idx):  # drop pixel groups lying inside one byte group
            bc = byte_code[idx]
            lo = np.full(codes.max() + 1, np.iinfo(np.int64).max)
            hi = np.full(codes.max() + 1, np.iinfo(np.int64).min)
            np.minimum.at(lo, codes, bc)
            np.maximum.at(hi, codes, bc)
            keep = ~((lo == hi) & (lo >= 0))[codes]
            idx, codes = idx[keep], np.unique(codes[keep], return_inverse=True)[1].astype(np.int64)
        i, j = group_pairs(idx, codes)
        out.append(ExactPairs(basis, i, j))
        edges_a.append(i)
        edges_b.append(j)
    a, b = np.concatenate(edges_a), np.concatenate(edges_b)
    graph = sp.coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    root = np.full(label.max() + 1 if n else 0, n, np.int64)
    np.minimum.at(root, label, np.arange(n))
    return out, root[label] if n else np.zeros(0, np.int64)
