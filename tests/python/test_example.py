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


def test_a_folder_without_model_index_is_refused(tmp_path):
    result = run("--model-dir", str(tmp_path), "--prompt", "a fox")
    assert result.returncode == 2
    assert "model_index.json" in result.stderr and str(tmp_path) in result.stderr


def test_an_unknown_regime_is_refused(tmp_path):
    result = run("--model-dir", str(tmp_path), "--prompt", "a fox", "--regime", "extreme")
    assert result.returncode == 2
    assert "--regime" in result.stderr
