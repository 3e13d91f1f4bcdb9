"""reprogls: bitwise-reproducible kernels and low-rank GLS on CPU (Numba) and GPU (CuPy).

``reprogls.fit``, ``reprogls.LowRankGLS`` and ``reprogls.GLSResult`` are the estimator's
entry points (:mod:`reprogls.gls`). Importing the package is cheap: Numba and CuPy are
imported only when a kernel runs, and the estimator only when one of its names is used.
"""

from .kernels import CRO_VERSION, available_devices

__version__ = "0.1.0"

__all__ = ["CRO_VERSION", "GLSResult", "LowRankGLS", "__version__", "available_devices",
           "fit"]

_ESTIMATOR_NAMES = ("GLSResult", "LowRankGLS", "fit")


def __getattr__(name: str):
    """Lazy access to the estimator (importing it imports Numba)."""
    if name in _ESTIMATOR_NAMES:
        from . import gls

        return getattr(gls, name)
    raise AttributeError(f"module 'reprogls' has no attribute {name!r}")
