"""A missing optional package is one line naming the extra to install, exit code 2, no traceback,
for every optional backend and command (issue 10 bug 2). Absence is simulated by putting None in
``sys.modules`` (Python then raises ModuleNotFoundError on import), in process and once in a
real subprocess."""

from __future__ import annotations

import subprocess
import sys

import pytest

from indicf5_fast.cli import main
from indicf5_fast.errors import MissingExtraError, missing_extra, require


def _block(monkeypatch, *names: str) -> None:
    """Make ``names`` (and their already imported submodules) unimportable."""
    for name in names:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")] + [name]:
            monkeypatch.setitem(sys.modules, key, None)


def _one_line(capsys, argv, extra: str, module: str) -> None:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert f"pip install 'indicf5-fast[{extra}]'" in lines[0] and repr(module) in lines[0], err
    assert "Traceback" not in err and "internal error" not in err


def _synth(ckpt, tmp_path, *extra):
    wav = ckpt / "prompts" / "demo.wav"
    return ["synth", "--model", ckpt, "--ref-audio", wav, "--ref-text", "नमस्ते", "--text", "नमस्ते",
            "--out", tmp_path / "o.wav", "--device", "cpu", "--dtype", "float32", *extra]


CASES = {
    # case: (modules blocked, extra, module named, argv builder)
    "synth onnx": (("onnxruntime",), "onnx", "onnxruntime", lambda c, t: _synth(c, t, "--backend", "onnx")),
    "synth openvino": (("openvino",), "openvino", "openvino", lambda c, t: _synth(c, t, "--backend", "openvino")),
    "serve": (("uvicorn",), "server", "uvicorn", lambda c, t: ["serve", "--model", c]),
    "serve fastapi": (("fastapi",), "server", "fastapi", lambda c, t: ["serve", "--model", c]),
    "serve remote": (
        ("tritonclient",),
        "triton",
        "tritonclient",
        lambda c, t: ["serve", "--backend", "remote", "--triton-url", "grpc://127.0.0.1:9"],
    ),
    "triton serve": (("pytriton",), "triton", "pytriton", lambda c, t: ["triton", "serve", "--model", c]),
    "triton client": (
        ("tritonclient",),
        "triton",
        "tritonclient",
        lambda c, t: ["triton", "client", "--text", "x", "--voice", "demo", "--out", t / "o.wav"],
    ),
    "triton run-repo": (("pytriton",), "triton", "pytriton", lambda c, t: ["triton", "run-repo", t]),
    "bench plots": (
        ("matplotlib",),
        "bench",
        "matplotlib",
        lambda c, t: ["bench", "--model", c, "--no-upstream", "--output-dir", t, "--no-progress"],
    ),
    "export onnx": (("onnxscript",), "onnx", "onnxscript", lambda c, t: ["export", "onnx", "--model", c]),
    "stress": (("httpx",), "bench", "httpx", lambda c, t: ["stress", "--requests", "1"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_missing_extra_is_one_line_exit_2(case, monkeypatch, capsys, tiny_ckpt, tmp_path):
    blocked, extra, module, argv = CASES[case]
    _block(monkeypatch, *blocked)
    _one_line(capsys, argv(tiny_ckpt, tmp_path), extra, module)


def test_missing_extra_in_a_real_process(tiny_ckpt, tmp_path):
    code = (
        "import sys; sys.modules['onnxruntime'] = None\n"
        "from indicf5_fast.cli import main\n"
        f"sys.exit(main({[str(a) for a in _synth(tiny_ckpt, tmp_path, '--backend', 'onnx')]!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: backend onnx needs the optional package 'onnxruntime'")
    assert "pip install 'indicf5-fast[onnx]'" in proc.stderr


def test_require_and_the_safety_net(monkeypatch):
    _block(monkeypatch, "matplotlib")
    with pytest.raises(MissingExtraError, match=r"pip install 'indicf5-fast\[bench\]'"):
        require("matplotlib.pyplot", "bench", "plots")
    assert require("json") is sys.modules["json"]
    # an unguarded import of a known optional package still becomes the one-line error
    err = missing_extra(ModuleNotFoundError("No module named 'openvino.runtime'", name="openvino.runtime"))
    assert isinstance(err, MissingExtraError) and err.extra == "openvino"
    assert missing_extra(ModuleNotFoundError("x", name="numpy")) is None  # a core module: a broken install


def test_unguarded_optional_import_in_a_command_is_one_line(monkeypatch, capsys, tmp_path):
    """The CLI's safety net: a ModuleNotFoundError of a known optional package raised anywhere in
    a command becomes the same one-line error (exit 2)."""
    from indicf5_fast import cli

    def command(args) -> int:
        import matplotlib.pyplot  # noqa: F401

        return 0

    monkeypatch.setattr(cli, "_run_init_random", command)  # the parser is built inside main()
    _block(monkeypatch, "matplotlib")
    _one_line(capsys, ["init-random", tmp_path / "x"], "bench", "matplotlib")
