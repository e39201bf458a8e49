"""`indicf5-fast stress`: load a running speech server (loopback only) and measure what an
operator needs: success rate, time to first audio, latency percentiles, RTF and throughput, per
concurrency level (closed loop) or arrival rate (open loop), with the server's own queue and
batch figures scraped from `/metrics` before, during and after each level.

Everything is bounded: requests per level (or seconds per level, still capped by
MAX_REQUESTS_PER_LEVEL), a per-request timeout, and a total time budget after which no new
request starts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from indicf5_fast.bench.stress.client import check_loopback, post_speech
from indicf5_fast.bench.stress.metrics import Scrape, gauges, parse_prometheus, server_summary
from indicf5_fast.bench.stress.stats import RequestRecord, summarize_level
from indicf5_fast.bench.stress.texts import TextItem
from indicf5_fast.errors import InputError

MAX_REQUESTS_PER_LEVEL = 100_000
MAX_CONCURRENCY = 1024
FORMATS = ("wav", "pcm", "flac")


@dataclass
class StressConfig:
    url: str = "http://127.0.0.1:8000"
    texts: list[TextItem] = field(default_factory=list)
    concurrency: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    open_loop: bool = False
    rates: list[float] = field(default_factory=list)  # open loop: requests per second per level
    arrival: str = "poisson"  # open loop: poisson | uniform inter-arrival times
    requests: int | None = 20  # per level; None = run for `duration` seconds
    duration: float | None = None
    warmup: int = 2  # requests before the first level, not counted
    voice: str = "demo"
    model: str = "indicf5"
    response_format: str = "wav"
    stream: bool = False
    preset: str | None = None
    nfe_step: int | None = None
    speed: float | None = None
    seed: int | None = None  # sent with every request when set
    chunking: str | None = None  # "upstream" | "stream"; None = the server's default
    timeout: float = 120.0  # per request
    max_total_seconds: float = 3600.0  # no new request starts after this
    max_inflight: int = 256  # open loop: arrivals beyond this are dropped by the client
    metrics: bool = True
    metrics_interval: float = 0.5  # seconds between /metrics polls during a level (0 = before/after only)
    api_key: str | None = None
    sample_rate: int = 24_000
    shuffle_seed: int = 0
    progress: bool = True
    triton_url: str | None = None  # load a Triton server (grpc:// or http://) instead of `url`
    metrics_url: str | None = None  # Prometheus endpoint; default <url>/metrics (none for Triton)

    def validate(self) -> StressConfig:
        self.url = check_loopback(self.url)
        if self.triton_url:
            self.triton_url = check_loopback(self.triton_url, schemes=("grpc", "http"))
        if self.metrics_url:
            self.metrics_url = check_loopback(self.metrics_url)
        if not self.texts:
            raise InputError("no texts to send", "texts")
        if self.open_loop:
            if not self.rates or any(not 0 < r <= 10_000 for r in self.rates):
                raise InputError("open loop needs --rate values in (0, 10000] requests/s", "rate")
        elif not self.concurrency or any(not 1 <= c <= MAX_CONCURRENCY for c in self.concurrency):
            raise InputError(f"concurrency levels must be in 1..{MAX_CONCURRENCY}", "concurrency")
        if (self.requests is None) == (self.duration is None):
            raise InputError("give exactly one of --requests or --duration", "requests")
        if self.requests is not None and not 1 <= self.requests <= MAX_REQUESTS_PER_LEVEL:
            raise InputError(f"--requests must be in 1..{MAX_REQUESTS_PER_LEVEL}", "requests")
        if self.duration is not None and not 0 < self.duration <= 86_400:
            raise InputError("--duration must be in (0, 86400] seconds", "duration")
        if self.response_format not in FORMATS:
            raise InputError(f"--format must be one of {FORMATS}", "response_format")
        if not 0 < self.timeout <= 3600 or not 0 < self.max_total_seconds <= 7 * 86_400:
            raise InputError("--timeout must be in (0, 3600] s and --max-time in (0, 7 days]", "timeout")
        if not 0 <= self.warmup <= 1000 or not 1 <= self.max_inflight <= 100_000:
            raise InputError("--warmup must be in 0..1000 and --max-inflight in 1..100000", "warmup")
        return self

    @property
    def levels(self) -> list[float]:
        return list(self.rates) if self.open_loop else [float(c) for c in self.concurrency]


def request_body(cfg: StressConfig, item: TextItem) -> dict:
    body = {
        "model": cfg.model,
        "input": item.text,
        "voice": cfg.voice,
        "response_format": cfg.response_format,
        "stream": cfg.stream,
    }
    for key in ("preset", "nfe_step", "speed", "seed", "chunking"):
        value = getattr(cfg, key)
        if value is not None:
            body[key] = value
    return body


def _text_cycle(texts: list[TextItem], seed: int):
    order = list(texts)
    random.Random(seed).shuffle(order)
    return itertools.cycle(order)


class LoadRunner:
    """State shared by the levels of one run: HTTP clients, text order, deadline, progress."""

    def __init__(
        self, cfg: StressConfig, client, metrics_client, on_record: Callable | None, triton=None
    ) -> None:
        self.cfg, self.client, self.metrics_client, self.triton = cfg, client, metrics_client, triton
        self.texts = _text_cycle(cfg.texts, cfg.shuffle_seed)
        self.deadline = time.perf_counter() + cfg.max_total_seconds
        self.on_record = on_record
        self.headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else None
        self.speech_url = cfg.url + "/v1/audio/speech"
        self.metrics_url = cfg.metrics_url or (None if triton else cfg.url + "/metrics")
        self.metrics_ok = cfg.metrics and self.metrics_url is not None

    async def send(self, index: int, level_start: float) -> RequestRecord:
        item = next(self.texts)
        rec = RequestRecord(
            index=index,
            start=time.perf_counter() - level_start,
            text_chars=len(item.text),
            lang=item.lang,
            kind=item.kind,
        )
        if self.triton is not None:
            await self.triton.fill(rec, item)
        else:
            await post_speech(
                self.client,
                self.speech_url,
                request_body(self.cfg, item),
                rec,
                timeout=self.cfg.timeout,
                headers=self.headers,
                sample_rate=self.cfg.sample_rate,
            )
        if self.on_record:
            self.on_record(rec)
        return rec

    async def scrape(self) -> Scrape | None:
        if not self.metrics_ok:
            return None
        try:
            r = await self.metrics_client.get(self.metrics_url, headers=self.headers, timeout=10.0)
        except Exception:
            return None
        if r.status_code != 200:
            self.metrics_ok = False  # no /metrics on this server: stop asking
            return None
        return parse_prometheus(r.text)

    async def poll_gauges(self, gauge_max: dict[str, float], stop: asyncio.Event) -> None:
        interval = self.cfg.metrics_interval
        while interval > 0 and self.metrics_ok and not stop.is_set():
            scrape = await self.scrape()
            for name, value in gauges(scrape).items() if scrape else ():
                gauge_max[name] = max(gauge_max.get(name, value), value)
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except asyncio.TimeoutError:
                pass

    def _stop_time(self, level_start: float) -> float:
        if self.cfg.duration is None:
            return self.deadline
        return min(self.deadline, level_start + self.cfg.duration)

    def _target(self) -> int:
        return self.cfg.requests if self.cfg.requests is not None else MAX_REQUESTS_PER_LEVEL

    async def closed_level(self, concurrency: int) -> tuple[list[RequestRecord], float, int]:
        """`concurrency` workers, each sending its next request as soon as the last one ended."""
        start = time.perf_counter()
        stop_at, target = self._stop_time(start), self._target()
        counter = itertools.count()
        records: list[RequestRecord] = []

        async def worker() -> None:
            while time.perf_counter() < stop_at:
                i = next(counter)
                if i >= target:
                    return
                records.append(await self.send(i, start))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return records, time.perf_counter() - start, 0

    async def open_level(self, rate: float, seed: int) -> tuple[list[RequestRecord], float, int]:
        """Arrivals at `rate`/s regardless of completions (a queue builds up when the server is
        slower); beyond `max_inflight` outstanding requests new arrivals are dropped and counted."""
        rng = random.Random(seed)
        start = time.perf_counter()
        stop_at, target = self._stop_time(start), self._target()
        tasks: set[asyncio.Task] = set()
        records: list[RequestRecord] = []
        dropped, next_at = 0, start
        for i in range(target):
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.perf_counter() >= stop_at:
                break
            if len(tasks) >= self.cfg.max_inflight:
                dropped += 1
            else:
                task = asyncio.create_task(self.send(i, start))
                task.add_done_callback(lambda t: (tasks.discard(t), records.append(t.result())))
                tasks.add(task)
            next_at += rng.expovariate(rate) if self.cfg.arrival == "poisson" else 1.0 / rate
        if tasks:
            await asyncio.gather(*tasks)
        return records, time.perf_counter() - start, dropped

    async def level(self, value: float, index: int) -> dict:
        before = await self.scrape()
        gauge_max: dict[str, float] = {}
        stop = asyncio.Event()
        poller = asyncio.create_task(self.poll_gauges(gauge_max, stop))
        try:
            if self.cfg.open_loop:
                records, wall, dropped = await self.open_level(value, self.cfg.shuffle_seed + index)
            else:
                records, wall, dropped = await self.closed_level(int(value))
        finally:
            stop.set()
            await poller
        if self.triton is not None and self.metrics_ok:
            await asyncio.sleep(0.5)  # Triton counts an execution just after its responses went out
        after = await self.scrape()
        summary = summarize_level(records, wall)
        summary["client_dropped"] = dropped
        key = "rate" if self.cfg.open_loop else "concurrency"
        return {
            key: value if self.cfg.open_loop else int(value),
            **summary,
            "server": server_summary(before, after, gauge_max, wall),
            "records": [r.to_dict() for r in sorted(records, key=lambda r: r.index)],
        }


async def wait_for_server(client, url: str, headers: dict | None, wait: float) -> None:
    """Wait up to `wait` seconds for /ready to answer 200 (servers without /ready: /health);
    fail clearly if it does not, rather than measuring a warming-up server's 503s."""
    end = time.perf_counter() + wait
    last = ""
    while True:
        try:
            r = await client.get(url + "/ready", headers=headers, timeout=5.0)
            if r.status_code == 404:
                r = await client.get(url + "/health", headers=headers, timeout=5.0)
            if r.status_code == 200:
                return
            last = f"{r.request.url.path} answered {r.status_code}: {r.text[:200]}"
        except Exception as e:
            last = f"{type(e).__name__}: {e}"
        if time.perf_counter() >= end:
            raise InputError(f"no ready server at {url} ({last})", "url")
        await asyncio.sleep(0.5)


