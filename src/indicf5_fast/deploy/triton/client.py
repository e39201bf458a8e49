"""Client of the IndicF5 Triton models (KServe v2 over HTTP or gRPC, via ``tritonclient``).

Works against both deployments (PyTriton ``triton serve`` and the classic model repository):
they share the tensor contract of :mod:`indicf5_fast.deploy.triton.tensors`.
"""

from __future__ import annotations

import queue
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Self

import numpy as np

from indicf5_fast.deploy.triton import tensors
from indicf5_fast.errors import IndicF5Error, InputError, require

PROTOCOLS = ("http", "grpc")


class TritonError(IndicF5Error):
    """Triton unreachable, model missing, or a failed inference."""


def split_url(url: str, protocol: str | None = None) -> tuple[str, str]:
    """``http://h:p`` / ``grpc://h:p`` / ``h:p`` (+ explicit protocol) -> (protocol, "h:p")."""
    scheme, sep, rest = url.partition("://")
    if sep:
        if scheme not in PROTOCOLS:
            raise InputError(f"triton url scheme must be http:// or grpc://, got {url!r}", "url")
        if protocol is not None and protocol != scheme:
            raise InputError(f"url {url!r} contradicts protocol {protocol!r}", "protocol")
        return scheme, rest.rstrip("/")
    protocol = protocol or "http"
    if protocol not in PROTOCOLS:
        raise InputError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}", "protocol")
    return protocol, url.rstrip("/")


