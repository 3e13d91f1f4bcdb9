"""The ``stacklevel`` that makes a warning name the user's line.

``warnings.warn(..., stacklevel=2)`` names the caller of the function that warns, which
is the package's own line when the public entry point is reached through another one
(``LowRankGLS.fit`` calls ``gls.fit``, ``gls.fit`` calls ``check_rank``). Counting the
frames instead, up to the first one outside the package, names the user's line however
the call came in, and keeps no global state (``warnings.catch_warnings`` in library code
is not thread-safe). Python 3.12's ``skip_file_prefixes`` does the same; the package
supports 3.10.
"""

from __future__ import annotations

import os
import sys

__all__ = ["user_stacklevel"]

#: The installed package's directory (``reprogls/``): frames of files under it are ours.
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def user_stacklevel() -> int:
    """:func:`warnings.warn`'s ``stacklevel``, for a warning raised by the function that
    calls this one, of the innermost frame outside the package (the outermost frame
    when every frame is the package's, as under ``python -m reprogls``)."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level
