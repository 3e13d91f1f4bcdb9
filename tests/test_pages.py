"""New memory for large arrays (:mod:`reprogls.kernels.cpu.pages`): small pages where the
machine reports free memory to its host, NumPy's choice elsewhere; never a changed value."""

from __future__ import annotations

import gc
import mmap
import sys
import time

import numpy as np
import pytest

from reprogls import kernels
from reprogls.kernels import reference as ref
from reprogls.kernels.cpu import pages

linux_only = pytest.mark.skipif(not (sys.platform.startswith("linux") and
                                     hasattr(mmap, "MADV_NOHUGEPAGE")),
                                reason="MADV_NOHUGEPAGE is Linux's")


@pytest.fixture
def policy(monkeypatch):
    """Set REPROGLS_HUGE_PAGES for one test (None: unset) and forget the cached choice."""
    def set_policy(value):
        if value is None:
            monkeypatch.delenv("REPROGLS_HUGE_PAGES", raising=False)
        else:
            monkeypatch.setenv("REPROGLS_HUGE_PAGES", value)
        pages.small_pages.cache_clear()
    yield set_policy
    pages.small_pages.cache_clear()


def _vm_flags(address: int) -> list[str] | None:
    """The VmFlags of the mapping of this process that holds ``address`` (None: none)."""
    inside = False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(part, 16) for part in head.split("-"))
                inside = lo <= address < hi
            elif inside and head == "VmFlags:":
                return line.split()[1:]
    return None


def _features_file(tmp_path, bits: str) -> str:
    device = tmp_path / "virtio0"
    device.mkdir()
    (device / "features").write_text(bits + "\n")
    return str(tmp_path / "virtio*" / "features")


@pytest.mark.parametrize(("bits", "reports"), [("0110010100000000", True),
                                               ("0110000100000000", False), ("0110", False)])
def test_free_page_reporting_is_read_from_the_balloon_features(tmp_path, monkeypatch,
                                                               policy, bits, reports):
    monkeypatch.setattr(pages, "_BALLOON_FEATURES", _features_file(tmp_path, bits))
    assert pages._balloon_reports_free_pages() is reports
    policy(None)
    assert pages.small_pages() is (reports and hasattr(mmap, "MADV_NOHUGEPAGE"))


def test_no_balloon_device_means_numpy_pages(tmp_path, monkeypatch, policy):
    monkeypatch.setattr(pages, "_BALLOON_FEATURES", str(tmp_path / "none" / "features"))
    policy(None)
    assert not pages.small_pages()
    a = pages.fresh((1024, 1024))
    assert a.flags.owndata and a.shape == (1024, 1024) and a.dtype == np.float64


@linux_only
def test_the_environment_overrides_the_detection(tmp_path, monkeypatch, policy):
    monkeypatch.setattr(pages, "_BALLOON_FEATURES", _features_file(tmp_path, "0000010"))
    policy("1")
    assert not pages.small_pages()
    policy("0")
    assert pages.small_pages()


@linux_only
def test_a_large_array_gets_its_own_mapping_without_huge_pages(policy):
    policy("0")
    # the mappings that earlier tests in this process freed less than KEEP_SECONDS ago
    gc.collect()
    with pages._kept_lock:
        pages._kept.clear()
    a = pages.fresh((700, 1000))  # 5.6 MB
    assert a.shape == (700, 1000) and a.dtype == np.float64 and a.flags.c_contiguous
    assert a.flags.writeable and not a.flags.owndata
    assert a.ctypes.data % mmap.PAGESIZE == 0
    flags = _vm_flags(a.ctypes.data)
    assert flags is not None and "nh" in flags and "hg" not in flags
    a[:] = 2.5
    assert float(a[-1, -1]) == 2.5
    # a view keeps the mapping; dropping every reference unmaps it
    view, address = a[10:], a.ctypes.data
    del a
    gc.collect()
    assert float(view[0, 0]) == 2.5 and _vm_flags(address) is not None
    del view
    gc.collect()
    # the mapping is kept a moment for the next request (below), then unmapped
    assert _vm_flags(address) is not None and len(pages._kept) == 1
    pages._kept.clear()
    gc.collect()
    assert _vm_flags(address) is None