class TritonConnection:
    """One tritonclient connection (HTTP or gRPC) to ``model``: readiness, tritonclient errors as
    TritonError, and all-at-once inference with results in request order. ``input_specs``: the
    model's input tensors. Not shared between threads: make one per thread."""

    input_specs: Sequence[tensors.TensorSpec] = tensors.INPUTS

    def __init__(self, url: str, protocol: str | None, model: str, timeout_s: float, concurrency: int = 8):
        self.protocol, self.url = split_url(url, protocol)
        self.model, self.timeout_s = model, timeout_s
        self._mod = _import_client(self.protocol)
        if self.protocol == "http":
            self._client = self._mod.InferenceServerClient(
                self.url,
                concurrency=max(1, concurrency),
                connection_timeout=timeout_s,
                network_timeout=timeout_s,
            )
        else:
            self._client = self._mod.InferenceServerClient(self.url)

    def is_ready(self) -> bool:
        try:
            return bool(self._client.is_server_ready() and self._client.is_model_ready(self.model))
        except Exception:  # connection refused while starting: not ready yet
            return False

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Return once Triton and the model are ready (checks at least once)."""
        wait_until_ready(self, timeout_s)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def _infer_in_order(self, requests: Sequence[Mapping[str, np.ndarray]]) -> Iterator[Any]:
        """Send every request at once (Triton's dynamic batcher can group them); yield the raw
        results in request order, each as soon as it and all before it have arrived."""
        if self.protocol == "http":
            handles = [self._call(self._client.async_infer, self.model, self._inputs(r)) for r in requests]
            for h in handles:
                yield self._call(h.get_result)
            return
        done: queue.Queue = queue.Queue()
        for k, r in enumerate(requests):
            self._call(
                self._client.async_infer,
                self.model,
                self._inputs(r),
                callback=lambda result, error, k=k: done.put((k, result, error)),
                client_timeout=self.timeout_s,
            )
        arrived: dict[int, Any] = {}
        for k in range(len(requests)):
            while k not in arrived:
                j, result, error = self._get(done)
                if error is not None:
                    raise TritonError(f"triton at {self.url}: {describe_error(error)}")
                arrived[j] = result
            yield arrived.pop(k)

    def _inputs(self, arrays: Mapping[str, np.ndarray]) -> list:
        specs = {s.name: s for s in self.input_specs}
        out = []
        for name, array in arrays.items():
            infer_input = self._mod.InferInput(name, list(array.shape), specs[name].triton_dtype)
            infer_input.set_data_from_numpy(array)
            out.append(infer_input)
        return out

    def _call(self, fn, *args, **kwargs):
        """Run a tritonclient call; its failures (refused connection, unknown model) -> TritonError."""
        try:
            return fn(*args, **kwargs)
        except self._mod.InferenceServerException as e:
            raise TritonError(f"triton at {self.url}: {describe_error(e)}") from e
        except OSError as e:  # connection refused / reset before any Triton answer
            raise TritonError(f"triton at {self.url} unreachable: {e}") from e

    def _get(self, q: queue.Queue):
        try:
            return q.get(timeout=self.timeout_s)
        except queue.Empty as e:
            raise TritonError(f"no answer from Triton at {self.url} within {self.timeout_s:.0f} s") from e


class TritonTTSClient(TritonConnection):
    """``synthesize`` (one request), ``synthesize_many`` (concurrent requests: Triton batches them),
    ``stream`` (decoupled model, gRPC only). Not shared between threads: make one per thread."""

    def __init__(
        self,
        url: str,
        protocol: str | None = None,
        *,
        model: str = tensors.MODEL_NAME,
        stream_model: str = tensors.STREAM_MODEL_NAME,
        timeout_s: float = 300.0,
        concurrency: int = 8,
    ):
        super().__init__(url, protocol, model, timeout_s, concurrency)
        self.stream_model = stream_model

    # ------------------------------------------------------------------ synthesis
    def synthesize(self, text: str, **item: Any) -> np.ndarray:
        """One item -> float32 wave at 24 kHz. ``item``: voice= or ref_audio= + ref_sample_rate= +
        ref_text=, and optional seed, nfe_step, speed, cfg_strength, sway_sampling_coef, schedule."""
        return self.synthesize_many([{"text": text, **item}])[0]

    def synthesize_many(self, items: Sequence[Mapping[str, Any]]) -> list[np.ndarray]:
        """Send every item as its own request, all in flight at once, so Triton's dynamic batcher
        can group them; results come back in order."""
        encoded = [tensors.encode_request(**dict(it)) for it in items]
        return [self._decode(r) for r in self._infer_in_order(encoded)]

    def stream(self, text: str, **item: Any) -> Iterator[np.ndarray]:
        """Audio chunks of the decoupled model as they arrive (gRPC bidirectional stream)."""
        if self.protocol != "grpc":
            raise InputError(
                "streaming needs the gRPC protocol (Triton's HTTP API has no decoupled responses)", "protocol"
            )
        encoded = tensors.encode_request(text, **item)
        arrived: queue.Queue = queue.Queue()
        # one stream per gRPC client: a private client keeps concurrent streams independent
        client = self._mod.InferenceServerClient(self.url)
        try:
            self._call(client.start_stream, callback=lambda result, error: arrived.put((result, error)))
            self._call(
                client.async_stream_infer,
                self.stream_model,
                self._inputs(encoded),
                request_id=uuid.uuid4().hex,
                enable_empty_final_response=True,
            )
            while True:
                result, error = self._get(arrived)
                if error is not None:
                    raise TritonError(f"triton stream at {self.url}: {describe_error(error)}")
                response = result.get_response()
                if result.as_numpy("audio") is not None:  # the empty final response has none
                    chunk = tensors.decode_stream_response(
                        {n: result.as_numpy(n) for n in ("audio", "error")}
                    )
                    if chunk.size:
                        yield chunk
                final = response.parameters.get("triton_final_response")
                if final is not None and final.bool_param:
                    return
        finally:
            client.stop_stream(cancel_requests=True)
            client.close()

    def _decode(self, result) -> np.ndarray:
        (wave,) = tensors.decode_response({n: result.as_numpy(n) for n in ("audio", "length", "error")})
        return wave


def wait_until_ready(client: Any, timeout_s: float) -> None:
    """Poll ``client.is_ready()`` (any of our Triton clients) until true, else a TritonError naming
    ``client.protocol``, ``client.url`` and ``client.model``."""
    deadline = time.monotonic() + timeout_s
    while not client.is_ready():
        if time.monotonic() > deadline:
            raise TritonError(
                f"Triton at {client.protocol}://{client.url} is not ready (server down, or model "
                f"{client.model!r} missing or still loading) after {timeout_s:g} s"
            )
        time.sleep(0.2)


def describe_error(e: Exception) -> str:
    """tritonclient's exception text (its ``__str__`` fails when the HTTP status is a dict)."""
    message = getattr(e, "message", None)
    try:
        text = message() if callable(message) else str(e)
    except Exception:
        text = None
    return str(text or type(e).__name__).strip()


def _import_client(protocol: str):
    return require(f"tritonclient.{protocol}", "triton", "the Triton client")
