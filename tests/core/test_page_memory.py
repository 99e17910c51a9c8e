"""Compact weights on huge pages: asked for where the OS offers them, ordinary memory otherwise."""

import mmap
import re
import sys

import numpy as np
import pytest
import torch

from core import compact_weights, page_memory

needs_thp = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and page_memory.huge_pages_offered()),
    reason="transparent huge pages are not offered here",
)


def _vm_flags(address: int) -> set[str]:
    """The kernel's flags for the mapping that holds ``address`` (``hg``: huge pages advised)."""
    inside = False
    for line in open("/proc/self/smaps"):
        bounds = re.match(r"^([0-9a-f]+)-([0-9a-f]+) ", line)
        if bounds:
            inside = int(bounds.group(1), 16) <= address < int(bounds.group(2), 16)
        elif inside and line.startswith("VmFlags:"):
            return set(line.split()[1:])
    raise AssertionError(f"no mapping holds {address:#x}")


def _in_own_mapping(array: np.ndarray) -> bool:
    """True when ``array`` lives in a mapping of page_memory's own (not NumPy's heap memory, which
    other libraries in the process may also have advised)."""
    base = array.base
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(
        getattr(base, "obj", base), mmap.mmap
    )  # NumPy holds the mmap through a memoryview


@needs_thp
def test_a_large_compact_weight_asks_for_huge_pages():
    weight = torch.randn(1024, 2048)
    compact = compact_weights.CompactWeight(weight, "bf16")  # 4 MiB
    address = compact.values.ctypes.data
    assert address % page_memory.HUGE_PAGE == 0
    assert _in_own_mapping(compact.values) and "hg" in _vm_flags(address)
    torch.testing.assert_close(compact.widened(), weight.to(torch.bfloat16).float(), rtol=0, atol=0)


@needs_thp
def test_huge_pages_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("DEEPSHIVA_HUGE_PAGES", "0")
    array = page_memory.empty((1024, 2048), np.int16)
    assert not _in_own_mapping(array)


@needs_thp
def test_arrays_under_a_huge_page_stay_ordinary_memory():
    array = page_memory.empty((64, 64), np.float32)
    assert array.shape == (64, 64) and array.dtype == np.float32
    assert not _in_own_mapping(array)


def test_huge_page_arrays_are_writable_and_sized_as_asked():
    array = page_memory.empty((3, page_memory.HUGE_PAGE // 4 + 1), np.float32)
    assert array.shape == (3, page_memory.HUGE_PAGE // 4 + 1) and array.flags.c_contiguous
    array[:] = 2.5
    assert float(array.sum()) == 2.5 * array.size


def _resident_bytes(address: int) -> int:
    """Resident bytes of the mapping that holds ``address`` (its Rss line in smaps)."""
    inside = False
    for line in open("/proc/self/smaps"):
        bounds = re.match(r"^([0-9a-f]+)-([0-9a-f]+) ", line)
        if bounds:
            inside = int(bounds.group(1), 16) <= address < int(bounds.group(2), 16)
        elif inside and line.startswith("Rss:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no mapping holds {address:#x}")


@needs_thp
def test_an_array_s_last_partial_huge_page_takes_only_what_it_reaches():
    """An array of 1.25 huge pages, written whole, holds about its own size: a huge page over its
    tail would hold 2 (over 113 matrices of a 1.5B model that was 133 MB past the weights)."""
    nbytes = page_memory.HUGE_PAGE * 5 // 4
    array = page_memory.empty((nbytes,), np.uint8)
    array[:] = 1
    assert _in_own_mapping(array)
    assert _resident_bytes(array.ctypes.data) <= nbytes + mmap.PAGESIZE
