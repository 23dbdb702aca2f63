"""Profile building blocks against reference implementations: statistics (scipy, sklearn, statsmodels),
perceptual hash (imagehash), image statistics (numpy/scipy/skimage formulas), near-duplicate index (brute
force), the bad-files corpus, lazy pixel hashing, parallel scan, and row-order invariance (hypothesis)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from audit.io import decode
from audit.profile import ProfileConfig, profile_frame
from audit.profile import _stats as S
from audit.profile.neardup import brute_force_pairs, hamming_pairs


# ------------------------------------------------------------------------------------------- statistics
@pytest.mark.parametrize("shape", [(2, 2), (3, 4), (10, 2)])
def test_association_statistics_match_scipy_and_sklearn(shape):
    from scipy.stats import chi2_contingency
    from scipy.stats.contingency import association
    from sklearn.metrics import normalized_mutual_info_score

    rng = np.random.default_rng(sum(shape))
    a = rng.integers(0, shape[0], 500)
    b = (a + rng.integers(0, 2, 500) * rng.integers(0, shape[1], 500)) % shape[1]
    t = S.contingency(a, b, *shape)
    ref = chi2_contingency(t, correction=False)
    chi2, dof, p = S.chi2_test(t)
    assert chi2 == pytest.approx(ref.statistic) and dof == ref.dof and p == pytest.approx(ref.pvalue)
    assert S.cramers_v(t, corrected=False) == pytest.approx(association(t, method="cramer"))
    assert S.nmi(t) == pytest.approx(normalized_mutual_info_score(a, b))
    # Bergsma (2013) bias correction, written out
    n = t.sum()
    r, k = shape
    phi2 = ref.statistic / n
    phi2c = max(0.0, phi2 - (k - 1) * (r - 1) / (n - 1))
    rc, kc = r - (r - 1) ** 2 / (n - 1), k - (k - 1) ** 2 / (n - 1)
    assert S.cramers_v(t) == pytest.approx(np.sqrt(phi2c / min(kc - 1, rc - 1)))


def test_bias_corrected_v_is_near_zero_under_independence_and_bootstrap_covers():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 5, 2000), rng.integers(0, 2, 2000)
    t = S.contingency(a, b, 5, 2)
    assert S.cramers_v(t) < 0.05 < S.cramers_v(t, corrected=False) + 0.05
    bt = S.bootstrap_tables(a, b, 5, 2, None, 300, np.random.default_rng(0))
    assert bt.shape == (300, 5, 2) and (bt.sum(axis=(1, 2)) == 2000).all()
    # cluster bootstrap: a constant-per-cluster design keeps whole clusters together
    clusters = np.repeat(np.arange(400), 5)
    bt2 = S.bootstrap_tables(a, b, 5, 2, clusters, 50, np.random.default_rng(0))
    assert (bt2.sum(axis=(1, 2)) == 2000).all()


def _bh_reference(p):
    p = np.asarray(p, float)
    m = len(p)
    o = np.argsort(p)
    q = np.minimum.accumulate((p[o] * m / np.arange(1, m + 1))[::-1])[::-1]
    out = np.empty(m)
    out[o] = np.minimum(q, 1)
    return out


def test_bh_matches_definition():
    p = np.random.default_rng(2).random(40) ** 3
    assert np.allclose(S.bh(p), _bh_reference(p))
    q = S.bh(np.array([0.01, np.nan, 0.04]))
    assert np.isnan(q[1]) and np.allclose(q[[0, 2]], _bh_reference([0.01, 0.04]))


def test_residuals_and_wilson():
    from scipy.stats import binomtest

    t = np.array([[30, 10], [5, 25]])
    e, z, lift = S.residuals(t)
    n = t.sum()
    rs, cs = t.sum(1, keepdims=True), t.sum(0, keepdims=True)
    assert np.allclose(z, (t - e) / np.sqrt(e * (1 - rs / n) * (1 - cs / n)))
    assert np.allclose(lift, t / e)
    lo, hi = S.wilson([3, 0], [10, 0])
    ref = binomtest(3, 10).proportion_ci(method="wilson")
    assert lo[0] == pytest.approx(ref[0]) and hi[0] == pytest.approx(ref[1])
    assert np.isnan(lo[1]) and np.isnan(hi[1])


def test_balanced_accuracy_matches_sklearn():
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 300)
    pred = np.where(rng.random(300) < 0.6, y, rng.integers(0, 3, 300))
    v, lo, hi = S.balanced_accuracy_ci(y, pred, 3, 400, np.random.default_rng(0))
    assert v == pytest.approx(balanced_accuracy_score(y, pred))
    assert lo < v < hi


def test_associations_table_matches_scipy_on_demo_manifest(tmp_path):
    from scipy.stats import chi2_contingency

    rng = np.random.default_rng(4)
    n = 400
    lab = rng.choice(["p", "q", "r"], n)
    att = np.where(rng.random(n) < 0.7, np.where(lab == "p", "u", "v"), rng.choice(["u", "v"], n))
    m = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "filepath": [f"s{i}" for i in range(n)],
                      "label": lab, "attr.z": att}).astype("string")
    m["group"] = m["sample_id"]
    tables, _, status = profile_frame(m, config=ProfileConfig(checks=["associations"], n_boot=200))
    row = tables["associations"].iloc[0]
    ref = chi2_contingency(pd.crosstab(m["label"], m["attr.z"]).to_numpy(), correction=False)
    assert row.chi2 == pytest.approx(ref.statistic) and row.p == pytest.approx(ref.pvalue)
    assert row.ci_low <= row.value <= row.ci_high


# ------------------------------------------------------------------------------------------- image statistics
def _photo_crops(n=12, size=96):
    from sklearn.datasets import load_sample_images

    imgs = load_sample_images().images
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        src = imgs[k % 2]
        y, x = rng.integers(0, src.shape[0] - size), rng.integers(0, src.shape[1] - size)
        out.append(src[y : y + size, x : x + size].copy())
    return out


def test_batch_stats_match_reference_formulas():
    from scipy import ndimage
    from skimage.measure import shannon_entropy

    for arr in _photo_crops(4, 48):
        a = arr.astype(np.float64)
        st_, y = decode.image_stats(arr)
        r, g, b = a[..., 0], a[..., 1], a[..., 2]
        luma = 0.299 * r + 0.587 * g + 0.114 * b
        rg, yb = r - g, 0.5 * (r + g) - b
        assert st_["brightness"] == pytest.approx(luma.mean() / 255, rel=1e-5)
        assert st_["contrast"] == pytest.approx(luma.std() / 255, rel=1e-4)
        mx, mn = a.max(2), a.min(2)
        assert st_["saturation"] == pytest.approx(np.where(mx > 0, (mx - mn) / np.where(mx > 0, mx, 1), 0).mean(),
                                                  rel=1e-4)
        hs = np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
        assert st_["colorfulness"] == pytest.approx(hs, rel=1e-4)
        lap = ndimage.convolve(luma, np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], float))[1:-1, 1:-1]
        assert st_["sharpness"] == pytest.approx(lap.var(), rel=1e-3)
        assert st_["entropy"] == pytest.approx(shannon_entropy(np.clip(luma + 0.5, 0, 255).astype(np.uint8)), abs=1e-6)


def test_phash_agrees_with_imagehash():
    import imagehash

    diffs = []
    for arr in _photo_crops(16, 96):
        im = Image.fromarray(arr)
        mine = decode.phash_from_gray(np.asarray(im.convert("RGB"), np.float32) @ np.array([0.299, 0.587, 0.114]))
        ref = int(str(imagehash.phash(im)), 16)
        diffs.append(bin((mine & (2**64 - 1)) ^ ref).count("1"))
    # same bit order and nearly the same bits (resampling differs); a wrong bit order gives ~32
    assert np.mean(diffs) <= 3, diffs


# ------------------------------------------------------------------------------------------- near-duplicate index
@pytest.mark.parametrize("radius", [0, 1, 3, 6, 10])
def test_hamming_pairs_equal_brute_force(radius):
    rng = np.random.default_rng(radius)
    h = rng.integers(-(2**63), 2**63 - 1, size=4000, dtype=np.int64)
    src = rng.integers(0, 4000, 600)
    flips = rng.integers(0, 64, size=(600, 4))
    for s, d, f in zip(src, rng.integers(0, 4000, 600), flips, strict=True):
        x = int(h[s]) & (2**64 - 1)
        for bit in f[: rng.integers(0, 5)]:
            x ^= 1 << int(bit)
        h[d] = np.uint64(x).view(np.int64)
    h[100:150] = h[99]  # a bucket of identical hashes
    got, ref = hamming_pairs(h, radius), brute_force_pairs(h, radius)
    assert all(np.array_equal(g, r) for g, r in zip(got, ref, strict=True))
    assert len(got[0]) > 0
    for blocks in (radius + 1, 4):
        forced = hamming_pairs(h, radius, blocks=blocks)
        assert all(np.array_equal(g, r) for g, r in zip(forced, ref, strict=True))


# ------------------------------------------------------------------------------------------- bad files corpus
def _png_bytes(arr, mode=None):
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def _bomb_png(w=100_000, h=100_000):
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    good_jpg = io.BytesIO()
    Image.fromarray(rgb).save(good_jpg, format="JPEG", quality=90)
    jpg = good_jpg.getvalue()
    files = {
        "good.jpg": jpg,
        "truncated.jpg": jpg[: len(jpg) // 2],
        "zero.jpg": b"",
        "text.jpg": b"hello, I am text\n",
        "page.jpg": b"<!DOCTYPE html><html><body>404 not found</body></html>",
        "gray16.png": _png_bytes((rng.integers(0, 65535, (20, 30))).astype(np.uint16)),
        "palette.png": None,
        "rgba.png": _png_bytes(rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)),
        "one.png": _png_bytes(np.zeros((1, 1, 3), np.uint8)),
        "bomb.png": _bomb_png(),
        "png_named.jpg": _png_bytes(rgb),
    }
    for name, data in files.items():
        if data is not None:
            (root / name).write_bytes(data)
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(root / "palette.png")
    Image.fromarray(rgb).convert("CMYK").save(root / "cmyk.jpg", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(root / "rotated.jpg", quality=90, exif=exif.tobytes())
    return root


EXPECTED = {
    # name: (readable, error, extra checks)
    "good.jpg": (True, None, {"mode": "RGB", "channels": 3, "width": 60, "height": 40}),
    "truncated.jpg": (False, "truncated", {"format": "JPEG"}),
    "zero.jpg": (False, "empty_file", {"bytes": 0}),
    "text.jpg": (False, "not_an_image", {}),
    "page.jpg": (False, "not_an_image", {}),
    "gray16.png": (True, None, {"bit_depth": 16, "channels": 1}),
    "palette.png": (True, None, {"mode": "P"}),
    "rgba.png": (True, None, {"mode": "RGBA", "channels": 4}),
    "one.png": (True, None, {"width": 1, "height": 1}),
    "bomb.png": (False, "decompression_bomb", {"width": 100_000, "height": 100_000}),
    "png_named.jpg": (True, None, {"format": "PNG", "ext": "jpg", "ext_mismatch": True}),
    "cmyk.jpg": (True, None, {"mode": "CMYK", "channels": 4}),
    "rotated.jpg": (True, None, {"exif_orientation": 6, "width": 60, "height": 40}),
    "missing.jpg": (False, "missing_file", {}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_file_outcomes(bad_corpus, name):
    rec = decode.scan_image(bad_corpus / name, max_pixels=50_000_000)
    readable, error, extra = EXPECTED[name]
    assert rec["readable"] is readable and rec["error"] == error, rec
    for k, v in extra.items():
        assert rec[k] == v, (k, rec)
    if readable:
        assert all(np.isfinite(rec[s]) or s == "sharpness" for s in ("brightness", "contrast", "entropy"))
        assert rec["phash"] is not None and rec["md5"]


def test_bomb_is_refused_before_decoding(bad_corpus, monkeypatch):
    called = []
    monkeypatch.setattr(Image.Image, "load", lambda self: called.append(1))
    rec = decode.scan_image(bad_corpus / "bomb.png")
    assert rec["error"] == "decompression_bomb" and not called


def test_rotated_image_stats_use_displayed_orientation(bad_corpus):
    a = decode.scan_image(bad_corpus / "good.jpg", pixel_md5=True)
    b = decode.scan_image(bad_corpus / "rotated.jpg", pixel_md5=True)
    assert a["brightness"] == pytest.approx(b["brightness"], abs=0.01)
    assert a["pixel_md5"] != b["pixel_md5"]


def test_bad_corpus_through_profile_keeps_every_row(bad_corpus):
    names = sorted(EXPECTED)
    m = pd.DataFrame({"sample_id": names, "filepath": names, "label": ["a", "b"] * (len(names) // 2)}).astype("string")
    m["group"] = m["sample_id"]
    tables, findings, status = profile_frame(m, root=bad_corpus,
                                             config=ProfileConfig(max_pixels=50_000_000, n_boot=20, workers=1))
    im = tables["images"].set_index("sample_id")
    assert set(im.index) == set(names)
    for name, (readable, error, _) in EXPECTED.items():
        assert bool(im.loc[name, "readable"]) is readable
        assert (None if pd.isna(im.loc[name, "error"]) else im.loc[name, "error"]) == error
    kinds = {f.kind for f in findings}
    assert {"unreadable_file", "missing_file", "oversized_image", "extension_mismatch", "exif_orientation",
            "image_mode_mix"} <= kinds


def test_masks_are_normalized(tmp_path):
    m = np.zeros((8, 8), np.uint8)
    m[2:4, 2:4] = 255
    Image.fromarray(m).save(tmp_path / "m255.png")
    Image.fromarray(m > 0).save(tmp_path / "m1bit.png")
    pal = Image.fromarray((m > 0).astype(np.uint8) * 2, mode="L").convert("P")
    pal.save(tmp_path / "mpal.png")
    r = decode.scan_mask(tmp_path / "m255.png", n_classes=2, image_size=(8, 8))
    assert r["mask_encoding"] == "binary_0_255" and r["mask_classes"] == "0,1" and r["mask_error"] is None
    assert r["mask_class_pixels"] == [60, 4] and r["mask_class_objects"] == [0, 1]
    r = decode.scan_mask(tmp_path / "m1bit.png", n_classes=2, image_size=(8, 8))
    assert r["mask_encoding"] == "1bit" and r["mask_classes"] == "0,1"
    r = decode.scan_mask(tmp_path / "mpal.png", n_classes=3, image_size=(8, 8))
    assert r["mask_classes"] == "0,2" and r["mask_error"] is None
    r = decode.scan_mask(tmp_path / "mpal.png", n_classes=2, image_size=(8, 8))
    assert r["mask_error"] == "unexpected_classes"
    r = decode.scan_mask(tmp_path / "m255.png", n_classes=2, image_size=(16, 8))
    assert r["mask_error"] == "size_mismatch"
    r = decode.scan_mask(tmp_path / "m255.png", n_classes=5, image_size=(8, 8))
    assert r["mask_classes"] == "0,255" and r["mask_empty"] is True  # 255 = ignore with more classes


# ------------------------------------------------------------------------------------------- scan machinery
def test_pixel_identical_files_with_different_bytes_are_exact_duplicates(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png", compress_level=1)
    Image.fromarray(arr).save(tmp_path / "b.png", compress_level=9)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "c.png")
    # a slightly brighter copy: same phash, other statistics, so it cannot be pixel-identical: never re-decoded
    Image.fromarray(np.clip(arr.astype(int) + 3, 0, 255).astype(np.uint8)).save(tmp_path / "d.png")
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "b.png").read_bytes()
    names = ["a.png", "b.png", "c.png", "d.png"]
    m = pd.DataFrame({"sample_id": names, "filepath": names,
                      "split": ["train", "test", "train", "val"]}).astype("string")
    m["group"] = m["sample_id"]
    tables, findings, status = profile_frame(m, root=tmp_path, config=ProfileConfig(n_boot=10, workers=1))
    im = tables["images"].set_index("sample_id")
    eager = {n: decode.scan_image(tmp_path / n, pixel_md5=True)["pixel_md5"] for n in names}
    assert im.loc["a.png", "pixel_md5"] == im.loc["b.png", "pixel_md5"] == eager["a.png"]
    assert pd.isna(im.loc["c.png", "pixel_md5"])  # no phash twin: cannot be pixel-identical to anything
    assert im.loc["d.png", "phash"] == im.loc["a.png", "phash"] and pd.isna(im.loc["d.png", "pixel_md5"])
    dup = tables["duplicates"]
    assert dup.loc[dup["kind"] == "exact", ["a", "b", "kind", "basis"]].values.tolist() == [
        ["a.png", "b.png", "exact", "pixels"]]
    assert status["images"]["pixel_md5_redecoded"] == 2
    assert any(f.kind == "split_leakage" for f in findings)


def test_parallel_scan_equals_sequential(demo_classify):
    from audit.profile.scan import records_frame, scan_items

    table = pd.read_csv(demo_classify.table)
    items = [(str(demo_classify.root / p), None, None, None) for p in table["path"][:300]]
    seq = scan_items(items, max_pixels=10**8, workers=1, progress=False)
    par = scan_items(items, max_pixels=10**8, workers=2, chunk_size=32, progress=False)
    ids = list(table["path"][:300])
    a, b = records_frame(seq, ids, ids, False), records_frame(par, ids, ids, False)
    pd.testing.assert_frame_equal(a, b)


# ------------------------------------------------------------------------------------------- row order
def _synthetic(n=240, seed=0):
    rng = np.random.default_rng(seed)
    lab = rng.choice(["0", "1", "2"], n, p=[0.6, 0.3, 0.1])
    dom = rng.choice(["A", "B"], n)
    att = np.where(rng.random(n) < 0.5, np.where(lab == "0", "u", "v"), rng.choice(["u", "v"], n))
    ids = [f"s{i:04d}" for i in range(n)]
    m = pd.DataFrame({"sample_id": ids, "filepath": [f"d/{i}.jpg" for i in ids], "label": lab, "domain": dom,
                      "split": rng.choice(["train", "test"], n), "attr.z": att}).astype("string")
    m["group"] = pd.array([f"g{i // 3}" for i in range(n)], dtype="string")
    ph = rng.integers(-(2**62), 2**62, n)
    ph[10:14] = ph[0] ^ 3
    md5 = [f"{i:032x}" for i in range(n)]
    md5[20] = md5[21]
    im = pd.DataFrame({
        "sample_id": ids, "readable": True, "error": None, "format": np.where(dom == "A", "PNG", "JPEG"),
        "ext": np.where(dom == "A", "png", "jpg"), "mode": "RGB", "bytes": rng.integers(1000, 2000, n),
        "width": 32, "height": 32, "aspect": 1.0, "md5": md5, "pixel_md5": None, "phash": ph,
        "brightness": rng.random(n) + (dom == "B"), "contrast": rng.random(n), "saturation": rng.random(n),
        "colorfulness": rng.random(n), "sharpness": rng.random(n), "entropy": rng.random(n),
        "exif_orientation": None, "ext_mismatch": False, "bit_depth": 8,
    })
    im["error"] = im["error"].astype("string")
    im["pixel_md5"] = im["pixel_md5"].astype("string")
    return m, im


def _canon(tables, findings):
    out = {}
    for name, df in tables.items():
        if name == "images":
            continue
        d = df.copy()
        for c in d.columns:
            if d[c].dtype == object:
                d[c] = d[c].astype("string")
        out[name] = d.sort_values(list(d.columns[:4])).reset_index(drop=True)
    fs = sorted((f.id, f.severity, round(float(f.value), 9) if f.value is not None else None) for f in findings)
    return out, fs


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16))
def test_results_do_not_depend_on_row_order(seed):
    m, im = _synthetic()
    cfg = ProfileConfig(n_boot=50, seed=3,
                        checks=["distribution", "associations", "image_stats", "duplicates", "shortcuts"])
    base_t, base_f = _canon(*profile_frame(m, config=cfg, tables={"images": im})[:2])
    perm = np.random.default_rng(seed).permutation(len(m))
    t, f = _canon(*profile_frame(m.iloc[perm].reset_index(drop=True), config=cfg,
                                 tables={"images": im.iloc[perm[::-1]].reset_index(drop=True)})[:2])
    assert f == base_f
    for name in base_t:
        pd.testing.assert_frame_equal(t[name], base_t[name], check_dtype=False)
    assert any(x[0].startswith("shortcut") for x in base_f)  # domain A is all PNG


def test_group_leakage_is_found_and_default_groups_never_leak(tmp_path):
    """A subject (group) with samples in two splits leaks; 1 of 4 groups leaking (>= 1%) is critical."""
    rng = np.random.default_rng(0)
    names = [f"{i}.png" for i in range(8)]
    for n in names:
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / n)
    m = pd.DataFrame({"sample_id": names, "filepath": names,
                      "split": ["train", "train", "train", "test", "test", "test", "train", "test"],
                      "group": ["s1", "s1", "s2", "s2", "s3", "s3", "s4", "s4"]}).astype("string")
    _, findings, _ = profile_frame(m, root=tmp_path, config=ProfileConfig(n_boot=10, workers=1, checks=["duplicates"]))
    leak = [f for f in findings if f.kind == "group_leakage"]
    assert len(leak) == 1 and leak[0].severity == "critical"
    assert leak[0].value == 0.5 and leak[0].evidence["groups"] == ["s2", "s4"]
    m["group"] = m["sample_id"]  # the default: one group per sample
    _, findings, _ = profile_frame(m, root=tmp_path, config=ProfileConfig(n_boot=10, workers=1, checks=["duplicates"]))
    assert not [f for f in findings if f.kind == "group_leakage"]


def test_decode_errors_carry_no_object_addresses():
    import io as _io

    from audit.io.decode import error_text

    try:
        Image.open(_io.BytesIO(b"not an image"))
    except Exception as e:  # PIL names the buffer: <_io.BytesIO object at 0x7f...>
        assert "0x" not in error_text(e) and error_text(e) == "UnidentifiedImageError: cannot identify image file"


def test_noise_estimate_recovers_the_added_noise_at_any_image_size():
    """Immerkaer's estimator: close to the sigma of added Gaussian noise on smooth content, ~0 without noise, and the
    same for a large image (measured on the full-resolution central crop, not the reduced statistics image)."""
    from PIL import Image

    from audit.io.decode import noise_sigma

    rng = np.random.default_rng(0)

    def img(side, sigma):
        yy, xx = np.mgrid[0:side, 0:side] / side
        base = 60 + 120 * xx + 40 * yy  # a smooth gradient: no structure the mask keeps
        return Image.fromarray(np.clip(base + rng.normal(0, sigma, (side, side)), 0, 255).astype(np.uint8)).convert(
            "RGB")

    assert noise_sigma(img(256, 0.0)) < 0.6  # quantization only
    for sigma in (4.0, 12.0):
        small, large = noise_sigma(img(200, sigma)), noise_sigma(img(1200, sigma))
        assert small == pytest.approx(sigma, rel=0.15) and large == pytest.approx(sigma, rel=0.15)
    assert noise_sigma(Image.new("RGB", (2, 2))) is None
