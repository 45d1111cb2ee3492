"""torch.distributed plumbing: one code path for one process and for many.

Launch with ``torchrun --nproc-per-node N -m emovox train ...`` (env:// rendezvous, any
number of machines) or ``emovox train --nproc N ...`` (``torch.multiprocessing.spawn``
with a ``file://`` rendezvous on this machine). The backend follows the device: gloo
on a machine without CUDA; with CUDA, nccl for GPU tensors (gradients, batch-norm
statistics) and gloo for the small CPU exchanges (loss sums, stop flags, objects), so
``--device cpu`` on a GPU machine works too. Each rank uses GPU ``LOCAL_RANK``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable

import numpy as np
import torch
import torch.distributed as dist


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def local_rank() -> int:
    """This process's index on its machine (torchrun's ``LOCAL_RANK``; the rank when spawned)."""
    return int(os.environ.get("LOCAL_RANK", rank()))


def backend() -> str:
    """``gloo`` without CUDA; with CUDA, nccl for CUDA tensors and gloo for CPU tensors."""
    if torch.cuda.is_available() and dist.is_nccl_available():
        return "cpu:gloo,cuda:nccl"
    return "gloo"


def device_for_rank(device: torch.device) -> torch.device:
    """``device`` in one process; under torch.distributed on CUDA, GPU ``LOCAL_RANK`` (one GPU per rank)."""
    if world() == 1 or device.type != "cuda":
        return device
    from emovox.errors import ConfigError

    index, count = local_rank(), torch.cuda.device_count()
    if index >= count:
        raise ConfigError(f"rank {rank()} (local rank {index}) needs its own GPU, but {count} are visible",
                          fix=f"start at most {count} processes per machine, or pass --device cpu")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def _bind_gpu() -> None:
    """Before joining a group with nccl: make GPU ``LOCAL_RANK`` this process's current device."""
    if torch.cuda.is_available() and local_rank() < torch.cuda.device_count():
        torch.cuda.set_device(local_rank())


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def init_from_env() -> None:
    """Join the process group described by torchrun's environment variables."""
    from emovox.parallel import set_threads

    if not active():
        store, rank_, world_ = next(dist.rendezvous("env://"))
        # torchrun's agent keeps one TCP store across restarts, and the process group keys
        # are not namespaced per attempt: a restarted group would read the dead workers'
        # addresses (gloo "connection refused"). Namespace them by restart count.
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        store = dist.PrefixStore(f"emovox/attempt_{attempt}", store)
        _bind_gpu()
        dist.init_process_group(backend(), store=store, rank=rank_, world_size=world_)
        local = int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size()))
        set_threads(max(1, (os.cpu_count() or 1) // local))


def barrier() -> None:
    if active():
        dist.barrier()


def sum_array(x: np.ndarray) -> np.ndarray:
    """Element-wise sum of ``x`` over all ranks (identity in one process)."""
    if not active():
        return x
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
    dist.all_reduce(t)
    return t.numpy()


def average_buffers(module: torch.nn.Module) -> None:
    """Average floating-point buffers (batch-norm running statistics) over ranks, in place."""
    if not active():
        return
    for buf in module.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf.data)
            buf.data /= world()


def gather(obj) -> list:
    """``obj`` from every rank, in rank order."""
    if not active():
        return [obj]
    out = [None] * world()
    dist.all_gather_object(out, obj)
    return out


def shard(indices: np.ndarray) -> np.ndarray:
    """This rank's share of ``indices``, padded by wrap-around so every rank has as many."""
    n = world()
    if n == 1:
        return indices
    per = -(-len(indices) // n)
    padded = np.resize(indices, per * n)
    return padded[rank() :: n]


def run(fn: Callable, *args, nproc: int = 1, **kwargs):
    """``fn(*args, **kwargs)`` in this process, in ``nproc`` spawned ranks, or as this torchrun rank.

    Returns ``fn``'s result on rank 0 of a single process or torchrun; ``None`` after a
    spawn (the ranks ran in child processes). Other torchrun ranks exit here.
    """
    if nproc > 1:
        spawn(_call, nproc, fn, args, kwargs)
        return None
    if launched_by_torchrun():
        init_from_env()
        result = fn(*args, **kwargs)
        if not is_main():
            exit_torchrun_worker(0)
        return result
    return fn(*args, **kwargs)


def _call(fn: Callable, args: tuple, kwargs: dict):
    return fn(*args, **kwargs)


def spawn(fn: Callable, nproc: int, *args) -> None:
    """Run ``fn(*args)`` in ``nproc`` processes joined in one gloo/nccl group."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_spawned, args=(nproc, f"file://{tmp}/rendezvous", fn, args), nprocs=nproc, join=True)


def _spawned(rank_: int, nproc: int, init_method: str, fn: Callable, args: tuple) -> None:
    from emovox.parallel import set_threads

    set_threads(max(1, (os.cpu_count() or 1) // nproc))
    os.environ["LOCAL_RANK"] = str(rank_)  # one machine: one GPU per rank, as under torchrun
    _bind_gpu()
    dist.init_process_group(backend(), init_method=init_method, rank=rank_, world_size=nproc)
    try:
        fn(*args)
    finally:
        dist.barrier()
        dist.destroy_process_group()


def exit_torchrun_worker(code: int = 0) -> None:
    """End a torchrun worker without the interpreter's teardown.

    With torch 2.13, torchrun workers abort at interpreter exit ("terminate called
    without an active exception") about one run in five; flushing and ``os._exit``
    avoids it.
    """
    if active():
        dist.barrier()
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
