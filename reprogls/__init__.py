"""reprogls: bitwise-reproducible kernels and low-rank GLS on CPU (Numba) and GPU (CuPy).

Importing the package is cheap: Numba and CuPy are imported only when a kernel runs.
"""

from .kernels import CRO_VERSION, available_devices

__version__ = "0.1.0"

__all__ = ["CRO_VERSION", "__version__", "available_devices"]
