"""dynamicrad.lut_entry: the built-in table's default modes, validation, LUT files and the
geometry conversion of dynamic-threshold taus."""

from __future__ import annotations

import json

import pytest

import dynamicrad
from dynamicrad import Geometry, LutEntry, Selection

DEFAULT_MODE = {"low": "static-ratio", "mid": "static-ratio", "high": "dynamic-threshold"}
PRIOR_KEYS = {"gamma", "lambda", "theta_m", "theta_c", "dense_adjacent", "first_frame_sink"}

# A geometry unlike the Wan2.1-14B 720p one the built-in table is calibrated for.
TINY = Geometry(frames=5, height=8, width=8, heads=2, head_dim=64, block_size=32)


@pytest.mark.parametrize("regime", ["low", "mid", "high"])
def test_default_mode(regime):
    entry = dynamicrad.lut_entry(regime)
    assert isinstance(entry, LutEntry) and isinstance(entry.selection, Selection)
    assert entry.regime == regime
    assert entry.selection.mode == DEFAULT_MODE[regime]
    assert set(entry.prior) == PRIOR_KEYS
    explicit = dynamicrad.lut_entry(regime, DEFAULT_MODE[regime])
    assert explicit == entry


@pytest.mark.parametrize("regime", ["low", "mid", "high"])
@pytest.mark.parametrize("mode", ["static-ratio", "dynamic-threshold"])
def test_every_row_exists(regime, mode):
    entry = dynamicrad.lut_entry(regime, mode)
    assert entry.regime == regime and entry.selection.mode == mode
    s = entry.selection
    if mode == "static-ratio":
        assert 0 < s.r_far <= 1 and 0 < s.r_near <= 1
    else:
        assert s.tau_near > 0 and s.tau_far > 0


def test_rows_differ_between_regimes():
    rows = [dynamicrad.lut_entry(r, "static-ratio") for r in ("low", "mid", "high")]
    assert len({json.dumps(r.prior, sort_keys=True) for r in rows}) == 3


@pytest.mark.parametrize("regime", ["medium", "HIGH", ""])
def test_unknown_regime(regime):
    with pytest.raises(ValueError, match=rf"regime = {regime!r}"):
        dynamicrad.lut_entry(regime)


@pytest.mark.parametrize("mode", ["foo", "static", "dynamic_threshold"])
def test_unknown_mode(mode):
    with pytest.raises(ValueError, match=rf"mode = {mode!r}"):
        dynamicrad.lut_entry("mid", mode)


def _built_in_rows() -> list:
    rows = []
    for regime in ("low", "mid", "high"):
        for mode in ("static-ratio", "dynamic-threshold"):
            e = dynamicrad.lut_entry(regime, mode)
            s = e.selection
            sel = {"r_near": s.r_near, "r_far": s.r_far} if mode == "static-ratio" else {
                "tau_near": s.tau_near, "tau_far": s.tau_far}
            rows.append({"regime": regime, "mode": mode, "prior": e.prior, "selection": sel})
    return rows


def test_lut_file_round_trip(tmp_path):
    rows = _built_in_rows()
    rows[0]["prior"]["gamma"] = 2.5
    rows[0]["selection"]["r_near"] = 0.125
    path = tmp_path / "lut.json"
    path.write_text(json.dumps({"format": "dynamicrad-lut", "version": 1, "rows": rows}))
    entry = dynamicrad.lut_entry("low", "static-ratio", lut=str(path))
    assert entry.prior["gamma"] == 2.5 and entry.selection.r_near == 0.125
    assert dynamicrad.lut_entry("high", lut=path) == dynamicrad.lut_entry("high")  # a Path works too


@pytest.mark.parametrize(
    "text",
    [
        "{ this is not json",
        json.dumps({"format": "dynamicrad-lut", "version": 1, "rows": [{"regime": "low"}]}),
        json.dumps({"format": "something-else", "version": 1, "rows": []}),
    ],
    ids=["syntax", "missing-fields", "wrong-format"],
)
def test_corrupt_lut_file_names_the_file(tmp_path, text):
    path = tmp_path / "broken-lut.json"
    path.write_text(text)
    with pytest.raises(ValueError, match="broken-lut.json"):
        dynamicrad.lut_entry("low", lut=str(path))


def test_bad_field_in_lut_file_names_the_field(tmp_path):
    rows = _built_in_rows()
    rows[2]["prior"]["gamma"] = -1.0
    path = tmp_path / "lut.json"
    path.write_text(json.dumps({"format": "dynamicrad-lut", "version": 1, "rows": rows}))
    with pytest.raises(ValueError, match=r"lut\.json.*rows\[2\]\.prior\.gamma"):
        dynamicrad.lut_entry("mid", lut=str(path))


def test_missing_lut_file(tmp_path):
    path = tmp_path / "nowhere.json"
    with pytest.raises(OSError, match=r"nowhere.json: cannot open for reading"):
        dynamicrad.lut_entry("low", lut=str(path))
    with pytest.raises(OSError, match=r"is a directory"):
        dynamicrad.lut_entry("low", lut=str(tmp_path))


def test_missing_row(tmp_path):
    rows = [r for r in _built_in_rows() if not (r["regime"] == "high" and r["mode"] == "dynamic-threshold")]
    path = tmp_path / "lut.json"
    path.write_text(json.dumps({"format": "dynamicrad-lut", "version": 1, "rows": rows}))
    with pytest.raises(ValueError, match=rf"^{path}: no row for regime high and mode dynamic-threshold"):
        dynamicrad.lut_entry("high", lut=str(path))


