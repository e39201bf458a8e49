"""CLI: synth works, and every bad input gives one line on stderr, exit code != 0, no traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from indicf5_fast.cli import main


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def synth_args(ckpt, wav, text, out, ref_text="नमस्ते, यह एक परीक्षण वाक्य है।"):
    return ["synth", "--model", ckpt, "--ref-audio", wav, "--ref-text", ref_text, "--text", text,
            "--out", out, "--seed", "1", "--nfe", "4", "--dtype", "float32", "--device", "cpu"]


def test_synth_writes_wav_and_is_deterministic(capsys, tiny_ckpt, tmp_path):
    wav = tiny_ckpt / "prompts" / "demo.wav"
    for name in ("a.wav", "b.wav"):
        code, out, err = run_cli(capsys, *synth_args(tiny_ckpt, wav, "नमस्ते, आप कैसे हैं?", tmp_path / name))
        assert code == 0, err
        assert "wrote" in out
    a, sr = sf.read(tmp_path / "a.wav")
    b, _ = sf.read(tmp_path / "b.wav")
    assert sr == 24000 and a.size > 24000 * 0.3 and np.array_equal(a, b) and np.abs(a).max() > 0


def test_synth_long_text_float_output(capsys, tiny_ckpt, tmp_path):
    wav = tiny_ckpt / "prompts" / "demo.wav"
    text = " ".join(["यह एक लंबा वाक्य है, जिसमें कई हिस्से हैं।"] * 8)
    code, out, err = run_cli(capsys, *synth_args(tiny_ckpt, wav, text, tmp_path / "long.wav"),
                             "--subtype", "FLOAT", "--no-progress")
    assert code == 0, err
    assert "chunk(s)" in out and " 1 chunk(s)" not in out
    info = sf.info(tmp_path / "long.wav")
    assert info.subtype == "FLOAT" and info.samplerate == 24000


def _bad_inputs(tiny_ckpt, tmp_path):
    good_wav = tiny_ckpt / "prompts" / "demo.wav"
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(24000, dtype=np.float32), 24000)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 24000)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF\x00\x00garbage" * 20)
    corrupt = tmp_path / "corrupt_ckpt"
    shutil.copytree(tiny_ckpt, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"not a safetensors file")
    out = tmp_path / "o.wav"
    (tmp_path / "a_file").write_text("x")
    return {
        "missing model": synth_args(tmp_path / "nope", good_wav, "नमस्ते", out),
        "corrupt safetensors": synth_args(corrupt, good_wav, "नमस्ते", out),
        "empty text": synth_args(tiny_ckpt, good_wav, "   ", out),
        "unknown characters": synth_args(tiny_ckpt, good_wav, "☃☃☃ ♞♞", out),
        "silent reference": synth_args(tiny_ckpt, silent, "नमस्ते", out),
        "zero-length reference": synth_args(tiny_ckpt, empty, "नमस्ते", out),
        "unreadable reference": synth_args(tiny_ckpt, garbage, "नमस्ते", out),
        "missing reference": synth_args(tiny_ckpt, tmp_path / "missing.wav", "नमस्ते", out),
        "empty ref text": synth_args(tiny_ckpt, good_wav, "नमस्ते", out, ref_text=" "),
        "bad nfe": synth_args(tiny_ckpt, good_wav, "नमस्ते", out) + ["--nfe", "0"],
        "negative speed": synth_args(tiny_ckpt, good_wav, "नमस्ते", out) + ["--speed", "-1"],
        "fp16 on cpu": synth_args(tiny_ckpt, good_wav, "नमस्ते", out) + ["--dtype", "float16"],
        "unwritable output": synth_args(tiny_ckpt, good_wav, "नमस्ते", tmp_path / "a_file" / "x.wav"),
        "bad output format": synth_args(tiny_ckpt, good_wav, "नमस्ते", tmp_path / "x.mp3"),
    }


CASES = ["missing model", "corrupt safetensors", "empty text", "unknown characters", "silent reference",
         "zero-length reference", "unreadable reference", "missing reference", "empty ref text", "bad nfe",
         "negative speed", "fp16 on cpu", "unwritable output", "bad output format"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_one_line_error(capsys, tiny_ckpt, tmp_path, case):
    code, out, err = run_cli(capsys, *_bad_inputs(tiny_ckpt, tmp_path)[case])
    assert code != 0
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:"), err
    assert "Traceback" not in err and "internal error" not in err


def test_console_script_subprocess(tiny_ckpt, tmp_path):
    """The installed entry point: a real process, its exit code and stderr."""
    proc = subprocess.run([sys.executable, "-m", "indicf5_fast.cli", "synth", "--model", str(tmp_path / "nope"),
                           "--ref-audio", "x.wav", "--ref-text", "x", "--text", "y", "--out", "o.wav"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: model not found") and "Traceback" not in proc.stderr
