"""Large read-mostly arrays on transparent huge pages, where the kernel offers them.

A decode step streams every weight once. With 4 KiB pages, 2 GB of weights span half a million
pages, and the walk through them costs TLB misses that slow the stream; 2 MiB pages cut that
512-fold. On this project's VM (Linux, transparent huge pages in ``madvise`` mode) a two-thread
AVX2 read of 1 GB ran at 32.0 GB/s on ordinary pages and 35.5-35.9 GB/s after
``madvise(MADV_HUGEPAGE)`` (benchmarks/RESULTS.md). Where huge pages are not offered (another
OS, THP set to ``never``) or ``DEEPSHIVA_HUGE_PAGES=0`` turns them off, the arrays are
ordinary NumPy memory and nothing else changes.
"""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np

from . import options

HUGE_PAGE = 2 * 1024 * 1024
_THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def huge_pages_offered() -> bool:
    """True when this kernel gives huge pages to memory that asks for them (``madvise``/``always``)
    and ``DEEPSHIVA_HUGE_PAGES`` is not ``0``."""
    if not options.read("huge_pages"):
        return False
    try:
        setting = _THP_SETTING.read_text()
    except OSError:
        return False
    return hasattr(mmap, "MADV_HUGEPAGE") and "[never]" not in setting


def empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialized array, on huge pages when it is at least one huge page long and they are offered."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if nbytes < HUGE_PAGE or not huge_pages_offered():
        return np.empty(shape, dtype)
    # Anonymous memory, one huge page longer than needed so the array can start on a huge-page
    # boundary; the slack before it is never touched, so it never takes physical memory.
    # Only the whole huge pages the array covers are advised: a huge page over its last
    # partial one would fault in up to 2 MiB past its end (133 MB over Qwen2.5-Coder-1.5B's
    # 113 matrices, benchmarks/RESULTS.md, "memory branch ... users' sizes"); the tail stays
    # on ordinary pages, each taken only where the array reaches.
    span = -(-nbytes // HUGE_PAGE) * HUGE_PAGE
    region = mmap.mmap(-1, span + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    start = -_address(region) % HUGE_PAGE
    region.madvise(mmap.MADV_HUGEPAGE, start, nbytes // HUGE_PAGE * HUGE_PAGE)
    return np.frombuffer(region, dtype=dtype, count=nbytes // dtype.itemsize, offset=start).reshape(
        shape
    )


def _address(region: mmap.mmap) -> int:
    return np.frombuffer(region, dtype=np.uint8, count=1).ctypes.data


def file_mappings() -> list[tuple[int, int]]:
    """(start, end) of this process's file-backed mappings (Linux; empty elsewhere)."""
    try:
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    spans = []
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith("/"):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            spans.append((start, end))
    return spans


def drop_file_pages(tensors, whole_storage: bool = True, spans=None) -> int:
    """Take the pages of memory-mapped checkpoint tensors that nothing reads any more out of this
    process's resident memory (``madvise(MADV_DONTNEED)``; the file's pages stay in the OS's page
    cache, and a read would fetch them again). Only whole pages inside a file-backed mapping are
    touched, never anonymous memory. ``whole_storage``: from each tensor's start to the end of
    its storage (a released parameter), else only the tensor's own bytes (a contiguous slice
    just read). ``spans``: ``file_mappings()`` read beforehand by a caller dropping many slices
    of tensors it keeps alive (their mappings cannot go meanwhile). Returns the bytes advised
    (0 where the OS has no such call)."""
    advise = getattr(mmap, "MADV_DONTNEED", None)
    if advise is None:
        return 0
    spans = file_mappings() if spans is None else spans
    if not spans:
        return 0
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    page = mmap.PAGESIZE
    dropped = 0
    for tensor in tensors:
        start = tensor.data_ptr()
        if whole_storage:
            size = (
                tensor.untyped_storage().nbytes() - tensor.storage_offset() * tensor.element_size()
            )
        elif tensor.is_contiguous():
            size = tensor.numel() * tensor.element_size()
        else:
            continue
        end = start + size
        if not any(lo <= start and end <= hi for lo, hi in spans):
            continue
        first, last = -(-start // page) * page, end // page * page
        if (
            last > first
            and libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), advise) == 0
        ):
            dropped += last - first
    return dropped


def return_freed_heap() -> bool:
    """Give the free pages of the C heap back to the OS (glibc's ``malloc_trim``). Large
    temporaries freed by PyTorch go back to malloc, whose heap keeps them for reuse: after a
    load that quantizes layer by layer, hundreds of MB of them. False where the C library has no
    such call (not glibc)."""
    global _malloc_trim
    if _malloc_trim is None:
        import ctypes

        try:
            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if not _malloc_trim:
        return False
    _malloc_trim(0)
    return True


_malloc_trim = None  # glibc's malloc_trim once looked up, False where there is none