@linux_only
def test_small_arrays_and_the_huge_page_setting_use_numpy_empty(policy):
    policy("0")
    small = pages.fresh(1000)
    assert small.flags.owndata and small.shape == (1000,)
    policy("1")
    large = pages.fresh((700, 1000))
    assert large.flags.owndata and large.shape == (700, 1000)


@linux_only
@pytest.mark.parametrize("setting", ["0", "1"])
def test_kernel_outputs_have_the_same_bits_in_either_kind_of_page(policy, setting):
    policy(setting)
    rng = np.random.default_rng(7)
    x = rng.standard_normal(600_000)  # 4.8 MB: past the mapping threshold
    X = rng.standard_normal((200_000, 30))  # U: 200000 x 4, 6.4 MB
    offsets = np.array([0, 7, 7, 19, 30])
    beta = rng.standard_normal(30)
    reference = ref.soft_threshold(x, 0.3)
    assert np.array_equal(kernels.soft_threshold(x, 0.3).view(np.uint64),
                          reference.view(np.uint64))
    U = kernels.sur_matvec(X, offsets, beta)
    assert U.nbytes >= pages.FRESH_MAPPING_BYTES and U.flags.owndata == (setting == "1")
    assert np.array_equal(U.view(np.uint64),
                          ref.sur_matvec(X, offsets, beta).view(np.uint64))


def _mapping_of(a: np.ndarray) -> mmap.mmap:
    """The mmap under an array from :func:`pages.fresh`."""
    owner = a if isinstance(a.base, memoryview) else a.base
    return owner.base.obj


@pytest.fixture
def kept(monkeypatch, policy):
    """Small pages forced and no kept mappings before or after the test."""
    policy("0")
    gc.collect()  # (arrays an earlier test left behind would be kept during this one)
    pages._kept.clear()
    yield pages._kept
    pages._kept.clear()


@linux_only
def test_a_freed_mapping_serves_the_next_request_that_fits(kept):
    a = pages.fresh((700, 1000))
    memory = _mapping_of(a)
    view = a[100:]
    del a
    gc.collect()
    assert not kept  # a view is alive: the memory is still in use
    del view
    gc.collect()
    assert [m for _, m in kept] == [memory]
    larger = pages.fresh((1000, 701))  # (held: freed, it would be kept too)
    assert _mapping_of(larger) is not memory and kept  # larger: a new mapping
    b = pages.fresh((600, 1000))  # smaller by less than a quarter: the kept one
    assert _mapping_of(b) is memory and not kept
    assert b.shape == (600, 1000) and b.flags.c_contiguous and b.flags.writeable
    del b
    gc.collect()
    assert _mapping_of(pages.fresh((530, 1000))) is not memory  # smaller by more


@linux_only
def test_kept_mappings_are_few_and_expire(kept, monkeypatch):
    # a machine of 80 MB: 10 MB of kept mappings, two of these
    monkeypatch.setattr(pages, "_physical_bytes", lambda: 80_000_000)
    arrays = [pages.fresh(600_000 + i) for i in range(4)]
    memories = [_mapping_of(a) for a in arrays]
    while arrays:  # freed in order
        del arrays[0]
    gc.collect()
    assert [m for _, m in kept] == memories[-2:]
    monkeypatch.setattr(pages, "KEEP_SECONDS", 0.05)
    pages._expire()  # what the timers call; kept ones are older than 0.05 s after this
    time.sleep(0.1)
    pages._expire()
    assert not kept


@linux_only
def test_kernel_outputs_in_reused_memory_have_the_reference_bits(kept):
    x = np.random.default_rng(3).standard_normal(700_000)
    poison = pages.fresh(x.shape)
    poison[:] = np.nan  # what the reused memory holds before the kernel writes it
    memory = _mapping_of(poison)
    del poison
    gc.collect()
    out = kernels.soft_threshold(x, 0.2)
    assert _mapping_of(out) is memory
    assert np.array_equal(out.view(np.uint64), ref.soft_threshold(x, 0.2).view(np.uint64))


@linux_only
def test_a_mapping_larger_than_its_share_of_memory_is_not_kept(kept, monkeypatch):
    monkeypatch.setattr(pages, "_physical_bytes", lambda: 32_000_000)
    big = pages.fresh(600_000)  # 4.8 MB, more than an eighth of a 32 MB machine
    del big
    gc.collect()
    assert not kept
