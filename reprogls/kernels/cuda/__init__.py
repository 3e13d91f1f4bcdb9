"""CUDA kernels (CuPy ``RawModule`` over NVRTC-compiled CUDA C).

This package's ``__init__`` imports nothing: :mod:`.sources` (the CUDA C text and the
NVRTC options) works without CuPy, and the kernel modules (:mod:`.reductions`) import
CuPy, which the dispatcher does only when a CUDA device is asked for.
"""
