"""Near duplicates on real image files: transformed copies found with their basis, hard negatives left alone,
attribute conflicts between copies, and the leakage severity following the strength of the evidence.

The images come from ``bench/dupdata.py`` (the generator of ``bench/duplicates.py``, numpy + PIL, seeded):
varied procedural scenes, their copies under each transform of the issue, similar scenes (same background,
palette and texture, shapes moved) and fundus-like images (same circular layout and colours, a different
vessel tree), the kind of homogeneous imagery that defeats a global hash.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audit.profile import ProfileConfig, profile_frame

_SPEC = importlib.util.spec_from_file_location(
    "bench_dupdata", Path(__file__).resolve().parents[1] / "bench" / "dupdata.py")
dupdata = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(dupdata)

# what the basis of each transform's pair must name (a rescale of a whole image is a same-frame re-save; a rotation
# of 2-5 degrees in place may be fitted as a slight zoom: its black corners are cropped away, so "crop" is right too)
EXPECTED_BASIS = {"crop": {"crop"}, "hflip": {"flip"}, "rotate": {"rotate", "crop"}, "brightness": {"tone"},
                  "contrast": {"tone"}}


def _profile(rows: list[dict], root: Path):
    m = pd.DataFrame(rows).astype("string")
    cfg = ProfileConfig(seed=0, n_boot=10, workers=1, checks=["images", "duplicates"])
    tables, findings, status = profile_frame(m, root=root, config=cfg)
    return tables["duplicates"], findings, status


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """24 scenes; one copy of each of 16 under every transform (twice round); 6 look-alike pairs; 12 fundus."""
    root = tmp_path_factory.mktemp("near")
    (root / "img").mkdir()
    rng = np.random.default_rng(7)
    rows, copies, alike = [], [], []

    def save(im, name, split):
        rel = f"img/{name}.jpg"
        im.save(root / rel, quality=90)
        rows.append({"sample_id": rel, "filepath": rel, "label": str(len(rows) % 3), "split": split})
        return rel

    names = list(dupdata.TRANSFORMS)
    for k in range(24):
        im, lay = dupdata.scene(rng, *(int(x) for x in rng.choice([192, 256, 320], 2)))
        a = save(im, f"s{k:02d}", "train")
        if k < 16:
            t = names[k % len(names)]
            copies.append((a, save(dupdata.transform(im, t, rng), f"s{k:02d}_{t.replace('+', '_')}", "test"), t))
        elif k < 22:
            alike.append((a, save(dupdata.similar_scene(rng, lay, im.width, im.height), f"s{k:02d}_alike", "test")))
    for k in range(12):
        save(dupdata.fundus(rng, 256), f"f{k:02d}", "train" if k % 2 else "test")
    dup, findings, status = _profile(rows, root)
    return dup, findings, status, copies, alike


def _pairs(dup: pd.DataFrame) -> dict[frozenset, pd.Series]:
    return {frozenset((r.a, r.b)): r for r in dup.itertuples()}


def test_transformed_copies_are_found_with_their_basis(planted):
    dup, _, status, copies, _ = planted
    found = _pairs(dup[dup["kind"] == "near"])
    hit = [(t, found.get(frozenset((a, b)))) for a, b, t in copies]
    assert sum(r is not None for _, r in hit) >= len(copies) - 2, [t for t, r in hit if r is None]
    for t, r in hit:
        if r is None:
            continue
        assert 0 < r.similarity <= 1 and r.regions >= 4 and r.evidence in ("strong", "verified")
        if t in EXPECTED_BASIS:
            assert EXPECTED_BASIS[t] & set(r.basis.split("+")), (t, r.basis)
    assert status["duplicates"]["near_method"] == "views+local"


def test_lookalikes_and_fundus_images_are_not_paired(planted):
    dup, _, _, _, alike = planted
    found = set(_pairs(dup))
    assert not found & {frozenset(p) for p in alike}
    fundus = [p for p in found if all(Path(x).name.startswith("f") for x in p)]
    assert fundus == []  # homogeneous imagery: same layout and colours, different vessels


def test_copies_across_splits_are_leakage_whose_severity_follows_the_evidence(planted):
    dup, findings, _, _, _ = planted
    leak = [f for f in findings if f.kind == "split_leakage"]
    assert len(leak) == 1 and dup["cross_split"].any()
    firm = dup[dup["cross_split"]]["evidence"].isin(["exact", "strong"]).any()
    assert leak[0].severity == ("critical" if firm else "warning")
    assert set(leak[0].evidence["by_split_pair"]) == {"test | train"}


def test_attribute_conflicts_between_copies_are_reported_per_attribute(tmp_path):
    rng = np.random.default_rng(3)
    (tmp_path / "img").mkdir()
    rows = []
    for k in range(6):
        im, _ = dupdata.scene(rng, 224, 224)
        for c in range(2):
            rel = f"img/p{k}_{c}.jpg"
            (im if c == 0 else dupdata.transform(im, "jpeg40", rng)).save(tmp_path / rel, quality=95)
            # the first two pairs disagree on age, the third on sex; labels agree everywhere
            age = str(30 + (c if k < 2 else 0))
            sex = ("f" if c else "m") if k == 2 else "m"
            rows.append({"sample_id": rel, "filepath": rel, "label": "x", "attr.age": age, "attr.sex": sex})
    dup, findings, _ = _profile(rows, tmp_path)
    conf = {f.evidence["attribute"]: f for f in findings if f.kind == "attribute_conflict"}
    assert set(conf) == {"attr.age", "attr.sex"}
    assert conf["attr.age"].n == 2 and conf["attr.sex"].n == 1 and conf["attr.age"].severity == "info"  # near: info
    assert conf["attr.age"].title == "2 near-identical image pairs disagree on age"
    assert not any(f.kind == "label_conflict" for f in findings)
    pairs = dup.set_index(["a", "b"])["attribute_conflicts"]
    assert pairs.loc[("img/p0_0.jpg", "img/p0_1.jpg")] == "attr.age"
    assert pairs.loc[("img/p2_0.jpg", "img/p2_1.jpg")] == "attr.sex"
    # the dashboard's duplicate pane says why each pair matched, in words
    from audit.views import duplicate_reason

    row = dup.set_index(["a", "b"]).loc[("img/p0_0.jpg", "img/p0_1.jpg")].to_dict() | {"kind": "near"}
    why = duplicate_reason(row)
    assert why.startswith("near duplicate: ") and "local similarity 0." in why and why.endswith("disagree on age")
    assert duplicate_reason({"kind": "exact", "basis": "bytes"}) == "exact duplicate: byte-identical files"


def test_ratio_test_rejects_a_match_that_does_not_stand_out_unless_the_rivals_are_copies_too():
    from audit.profile.neardup import _distinct

    ga, gb = np.array([0, 0, 3]), np.array([1, 2, 4])
    sim = np.array([0.85, 0.80, 0.95])
    # 0-1 at 0.85 has a rival 0-2 at 0.80 (within 0.1) and 1-2 is no candidate: a repeated texture, rejected
    assert _distinct(ga, gb, sim, np.array([0, 2])).tolist() == [False, True]
    # the rival is a copy of the partner too (1-2 verified at 0.9): three copies of one picture, all kept
    ga2, gb2, sim2 = np.append(ga, 1), np.append(gb, 2), np.append(sim, 0.9)
    assert _distinct(ga2, gb2, sim2, np.array([0, 1, 3])).all()
    # a rival far below (0.6 against 0.85) is no objection
    assert _distinct(ga, gb, np.array([0.85, 0.6, 0.95]), np.array([0])).all()


def test_self_similarity_tells_repetitive_regions_from_distinct_ones():
    from audit.profile.nearverify import REPETITIVE, _bandpass, self_similarity

    yy, xx = np.mgrid[0:64, 0:64].astype(float)
    rng = np.random.default_rng(0)
    stripes = 128 + 40 * np.sin(0.9 * (np.cos(0.5) * xx + np.sin(0.5) * yy)) + rng.normal(0, 2, (64, 64))
    checker = 128 + 40 * np.sign(np.sin(0.8 * xx) * np.sin(0.8 * yy))
    from PIL import Image

    small = Image.fromarray(rng.uniform(0, 255, (12, 12)).astype(np.float32))
    blobs = np.asarray(small.resize((64, 64), Image.Resampling.BICUBIC))  # blobs of every shape, nothing repeats
    ss = self_similarity(_bandpass(np.stack([stripes, checker, blobs]).astype(np.float32)))
    assert (ss[0] >= REPETITIVE).all() and (ss[1] >= REPETITIVE).all()
    assert np.median(ss[2]) < 0.5 and (ss[2] < REPETITIVE).mean() >= 0.75


def test_scenes_on_one_periodic_texture_are_not_copies_but_their_crops_are(tmp_path):
    """Different scenes on the same stripes or checker agree in every stripe region; only the regions that do not
    repeat themselves tell them apart. A crop of such a scene is still found."""
    rng = np.random.default_rng(11)
    (tmp_path / "img").mkdir()
    rows, twins, copies = [], [], []

    def save(im, name):
        rel = f"img/{name}.jpg"
        im.save(tmp_path / rel, quality=90)
        rows.append({"sample_id": rel, "filepath": rel, "label": "x", "split": ["train", "test"][len(rows) % 2]})
        return rel

    for k in range(12):
        a, b = dupdata.texture_twins(rng, 256, 256)
        twins.append((save(a, f"t{k}_a"), save(b, f"t{k}_b")))
        if k < 8:  # crops and rotations: the geometric matches the repetition test applies to
            t = ("crop", "rotate")[k % 2]
            copies.append((twins[-1][0], save(dupdata.transform(a, t, rng), f"t{k}_a_{t}")))
    for k in range(8):  # other scenes, so the candidates' background is not only stripes
        save(dupdata.scene(rng, 256, 256)[0], f"s{k}")
    dup, findings, _ = _profile(rows, tmp_path)
    found = set(_pairs(dup))
    twin_pairs = [p for p in found if all(Path(x).stem.startswith("t") and Path(x).stem.count("_") == 1 for x in p)]
    assert twin_pairs == []
    # scenes that are mostly texture give little to verify: half of these crops and rotations are found
    assert sum(frozenset(c) in found for c in copies) >= 4, [c for c in copies if frozenset(c) not in found]


def test_repetition_test_rejects_a_shared_stripe_background_and_keeps_a_copy():
    """Verification on thumbnails: stripes with different blobs on them agree in most regions (similarity above
    the threshold), but the regions that do not repeat themselves disagree; a re-noised copy agrees there too."""
    from audit.profile.nearverify import texture_test, verify_pairs

    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:64, 0:64].astype(float)
    stripes = 128 + 45 * np.sin(0.8 * (np.cos(0.4) * xx + np.sin(0.4) * yy))

    def blobs(k):
        im = stripes.copy()
        for _ in range(k):
            cx, cy, r = rng.uniform(8, 56), rng.uniform(8, 56), rng.uniform(3, 6)
            im[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.uniform(0, 255)
        return im

    a, b = blobs(3), blobs(3)
    copy = a + rng.normal(0, 3, a.shape)
    thumbs = np.clip(np.stack([a, b, copy]), 0, 255).astype(np.uint8)
    ident = np.array([[1.0, 1.0, 0.0, 0.0, 0.0]] * 2)
    res = verify_pairs(thumbs, np.array([0, 0]), np.array([1, 2]), ident, np.zeros(2, bool), prefilter=-1.0,
                       distinct_from=0.0)
    assert res["similarity"][0] >= 0.8  # region agreement alone would call the two a copy
    assert res["distinct"][0] >= 2 and res["distinct_similarity"][0] < 0.85
    assert texture_test(res).tolist() == [False, True]


def test_crops_between_the_view_scales_are_rescued_by_the_finer_fit():
    """Real photographs (scikit-learn's two sample photos, windows of 300 px) cropped to 78-84% per side, a scale
    between the view windows' (0.76, 0.88): the 16x16 fit leaves them a few percent off, and the finer 32x32 fit
    of the pairs just under the threshold brings them to a copy's similarity. It never lowers a pair's
    similarity, and a window against a crop of the other photo stays far below the threshold (windows of one photo
    may overlap: those are partial copies)."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    from audit.io.neardesc import desc_thumb, view_hashes
    from audit.profile.neardup import _hypotheses
    from audit.profile.nearverify import verify_pairs

    rng = np.random.default_rng(0)
    thumbs = []
    for src in load_sample_images().images:
        for _ in range(12):
            y, x = rng.integers(0, src.shape[0] - 300), rng.integers(0, src.shape[1] - 300)
            im = Image.fromarray(src[y:y + 300, x:x + 300])
            f = rng.uniform(0.78, 0.84, 2)
            x0, y0 = rng.uniform(0, 1 - f[0]) * 300, rng.uniform(0, 1 - f[1]) * 300
            crop = im.crop((int(x0), int(y0), int(x0 + f[0] * 300), int(y0 + f[1] * 300)))
            thumbs += [desc_thumb(im), desc_thumb(crop)]
    thumbs = np.stack(thumbs)
    codes = view_hashes(thumbs)
    ga, gb = np.arange(0, len(thumbs), 2), np.arange(1, len(thumbs), 2)

    def sims(a, b, threshold):
        hyp, flip = _hypotheses(codes, a, b)
        return np.nan_to_num(verify_pairs(thumbs, a, b, hyp, flip, distinct_from=threshold)["similarity"], nan=-1)

    coarse, fine = sims(ga, gb, -np.inf), sims(ga, gb, 0.8)  # -inf: no pair is under the threshold, none rescued
    assert (fine >= coarse).all()
    rescued = (fine >= 0.8) & (coarse < 0.8)
    assert rescued.sum() >= 3 and (fine[rescued] >= 0.9).all(), (coarse, fine)
    others = sims(ga, np.roll(gb, len(gb) // 2), 0.8)  # each window against a crop of the other photo
    assert (others < 0.6).all(), others
