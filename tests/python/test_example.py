"""The example script parses its options and refuses a folder that is not a diffusers model (running
a real pipeline needs the user's weights and a GPU)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "generate_video.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, timeout=120)


def test_help_lists_the_options():
    result = run("--help")
    assert result.returncode == 0
    for option in ("--model-dir", "--regime", "--warmup-steps", "--token-order", "--dense", "--dense-padding",
                   "--dense-backend"):
        assert option in result.stdout
    # the usage example keeps its line break, and the options show their defaults
    assert "Wan2.1-T2V-14B-Diffusers \\\n" in result.stdout
    assert "(default: 12)" in result.stdout


def _model_folder(tmp_path: Path) -> Path:
    (tmp_path / "model_index.json").write_text("{}")
    return tmp_path


def test_bad_options_are_refused_before_the_model_loads(tmp_path):
    """A folder that only looks like a model: the options fail first (loading it would fail too, later)."""
    folder = _model_folder(tmp_path)
    result = run("--model-dir", str(folder), "--prompt", "a fox", "--warmup-steps", "-1")
    assert result.returncode == 2
    assert "warmup_steps = -1" in result.stderr
    result = run("--model-dir", str(folder), "--prompt", "a fox", "--image", str(tmp_path / "missing.png"))
    assert result.returncode == 2 and "--image" in result.stderr


def test_without_a_gpu_it_stops_before_loading(tmp_path):
    import torch

    if torch.cuda.is_available():
        return  # pragma: no cover - the CPU test machines have none
    result = run("--model-dir", str(_model_folder(tmp_path)), "--prompt", "a fox")
    assert result.returncode == 2
    assert "no CUDA GPU" in result.stderr


def test_a_folder_without_model_index_is_refused(tmp_path):
    result = run("--model-dir", str(tmp_path), "--prompt", "a fox")
    assert result.returncode == 2
    assert "model_index.json" in result.stderr and str(tmp_path) in result.stderr


def test_an_unknown_regime_is_refused(tmp_path):
    result = run("--model-dir", str(tmp_path), "--prompt", "a fox", "--regime", "extreme")
    assert result.returncode == 2
    assert "--regime" in result.stderr
