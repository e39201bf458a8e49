"""bound_native_memory: each setting takes effect (observed in a fresh process, since all of them
are process-wide and read once), and the audio is bit-for-bit the same with it as without."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from indicf5_fast.backends.native_memory import NativeMemoryPolicy, bound_native_memory, glibc

needs_glibc = pytest.mark.skipif(glibc() is None, reason="mallopt / malloc_trim are glibc's")


def run_py(code: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run `code` in a fresh interpreter (this checkout on its path); its stdout."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**full_env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


ONEDNN_CACHE_PROBE = """
    import os, sys
    for name in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY"):
        os.environ.pop(name, None)  # not inherited from a test process that applied the bound
    import torch  # imported first, as in the server: the cap must still apply
    if sys.argv[1] == "bounded":
        from indicf5_fast.backends.native_memory import bound_native_memory
        bound_native_memory(primitive_cache=1, arena_max=None, trim=False)
    a, c, w = (torch.randn(n, 64).to(torch.bfloat16) for n in (64, 32, 64))
    print("---", flush=True)
    for x in (a, c, a):  # the third call repeats the first shape
        torch.mm(x, w)
    print("===", flush=True)
"""


def _third_create(mode: str) -> str:
    code = ONEDNN_CACHE_PROBE.replace("sys.argv[1]", repr(mode))
    out = run_py(code, env={"ONEDNN_VERBOSE": "profile_create"})
    lines = out.split("---", 1)[1].split("===", 1)[0].splitlines()
    creates = [ln for ln in lines if ",create:" in ln and ",matmul," in ln]
    assert len(creates) == 3, out[-2000:]
    return creates[2]


def test_primitive_cache_cap_applies_after_torch_import():
    import torch

    if not torch.backends.mkldnn.is_available() or not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("no oneDNN bf16 matmul on this CPU")
    assert "cache_hit" in _third_create("default")  # oneDNN's default cache keeps the first shape
    assert "cache_miss" in _third_create("bounded")  # a capacity of 1 evicted it


def test_environment_setting_wins(monkeypatch):
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "7")
    monkeypatch.setenv("LRU_CACHE_CAPACITY", "")  # records the original, restored afterwards
    monkeypatch.delenv("LRU_CACHE_CAPACITY")
    policy = bound_native_memory(primitive_cache=256, arena_max=None, trim=False)
    assert policy.primitive_cache == {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "7", "LRU_CACHE_CAPACITY": "256"}
    assert os.environ["LRU_CACHE_CAPACITY"] == "256"
    assert "ONEDNN_PRIMITIVE_CACHE_CAPACITY=7" in policy.describe()
    with pytest.raises(ValueError):
        bound_native_memory(primitive_cache=0)
    assert NativeMemoryPolicy({}, None, False).describe().startswith("library defaults")


ARENA_PROBE = """
    import ctypes, os, tempfile, threading
    if {limit}:
        from indicf5_fast.backends.native_memory import bound_native_memory
        assert bound_native_memory(primitive_cache=None, arena_max={limit}).arena_max == {limit}
    libc = ctypes.CDLL("libc.so.6")
    libc.fopen.restype = ctypes.c_void_p
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    barrier, held = threading.Barrier(8), []
    def work():  # 8 threads allocating at the same time: glibc would give each its own arena
        held.append(bytearray(1 << 20))
        barrier.wait()
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    path = tempfile.mktemp()
    f = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, f)
    libc.fclose(f)
    print(open(path).read().count("<heap nr="))
    os.unlink(path)
