"""IndicF5 on Triton's python backend (copied here by `indicf5-fast triton build-repo`).

One file serves both models of the repository: `indicf5` (dynamic batching, one response per
request) and `indicf5_stream` (decoupled, one response per text chunk). Settings come from the
`parameters` of config.pbtxt. Needs `indicf5-fast` installed in the Python that runs the
python-backend stub (inside the NGC container: `pip install indicf5-fast`).
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from indicf5_fast.deploy.triton import tensors
from indicf5_fast.deploy.triton.handler import SynthesisHandler, load_voices


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        from indicf5_fast.config import EngineConfig, SamplingOptions
        from indicf5_fast.engine import TTS

        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(config)
        device = params.get("device") or "auto"
        if args.get("model_instance_kind") == "GPU":  # KIND_GPU: Triton picks the GPU of this instance
            device = f"cuda:{args['model_instance_device_id']}"
        engine = EngineConfig(
            model=params["model"],
            backend=params.get("backend") or "torch",
            device=device,
            dtype=params.get("dtype") or "auto",
            max_batch_size=int(params.get("max_batch_size") or 8),
            onnx_dir=params.get("onnx_dir") or None,  # backend onnx / openvino: the exported graphs
        )
        if params.get("preset"):
            engine.sampling = SamplingOptions.preset(params["preset"])
        tts = TTS.from_config(engine)
        if params.get("vocoder_model"):
            tts.backend = BLSVocoder(
                tts.backend, params["vocoder_model"], params["vocoder_input"], params["vocoder_output"]
            )
        self.handler = SynthesisHandler(tts, load_voices(tts, params.get("voice_dir") or None))

    def execute(self, requests: list) -> list | None:
        arrays = [_input_arrays(r) for r in requests]
        if self.decoupled:
            for request, data in zip(requests, arrays, strict=True):
                self._stream(request.get_response_sender(), data)
            return None
        try:
            outputs = self.handler.infer(arrays)
        except Exception as e:  # every request of this call fails alike
            message = f"{type(e).__name__}: {e}"
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(message)) for _ in requests]
        return [
            pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(k, v) for k, v in out.items()])
            for out in outputs
        ]

    def _stream(self, sender, data: dict) -> None:
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        try:
            for outputs in self.handler.stream(data):
                sender.send(
                    pb_utils.InferenceResponse(
                        output_tensors=[pb_utils.Tensor(k, v) for k, v in outputs.items()]
                    )
                )
        except Exception as e:
            sender.send(
                pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(e).__name__}: {e}")),
                flags=final,
            )
            return
        sender.send(flags=final)


def _input_arrays(request) -> dict[str, np.ndarray]:
    out = {}
    for spec in tensors.INPUTS:
        tensor = pb_utils.get_input_tensor_by_name(request, spec.name)
        if tensor is not None:
            out[spec.name] = tensor.as_numpy()
    return out


class BLSVocoder:
    """The engine's backend with `vocode` served by another Triton model (the ONNX vocoder) via
    BLS; every other method is the wrapped backend's. Unverified here (no onnxruntime backend in
    the PyTriton bundle)."""

    def __init__(self, inner, model_name: str, input_name: str, output_name: str):
        self._inner = inner
        self._model, self._input, self._output = model_name, input_name, output_name

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def vocode(self, mel):  # mel: torch [b, 100, n] -> wave torch [b, (n - 1) * 256]
        import torch

        request = pb_utils.InferenceRequest(
            model_name=self._model,
            requested_output_names=[self._output],
            inputs=[pb_utils.Tensor(self._input, mel.detach().float().cpu().numpy())],
        )
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"vocoder model {self._model}: {response.error().message()}")
        wave = pb_utils.get_output_tensor_by_name(response, self._output).as_numpy()
        return torch.from_numpy(np.ascontiguousarray(wave)).to(mel.device)
