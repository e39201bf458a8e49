"""`indicf5-fast triton build-repo`: the generated classic model repository is valid Triton
configuration, starts under the tritonserver binary bundled in nvidia-pytriton (python
backend, KIND_CPU) and answers over HTTP and gRPC (streaming) with the in-process audio."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytriton")
pytest.importorskip("tritonclient.grpc")
pytest.importorskip("tritonclient.http")

from triton_harness import FAST, LONG, bundled_triton  # noqa: E402

TEXT = "नमस्ते, आप कैसे हैं?"
FAST_REPO = {**FAST, "nfe_step": 2}  # the stream only has to prove the decoupled path works here


def _parse_config(path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


@pytest.fixture(scope="module")
def repo(tiny_ckpt, tmp_path_factory):
    from indicf5_fast.cli import main

    out = tmp_path_factory.mktemp("triton") / "repo"
    argv = ["triton", "build-repo", str(out), "--model", str(tiny_ckpt), "--kind", "cpu", "--device", "cpu"]
    argv += ["--dtype", "float32", "--max-batch", "4", "--queue-delay-ms", "20", "--instances", "1"]
    argv += ["--voice-dir", str(tiny_ckpt / "prompts")]
    assert main(argv) == 0
    return out


def test_generated_configs_follow_the_tensor_contract(repo, tiny_ckpt):
    from indicf5_fast.deploy.triton import tensors

    batched = _parse_config(repo / "indicf5" / "config.pbtxt")
    stream = _parse_config(repo / "indicf5_stream" / "config.pbtxt")
    assert batched.backend == "python" and batched.max_batch_size == 4
    assert batched.dynamic_batching.max_queue_delay_microseconds == 20_000
    assert not batched.model_transaction_policy.decoupled and stream.model_transaction_policy.decoupled
    assert [i.name for i in batched.input] == [s.name for s in tensors.INPUTS]
    assert [o.name for o in batched.output] == ["audio", "length", "error"]
    assert [o.name for o in stream.output] == ["audio", "error"]
    assert {i.name for i in batched.input if i.optional} == {s.name for s in tensors.INPUTS if s.optional}
    group = batched.instance_group[0]
    assert group.count == 1 and group.kind == group.KIND_CPU
    assert batched.parameters["model"].string_value == str(tiny_ckpt)
    assert (repo / "indicf5" / "1" / "model.py").is_file() and (
        repo / "indicf5_stream" / "1" / "model.py"
    ).is_file()
    readme = (repo / "README.md").read_text(encoding="utf-8")
    assert "UNVERIFIED HERE" in readme and "tritonserver --model-repository=/repo" in readme


def test_gpu_kind_and_onnx_vocoder_model(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from indicf5_fast.deploy.triton.repo_builder import RepoOptions, build_repository

    # a stand-in graph with the vocoder's interface: mel [b, 100, n] -> wave [b, m]
    mel = helper.make_tensor_value_info("mel", TensorProto.FLOAT, ["batch", 100, "frames"])
    wave = helper.make_tensor_value_info("wave", TensorProto.FLOAT, ["batch", "samples"])
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["mel"], ["wave"], keepdims=0, axes=[1])], "v", [mel], [wave]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    onnx.save(model, tmp_path / "vocos.onnx")

    root = build_repository(
        tmp_path / "repo",
        RepoOptions(
            model="/models/IndicF5",
            kind="gpu",
            instances=2,
            vocoder_onnx=str(tmp_path / "vocos.onnx"),
            vocoder_tensorrt=True,
        ),
    )
    batched = _parse_config(root / "indicf5" / "config.pbtxt")
    assert (
        batched.instance_group[0].kind == batched.instance_group[0].KIND_GPU
        and batched.instance_group[0].count == 2
    )
    assert batched.parameters["vocoder_model"].string_value == "vocoder"
    assert batched.parameters["vocoder_input"].string_value == "mel"
    vocoder = _parse_config(root / "vocoder" / "config.pbtxt")
    assert vocoder.platform == "onnxruntime_onnx" and vocoder.max_batch_size == 0
    assert list(vocoder.input[0].dims) == [-1, 100, -1] and list(vocoder.output[0].dims) == [-1, -1]
    accel = vocoder.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accel.name == "tensorrt"
    assert onnx.load(str(root / "vocoder" / "1" / "model.onnx")).graph.output[0].name == "wave"


def test_repository_runs_under_the_bundled_tritonserver(repo, tiny_tts, demo_voice, tmp_path_factory):
    from indicf5_fast.deploy.triton.client import TritonTTSClient
    from indicf5_fast.errors import InputError

    work = tmp_path_factory.mktemp("tritonserver")
    demo = tiny_tts.prepare_voice(str(demo_voice[0]), demo_voice[1])
    want = tiny_tts.synthesize(TEXT, voice=demo, seed=11, nfe_step=8)
    # the streaming model chunks for latency by default: equal to a full request asking for it
    want_long = tiny_tts.synthesize(LONG, voice=demo, seed=2, chunking="stream", **FAST_REPO)
    with bundled_triton(repo, work, work / "tritonserver.log") as (http_url, grpc_url):
        with TritonTTSClient(http_url, "http", timeout_s=120) as client:
            got = client.synthesize(TEXT, voice="demo", seed=11, nfe_step=8)
            with pytest.raises(InputError, match="unknown voice"):
                client.synthesize(TEXT, voice="nope", seed=11, nfe_step=8)
        with TritonTTSClient(grpc_url, "grpc", timeout_s=120) as client:
            pieces = list(client.stream(LONG, voice="demo", seed=2, **FAST_REPO))
            with pytest.raises(InputError, match="vocabulary"):
                list(client.stream("日本語", voice="demo", seed=2, **FAST_REPO))
    np.testing.assert_array_equal(got, want)
    assert len(pieces) >= 3
    np.testing.assert_allclose(np.concatenate(pieces), want_long, rtol=0, atol=1e-5)