async def run_stress_async(cfg: StressConfig, wait_ready: float = 0.0) -> dict:
    import httpx

    from indicf5_fast import __version__

    cfg.validate()
    width = max(cfg.concurrency) if not cfg.open_loop else cfg.max_inflight
    limits = httpx.Limits(max_connections=width + 4, max_keepalive_connections=width + 4)
    # trust_env=False: a proxy from the environment must never see loopback load
    async with (
        httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(cfg.timeout), trust_env=False) as client,
        httpx.AsyncClient(timeout=10.0, trust_env=False) as metrics_client,
    ):
        triton = _triton_target(cfg, width)
        bar = _progress_bar(cfg)
        run = LoadRunner(cfg, client, metrics_client, (lambda r: bar.update(1)) if bar else None, triton)
        started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        try:
            if triton is not None:
                await asyncio.to_thread(triton.wait_ready, wait_ready)
            else:
                await wait_for_server(client, cfg.url, run.headers, wait_ready)
            warm = [await run.send(-1 - i, time.perf_counter()) for i in range(cfg.warmup)]
            levels = []
            for i, value in enumerate(cfg.levels):
                if time.perf_counter() >= run.deadline:
                    break
                if bar:
                    bar.set_description(f"{'rate' if cfg.open_loop else 'concurrency'} {value:g}")
                levels.append(await run.level(value, i))
        finally:
            if bar:
                bar.close()
            if triton is not None:
                triton.close()
    config = {k: v for k, v in asdict(cfg).items() if k not in ("texts", "api_key", "progress")}
    config["texts"] = {
        "count": len(cfg.texts),
        "languages": sorted({t.lang for t in cfg.texts if t.lang}),
        "kinds": sorted({t.kind for t in cfg.texts}),
    }
    return {
        "tool": "indicf5-fast stress",
        "version": __version__,
        "started": started,
        "target": {"kind": "triton", "url": cfg.triton_url} if triton else {"kind": "http", "url": cfg.url},
        "mode": "open" if cfg.open_loop else "closed",
        "config": config,
        "warmup": {"requests": len(warm), "succeeded": sum(r.ok for r in warm)},
        "levels": levels,
        "truncated_by_max_time": len(levels) < len(cfg.levels),
    }


def run_stress(cfg: StressConfig, wait_ready: float = 0.0) -> dict:
    """Run the whole sweep; returns the report dict (see stress_report for its renderings)."""
    return asyncio.run(run_stress_async(cfg, wait_ready))


def _triton_target(cfg: StressConfig, workers: int):
    if not cfg.triton_url:
        return None
    from indicf5_fast.bench.stress.triton import TritonTarget, triton_options

    options = triton_options(cfg.voice, cfg.preset, cfg.nfe_step, cfg.speed, cfg.seed)
    if cfg.chunking:
        options["chunking"] = cfg.chunking
    return TritonTarget(
        cfg.triton_url, stream=cfg.stream, timeout=cfg.timeout, workers=workers, options=options
    )


def _progress_bar(cfg: StressConfig):
    if not cfg.progress:
        return None
    import sys

    from tqdm import tqdm

    total = cfg.requests * len(cfg.levels) if cfg.requests is not None else None
    return tqdm(total=total, unit="req", file=sys.stderr, dynamic_ncols=True)
