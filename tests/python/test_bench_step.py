"""The full-size step benchmark (bench/gpu/bench_step.py) runs end to end on its tiny models on the
CPU, times each requested variant, and refuses bad sparsities: the GPU figures of issue 5 come from
this script, so it must not break unnoticed between GPU sessions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu" / "bench_step.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", *args], capture_output=True,
                          text=True, timeout=600)


def test_tiny_wan_times_every_variant(tmp_path):
    out = tmp_path / "step.json"
    result = run("--model", "wan", "--sparsities", "0.5", "--repeats", "1", "--stock-dense-at", "0.5",
                 "--all-sparse-at", "0.5", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    (wan,) = json.loads(out.read_text())
    mode = wan["modes"]["eager"]
    assert [x["variant"] for x in mode["dynamicrad"]] == ["default", "stock dense", "all sparse"]
    for x in mode["dynamicrad"]:
        assert abs(x["layer_sparsity"] - 0.5) < 0.05, x
        assert x["mean_s"] > 0 and x["speedup"] > 0
        assert 0.0 < x["relative_error_vs_stock"] < 0.1, x
    assert "dynamicrad_warmup_step_stock_dense" in mode  # "stock dense" times its own warm-up step
    assert "all sparse" in result.stdout


def test_a_sparsity_outside_the_unit_interval_is_refused():
    result = run("--model", "wan", "--all-sparse-at", "1.5")
    assert result.returncode == 2
    assert "1.5" in result.stderr and "(0, 1)" in result.stderr
