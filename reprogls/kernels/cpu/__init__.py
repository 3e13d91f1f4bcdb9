"""Numba CPU kernels. Importing this module imports Numba (not at package import)."""

from .reductions import cro_dot, cro_nrm2, cro_sum

__all__ = ["cro_dot", "cro_nrm2", "cro_sum"]
