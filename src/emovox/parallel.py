"""Thread limits for worker processes (2 cores thrash when every worker uses all of them)."""

from __future__ import annotations

import os

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def set_threads(n: int) -> None:
    """Limit this process to ``n`` compute threads (torch, BLAS, OpenMP)."""
    for var in THREAD_VARS:
        os.environ[var] = str(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:
        pass
    import torch

    torch.set_num_threads(n)
