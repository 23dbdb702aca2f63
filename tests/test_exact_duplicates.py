"""audit.profile.exact: the vectorized exact-duplicate clusters equal a plain union-find over the groups."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from audit.profile.exact import MAX_CLIQUE, exact_clusters


def _reference(im: pd.DataFrame, ok: np.ndarray):
    """The former loop: union-find over byte groups, then pixel groups not inside one byte group."""
    n = len(im)
    parent = np.arange(n)

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    pairs = []
    empty = (im["error"] == "empty_file").fillna(False).to_numpy()
    for key, basis in (("md5", "bytes"), ("pixel_md5", "pixels")):
        col = im[key]
        valid = col.notna().to_numpy() & (ok | (key == "md5")) & ~empty
        sub = pd.Series(np.flatnonzero(valid), index=col[valid].astype(str).to_numpy())
        for _, idx in sub.groupby(level=0, sort=True):
            m = np.sort(idx.to_numpy())
            if len(m) < 2 or (basis == "pixels" and len({find(x) for x in m}) == 1):
                continue
            for x in m[1:]:
                ra, rb = find(m[0]), find(x)
                parent[max(ra, rb)] = min(ra, rb)
            if len(m) <= MAX_CLIQUE:
                i, j = np.triu_indices(len(m), 1)
                pairs += [(basis, int(a), int(b)) for a, b in zip(m[i], m[j], strict=True)]
            else:
                pairs += [(basis, int(m[0]), int(b)) for b in m[1:]]
    return sorted(pairs), np.array([find(x) for x in range(n)])


@pytest.mark.parametrize("trial", range(12))
def test_same_pairs_and_roots_as_union_find(trial):
    rng = np.random.default_rng(trial)
    n = int(rng.integers(1, 300))
    code = rng.integers(0, max(2, n // 3), n)
    if trial % 4 == 0:
        code[: min(n, 2 * MAX_CLIQUE)] = 10**6  # one group larger than MAX_CLIQUE: a star, not a clique
    pix = (code // int(rng.integers(1, 4))).astype(str).astype(object)  # byte copies decode to the same pixels
    pix[rng.random(n) < 0.2] = None  # unreadable: no pixels, bytes still compared
    im = pd.DataFrame({"md5": code.astype(str), "pixel_md5": pix,
                       "error": np.where(rng.random(n) < 0.05, "empty_file", None)})
    ok = pd.notna(pix)
    want_pairs, want_roots = _reference(im, ok)
    groups, roots = exact_clusters(im, ok)
    got = sorted((g.basis, int(a), int(b)) for g in groups for a, b in zip(g.i, g.j, strict=True))
    assert got == want_pairs
    np.testing.assert_array_equal(roots, want_roots)


def test_no_rows_and_no_duplicates():
    im = pd.DataFrame({"md5": pd.Series([], dtype=object), "pixel_md5": pd.Series([], dtype=object),
                       "error": pd.Series([], dtype=object)})
    groups, roots = exact_clusters(im, np.zeros(0, bool))
    assert len(roots) == 0 and all(len(g.i) == 0 for g in groups)
    im = pd.DataFrame({"md5": ["a", "b"], "pixel_md5": ["x", "y"], "error": [None, None]})
    groups, roots = exact_clusters(im, np.ones(2, bool))
    assert roots.tolist() == [0, 1] and all(len(g.i) == 0 for g in groups)
