"""Bound a long-lived process's native (C/C++) memory on CPU: oneDNN's caches and glibc's heap.

Why a server's RSS grows with the *variety* of request lengths (not with the request count):
  * PyTorch's CPU kernels (oneDNN, called directly and through ideep) build a primitive — JIT
    code plus descriptors — per tensor shape and keep it in two LRU caches of 1024 entries each:
    oneDNN's primitive cache and ideep's computation cache. Almost every request brings a new
    frame count (DiT GEMMs, attention matmuls, convolutions, the vocoder), so both fill up:
    in-use heap 150 -> 540 MiB after 100 varied batches of the tiny model, still climbing.
  * on CPUs with AMX, PyTorch's fused bf16/fp16 attention keeps a micro-kernel per query/key
    length in a per-thread cache that no setting bounds or frees (~90 KiB per length per
    thread). Not bounded here: the torch backend pads that kernel's calls to a fixed set of
    lengths (``model/attention.py``), in every process, server or not.
  * glibc keeps freed blocks in its arenas, one arena per allocating thread. ``keep_freed_memory``
    (torch_backend) raises the trim and mmap thresholds on purpose, so one synthesis reuses its
    activation memory instead of page-faulting it in again each DiT pass; the price is that the
    high-water mark of the largest batch seen so far stays resident (650 MiB free-but-kept above).

What ``bound_native_memory`` sets (all process-wide, so the server calls it once at start-up,
before the model loads; the library's ``load`` does not):
  * both cache capacities (env ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` and ``LRU_CACHE_CAPACITY``),
    read once, by the first primitive the process creates; a value already in the environment
    wins. A capped cache rebuilds an evicted primitive when its shape comes back: the same
    kernel for the same shape, so the output is bit-for-bit unchanged (tests/test_native_memory.py);
    the cost is the rebuild (~2 ms each, JIT) when a shape returns after eviction; one batch
    of four varied requests creates ~85 primitives;
  * ``mallopt(M_ARENA_MAX)``: at most this many malloc arenas (glibc's default is 8 per core),
    so the model worker, the intra-op threads and the HTTP threads share a few heaps;
  * and returns a policy whose ``release`` the server runs after each job on its model worker:
    ``malloc_trim(0)`` gives the free pages of every arena back to the OS. glibc's own trimming
    only cuts the top of a heap; a batch's activations are freed from its middle. Within a job
    ``keep_freed_memory`` still keeps them, so only the first DiT pass of the next job faults
    its pages in again.
Not glibc (musl, macOS): the caches are still capped; arenas and trimming are skipped.
"""

from __future__ import annotations

import ctypes
import os
import platform
from dataclasses import dataclass

CACHE_ENV = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")  # oneDNN, ideep
# primitives per cache (default 1024): a bf16 GEMM primitive holds ~0.65 MiB of JIT code; one
# DiT step uses ~20, one batch of four varied requests creates ~85
DEFAULT_PRIMITIVE_CACHE = 128
DEFAULT_ARENA_MAX = 2
_M_ARENA_MAX = -8  # <malloc.h>


def glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (mallopt / malloc_trim exist), else None."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def release_free_memory() -> bool:
    """``malloc_trim(0)``: return the free pages of every malloc arena to the OS. Process-wide;
    a few milliseconds. True when glibc released something."""
    libc = glibc()
    return bool(libc is not None and libc.malloc_trim(0))


@dataclass(frozen=True)
class NativeMemoryPolicy:
    """What ``bound_native_memory`` applied (None / False: left as it was)."""

    primitive_cache: dict[str, str]  # env var -> value in force (ours or the user's)
    arena_max: int | None
    trim: bool

    def release(self) -> None:
        """Run after each unit of model work (the server's worker thread)."""
        if self.trim:
            release_free_memory()

    def describe(self) -> str:
        caches = ", ".join(f"{k}={v}" for k, v in self.primitive_cache.items()) or "library defaults"
        arenas = f"M_ARENA_MAX={self.arena_max}" if self.arena_max else "arenas: glibc default"
        return f"{caches}; {arenas}; malloc_trim after each job: {'on' if self.trim else 'off'}"


def bound_native_memory(
    primitive_cache: int | None = DEFAULT_PRIMITIVE_CACHE,
    arena_max: int | None = DEFAULT_ARENA_MAX,
    trim: bool = True,
) -> NativeMemoryPolicy:
    """Cap oneDNN's and ideep's primitive caches, limit glibc's arenas, enable trimming.

    Process-wide: call once, at start-up, before the first CPU kernel runs (the caches read
    their capacity at their first use; arenas made before stay). ``None`` leaves a setting alone.
    """
    caches: dict[str, str] = {}
    if primitive_cache is not None:
        if int(primitive_cache) < 1:
            raise ValueError(f"primitive_cache must be >= 1 or None, got {primitive_cache!r}")
        for name in CACHE_ENV:
            caches[name] = os.environ.setdefault(name, str(int(primitive_cache)))
    libc = glibc()
    applied_arenas = None
    if arena_max is not None and libc is not None:
        if int(arena_max) < 1:
            raise ValueError(f"arena_max must be >= 1 or None, got {arena_max!r}")
        if libc.mallopt(_M_ARENA_MAX, int(arena_max)):
            applied_arenas = int(arena_max)
    return NativeMemoryPolicy(caches, applied_arenas, bool(trim and libc is not None))