@pytest.mark.parametrize("regime", ["low", "mid", "high"])
def test_geometry_converts_dynamic_threshold_taus(regime):
    plain = dynamicrad.lut_entry(regime, "dynamic-threshold")
    converted = dynamicrad.lut_entry(regime, "dynamic-threshold", geometry=TINY)
    assert converted.selection.mode == "dynamic-threshold"
    assert converted.prior == plain.prior
    assert (converted.selection.tau_near, converted.selection.tau_far) != (plain.selection.tau_near, plain.selection.tau_far)
    # tau_rel = tau * n_row is what is invariant: both taus scale by one factor, n_row(720p) / n_row(tiny),
    # which is > 1 (a tiny geometry has far fewer blocks per row).
    near = converted.selection.tau_near / plain.selection.tau_near
    far = converted.selection.tau_far / plain.selection.tau_far
    assert near == pytest.approx(far, rel=1e-9)
    assert near > 1.0
    # Converting from the calibration geometry to another preset: the explicit default is the same.
    explicit = dynamicrad.lut_entry(regime, "dynamic-threshold", geometry=TINY, lut_geometry="wan2.1-14b-720p")
    assert explicit == converted


@pytest.mark.parametrize("regime", ["low", "mid", "high"])
def test_geometry_leaves_static_ratio_rows_unchanged(regime):
    plain = dynamicrad.lut_entry(regime, "static-ratio")
    converted = dynamicrad.lut_entry(regime, "static-ratio", geometry=TINY)
    assert converted == plain


def test_unknown_lut_geometry_preset():
    with pytest.raises(ValueError, match="not-a-preset"):
        dynamicrad.lut_entry("high", geometry=TINY, lut_geometry="not-a-preset")


def test_conversion_to_the_calibration_geometry_is_the_identity():
    wan720 = Geometry(frames=21, height=45, width=80, heads=40, head_dim=128, block_size=128)
    for regime in ("low", "mid", "high"):
        plain = dynamicrad.lut_entry(regime, "dynamic-threshold").selection
        same = dynamicrad.lut_entry(regime, "dynamic-threshold", geometry=wan720).selection
        assert same.tau_near == pytest.approx(plain.tau_near, rel=1e-9)
        assert same.tau_far == pytest.approx(plain.tau_far, rel=1e-9)


def _write_lut(path, calibrated_for=None):
    doc = {"format": "dynamicrad-lut", "version": 1, "rows": _built_in_rows()}
    if calibrated_for is not None:
        doc = {"format": "dynamicrad-lut", "version": 1, "calibrated_for": calibrated_for, "rows": doc["rows"]}
    path.write_text(json.dumps(doc))
    return str(path)


def test_lut_without_calibration_needs_lut_geometry_to_convert(tmp_path):
    """A LUT that does not say which geometry its taus are for is not converted by guesswork."""
    path = _write_lut(tmp_path / "lut.json")
    with pytest.raises(ValueError, match="lut_geometry"):
        dynamicrad.lut_entry("high", "dynamic-threshold", lut=path, geometry=TINY)
    given = dynamicrad.lut_entry("high", "dynamic-threshold", lut=path, geometry=TINY, lut_geometry="wan2.1-14b-720p")
    assert given == dynamicrad.lut_entry("high", "dynamic-threshold", geometry=TINY)
    # static-ratio rows need no conversion, so no calibration either
    assert dynamicrad.lut_entry("low", "static-ratio", lut=path, geometry=TINY).selection.r_near > 0


def test_lut_calibration_is_read_from_the_file(tmp_path):
    wan = dynamicrad.lut_entry("high", "dynamic-threshold", lut=_write_lut(tmp_path / "w.json", "wan2.1-14b-720p"),
                               geometry=TINY)
    hunyuan = dynamicrad.lut_entry("high", "dynamic-threshold",
                                   lut=_write_lut(tmp_path / "h.json", "hunyuan-720p"), geometry=TINY)
    assert wan == dynamicrad.lut_entry("high", "dynamic-threshold", geometry=TINY)
    assert hunyuan.selection.tau_near != wan.selection.tau_near
    with pytest.raises(ValueError, match=r"lut_geometry.*contradicts.*hunyuan-720p"):
        dynamicrad.lut_entry("high", "dynamic-threshold", lut=str(tmp_path / "h.json"), geometry=TINY,
                             lut_geometry="wan2.1-14b-720p")


def test_unknown_calibration_preset_in_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"lut\.json: calibrated_for.*unknown preset"):
        dynamicrad.lut_entry("high", lut=_write_lut(tmp_path / "lut.json", "wan9-720p"))


def test_geometry_presets():
    g = Geometry.preset("wan2.1-14b-720p")
    assert (g.frames, g.height, g.width, g.heads, g.head_dim, g.block_size) == (21, 45, 80, 40, 128, 128)
    h = Geometry.preset("hunyuan-720p", block_size=64)
    assert h.text_placement == "suffix" and h.text_tokens > 0 and h.block_size == 64
    with pytest.raises(ValueError, match=r"preset.*no-such.*wan2\.1-14b-720p"):
        Geometry.preset("no-such")
