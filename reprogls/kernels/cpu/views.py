"""Array views without reference counting, for the inner loops of the block kernels.

Every slice of a Numba array (``S[dst:dst + L]``) copies the parent's *meminfo* and
increments its reference count with an atomic instruction, then decrements it when the
slice dies. The block kernels slice their scratch and their (shared, read-only) inputs
thousands of times per block of 32 rows: measured with ``perf`` on the fused GLS
operator at N = 20000, K = 200, p = 10, ``NRT_incref``/``NRT_decref`` took 22% of the
time on one thread, and more on two, where both threads bump the counters of the same
shared inputs (the cache line bounces between the cores).

:func:`unmanaged` returns a view of an array whose meminfo is NULL: Numba's
``NRT_incref``/``NRT_decref`` return at once for NULL, so slices of the view cost
no atomics. It moves no data and changes no arithmetic, so no result bit depends on it.

The view does not keep its data alive: use it only inside the function that holds the
original array (a task holding its scratch and its arguments), never return or store it.
"Holds" means the original is used again after the view's last use: Numba frees a local
array right after its last use, and a use of the view does not count. (An ``A^T B``
task once read its accumulators back through their views only: they were freed as soon
as the views were made, which went unnoticed while they were small heap blocks and
crashed once they were large enough to be unmapped.)

:func:`borrowed_matrix` builds the same kind of view over a float64 matrix given by its
address and strides: how one compiled call reads many separate caller arrays (the K
designs packed by :mod:`reprogls.gls._pack`) without a Numba typed list, whose methods
are compiled again in every process (~0.8 s).
"""

from __future__ import annotations

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import populate_array

__all__ = ["borrowed_matrix", "borrowed_vector", "unmanaged"]


@intrinsic
def unmanaged(typingctx, arr):
    """A view of ``arr`` (same data, shape and strides) with no reference count."""
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, signature, args):
        src = context.make_array(arr)(context, builder, value=args[0])
        view = context.make_array(arr)(context, builder)
        view.meminfo = cgutils.get_null_value(view.meminfo.type)
        view.parent = cgutils.get_null_value(view.parent.type)
        view.nitems = src.nitems
        view.itemsize = src.itemsize
        view.data = src.data
        view.shape = src.shape
        view.strides = src.strides
        return view._getvalue()

    return arr(arr), codegen


_MATRIX = types.Array(types.float64, 2, "A")


@intrinsic
def borrowed_matrix(typingctx, address, n_rows, n_cols, row_stride, col_stride):
    """A 2-D float64 view (layout "A", no reference count) of the ``n_rows x n_cols``
    matrix at ``address`` whose element ``[i, c]`` lies ``i * row_stride + c *
    col_stride`` bytes further (``ndarray.ctypes.data`` and ``ndarray.strides``).

    Nothing checks the address: the caller keeps the array alive, and in range, for as
    long as the view is used."""
    if not all(isinstance(a, types.Integer) for a in
               (address, n_rows, n_cols, row_stride, col_stride)):
        return None
    sig = _MATRIX(types.int64, types.int64, types.int64, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        addr, rows, cols, rs, cs = args
        view = context.make_array(_MATRIX)(context, builder)
        data = builder.inttoptr(addr, view.data.type)
        populate_array(view, data=data, shape=[rows, cols], strides=[rs, cs], itemsize=8,
                       meminfo=None)
        return view._getvalue()

    return sig, codegen


_VECTOR = types.Array(types.float64, 1, "C")


@intrinsic
def borrowed_vector(typingctx, address, n):
    """A 1-D C-contiguous float64 view (no reference count) of the ``n`` values at
    ``address`` (bytes): for loops that LLVM should vectorise, where the strides of a
    :func:`borrowed_matrix` are only known at run time. Nothing checks the address."""
    if not all(isinstance(a, types.Integer) for a in (address, n)):
        return None
    sig = _VECTOR(types.int64, types.int64)

    def codegen(context, builder, signature, args):
        addr, count = args
        view = context.make_array(_VECTOR)(context, builder)
        data = builder.inttoptr(addr, view.data.type)
        populate_array(view, data=data, shape=[count], strides=[context.get_constant(
            types.intp, 8)], itemsize=8, meminfo=None)
        return view._getvalue()

    return sig, codegen