"""


@needs_glibc
def test_arena_max_limits_malloc_heaps():
    assert int(run_py(ARENA_PROBE.format(limit=0))) > 2  # control: one arena per thread
    assert int(run_py(ARENA_PROBE.format(limit=2))) <= 2


TRIM_PROBE = """
    import ctypes
    from indicf5_fast.backends.native_memory import release_free_memory
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 256 << 20); libc.mallopt(-1, 1 << 30)  # as keep_freed_memory(): keep freed blocks
    def rss_mib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    blocks = [bytearray(b"x") * (1 << 20) for _ in range(300)]  # 300 MiB, pages touched
    before = rss_mib()
    del blocks[:-1]  # free all but the last: the freed memory is in the middle of the heap
    kept = rss_mib()
    release_free_memory()
    print(before, kept, rss_mib())
"""


@needs_glibc
def test_release_returns_freed_heap_pages():
    before, kept, released = map(float, run_py(TRIM_PROBE).split())
    assert kept > before - 50  # glibc alone keeps it (thresholds raised, block on top)
    assert released < kept - 200  # malloc_trim(0) gave the ~299 MiB back


SYNTH = """
    import sys, numpy as np
    mode, ckpt, out = {mode!r}, {ckpt!r}, {out!r}
    policy = None
    if mode == "bounded":  # the harshest setting: every primitive rebuilt at every call
        from indicf5_fast.backends.native_memory import bound_native_memory
        policy = bound_native_memory(primitive_cache=1, arena_max=1)
    import indicf5_fast
    from indicf5_fast.bench.stress.texts import load_texts
    tts = indicf5_fast.load(ckpt, device="cpu", nfe_step=7, schedule="epss")  # dtype auto, as served
    voice = tts.prepare_voice(ckpt + "/prompts/demo.wav", open(ckpt + "/prompts/demo.txt").read().strip())
    short, long = ([t.text for t in load_texts(langs=["hi"], kinds=[k])] for k in ("short", "long"))
    texts = [short[0], long[0], short[1]]
    waves = []
    for group in ([0], [1, 2], [0, 2], [1]):  # batches, and shapes that come back after eviction
        reqs = [tts.make_request(texts[i], voice=voice, seed=10 + i) for i in group]
        waves += tts.synthesize_batch(reqs)
        if policy is not None:
            policy.release()
    np.savez(out, *waves)
    print(tts.backend.describe()["dtype"])
"""


def test_same_audio_with_bounded_memory(tiny_ckpt, tmp_path):
    outs, dtypes = {}, {}
    for mode in ("default", "bounded"):
        out = tmp_path / f"{mode}.npz"
        dtypes[mode] = run_py(SYNTH.format(mode=mode, ckpt=str(tiny_ckpt), out=str(out))).strip()
        with np.load(out) as z:
            outs[mode] = [z[k] for k in sorted(z.files, key=lambda k: int(k.split("_")[1]))]
    assert dtypes["default"] == dtypes["bounded"], json.dumps(dtypes)
    assert len(outs["default"]) == len(outs["bounded"]) == 6
    for a, b in zip(outs["default"], outs["bounded"], strict=True):
        assert a.size > 0 and a.dtype == b.dtype and a.tobytes() == b.tobytes()  # bit-for-bit


def test_batcher_runs_after_job_on_the_worker_after_every_job():
    import asyncio
    import threading

    from indicf5_fast.server.batcher import Batcher

    calls: list[str] = []

    def after_job():
        calls.append(threading.current_thread().name)
        if len(calls) == 2:
            raise RuntimeError("a failing hook must not fail the job")

    def boom():
        raise ValueError("job failed")

    async def main():
        b = Batcher(object(), max_batch_size=1, max_wait_s=0.0, max_pending=4, after_job=after_job)
        await b.start()
        try:
            assert await b.run_in_worker(lambda: 1) == 1
            assert await b.run_in_worker(lambda: 2) == 2  # the hook raises here: logged only
            with pytest.raises(ValueError):
                await b.run_in_worker(boom)  # the hook runs after a failed job too
        finally:
            await b.stop(timeout_s=5)

    asyncio.run(main())
    assert len(calls) == 3 and all(name.startswith("indicf5-worker") for name in calls)
