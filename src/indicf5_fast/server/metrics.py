"""Prometheus metrics, one registry per app (no process-global state).

Names are a stable interface (``indicf5-fast stress`` and dashboards read them):

| name | type | labels | meaning |
|---|---|---|---|
| indicf5_requests_total | counter | method, route, status | every HTTP request (route = path template) |
| indicf5_http_request_duration_seconds | histogram | method, route | HTTP handling time, to the last byte |
| indicf5_time_to_first_audio_seconds | histogram | route, stream | arrival -> first audio ready to send |
| indicf5_request_latency_seconds | histogram | route, stream | arrival -> all audio sent (successful syntheses) |
| indicf5_rtf | histogram | route, stream | request latency / audio seconds |
| indicf5_audio_seconds_total | counter | route | audio generated |
| indicf5_queue_depth | gauge | | admitted requests waiting for the worker |
| indicf5_inflight_requests | gauge | | admitted requests (queued + running) |
| indicf5_batch_size | histogram | | requests per engine batch (count = number of batches) |
| indicf5_batch_duration_seconds | histogram | | worker time per batch |
| indicf5_stream_chunks_total | counter | | streamed text chunks synthesized |
| indicf5_worker_busy_seconds_total | counter | | model worker busy time (busy / audio seconds = RTF) |
| indicf5_rejected_total | counter | reason | queue_full, not_ready, shutting_down, timeout |
| indicf5_ready | gauge | | 1 once warm-up is done |
| indicf5_voices | gauge | | voices available |
| indicf5_engine_info | gauge (=1) | model, backend, device, dtype | what is being served |
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 8, 13, 20, 30, 60, 120, 300)
RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "indicf5_requests_total", "HTTP requests", ("method", "route", "status"), registry=r
        )
        self.http_duration = Histogram(
            "indicf5_http_request_duration_seconds",
            "HTTP request handling time (to the last byte)",
            ("method", "route"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttfa = Histogram(
            "indicf5_time_to_first_audio_seconds",
            "Request arrival to the first audio being ready to send",
            ("route", "stream"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "indicf5_request_latency_seconds",
            "Request arrival to all audio sent (successful syntheses)",
            ("route", "stream"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rtf = Histogram(
            "indicf5_rtf",
            "Real-time factor per request: latency / audio seconds",
            ("route", "stream"),
            buckets=RTF_BUCKETS,
            registry=r,
        )
        self.audio_seconds = Counter(
            "indicf5_audio_seconds_total", "Seconds of audio generated", ("route",), registry=r
        )
        self.queue_depth = Gauge(
            "indicf5_queue_depth", "Admitted requests waiting for the worker", registry=r
        )
        self.inflight = Gauge("indicf5_inflight_requests", "Admitted requests (queued + running)", registry=r)
        self.batch_size = Histogram(
            "indicf5_batch_size", "Requests per engine batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_duration = Histogram(
            "indicf5_batch_duration_seconds", "Worker time per batch", buckets=LATENCY_BUCKETS, registry=r
        )
        self.stream_chunks = Counter(
            "indicf5_stream_chunks_total", "Streamed text chunks synthesized", registry=r
        )
        self.worker_busy = Counter("indicf5_worker_busy_seconds_total", "Model worker busy time", registry=r)
        self.rejected = Counter("indicf5_rejected_total", "Requests refused", ("reason",), registry=r)
        self.ready = Gauge("indicf5_ready", "1 once warm-up is done", registry=r)
        self.voices = Gauge("indicf5_voices", "Voices available", registry=r)
        self.engine_info = Gauge(
            "indicf5_engine_info", "What is served", ("model", "backend", "device", "dtype"), registry=r
        )

    def set_engine_info(self, info: dict[str, str]) -> None:
        keys = ("model", "backend", "device", "dtype")
        self.engine_info.labels(*(info.get(k, "") for k in keys)).set(1)

    def observe_synthesis(
        self, route: str, stream: bool, ttfa: float, latency: float, audio_seconds: float
    ) -> None:
        s = "true" if stream else "false"
        self.ttfa.labels(route, s).observe(ttfa)
        self.latency.labels(route, s).observe(latency)
        self.audio_seconds.labels(route).inc(audio_seconds)
        if audio_seconds > 0:
            self.rtf.labels(route, s).observe(latency / audio_seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
