"""Where tensors live and in which precision: ``auto | cpu | cuda[:N]`` and ``auto | bf16 | fp16 | fp32``.

Shared by training and inference (this module imports neither). Features are numpy on
the CPU; :func:`to_device` moves one batch at a time (from pinned memory, without
blocking, on CUDA). Checkpoints are always written from CPU tensors (:func:`to_cpu`)
and read with ``map_location="cpu"``, so a run dir moves freely between machines.

Examples
--------
>>> resolve("cpu")
device(type='cpu')
>>> resolve_precision("auto", resolve("cpu"))
'fp32'
"""

from __future__ import annotations

import contextlib
import re

import numpy as np
import torch

from emovox.errors import ConfigError

DEVICES = "auto, cpu, cuda or cuda:N"
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_SPEC = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


def check(spec: str) -> str:
    """``spec`` if it is a well-formed device name (whether or not the device exists), else ConfigError."""
    m = _SPEC.match(str(spec).strip().lower())
    if m is None or (m.group(2) is not None and m.group(1) != "cuda"):
        raise ConfigError(f"unknown device {spec!r}", fix=f"use {DEVICES}")
    return m.group(0)


def resolve(spec: str | torch.device | None = "auto") -> torch.device:
    """The torch device for ``spec``: ``auto`` (or None) is CUDA when there is a GPU, else the CPU.

    ``auto`` and ``cuda`` without an index mean the current CUDA device: GPU 0, or under
    torch.distributed the rank's own GPU (``LOCAL_RANK``).

    Raises
    ------
    ConfigError
        For a malformed name, or a CUDA device that this machine does not have.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = check(spec or "auto")
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {spec!r} asked for, but torch sees no CUDA GPU here",
                          fix="pass --device cpu (or auto), or install a CUDA build of torch")
    index = int(spec.split(":")[1]) if ":" in spec else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise ConfigError(f"device {spec!r} asked for, but only {torch.cuda.device_count()} GPU(s) are visible",
                          fix=f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return torch.device("cuda", index)


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """``bf16``, ``fp16`` or ``fp32`` for ``device``: ``auto`` is bf16 on a GPU that has it, else fp32.

    The CPU always computes in fp32; asking it for bf16 or fp16 is a ConfigError.
    """
    precision = str(precision or "auto").strip().lower()
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}", fix=f"use {', '.join(PRECISIONS)}")
    if device.type != "cuda":
        if precision in _DTYPES:
            raise ConfigError(f"precision {precision} needs a CUDA device; the CPU computes in fp32",
                              fix="pass --precision fp32 (or auto), or --device cuda on a machine with a GPU")
        return "fp32"
    bf16_ok = torch.cuda.get_device_capability(device)[0] >= 8  # native bf16 from Ampere on (not emulated)
    if precision == "auto":
        return "bf16" if bf16_ok else "fp32"
    if precision == "bf16" and not bf16_ok:
        raise ConfigError(f"{torch.cuda.get_device_name(device)} has no bf16", fix="pass --precision fp16 or fp32")
    return precision


def autocast(device: torch.device, precision: str):
    """Mixed-precision context for the forward pass (nothing for fp32)."""
    if precision not in _DTYPES:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def of(model) -> torch.device:
    """The device of a torch module's first parameter or buffer; CPU for anything else (e.g. ONNX)."""
    if isinstance(model, torch.nn.Module):
        for t in model.parameters():
            return t.device
        for t in model.buffers():
            return t.device
    return torch.device("cpu")


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A numpy batch as a tensor on ``device``: shared memory on the CPU; on CUDA copied once
    into pinned memory and sent without blocking (the caller's next host work overlaps it)."""
    t = torch.from_numpy(np.ascontiguousarray(array))
    if device.type != "cuda":
        return t
    return t.pin_memory().to(device, non_blocking=True)


def to_cpu(obj):
    """``obj`` (tensors, possibly nested in dicts, lists and tuples) with every tensor on the CPU.

    CPU tensors are returned as they are; a dict keeps its type and ``_metadata`` (which
    ``load_state_dict`` reads).
    """
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        out = type(obj)((k, to_cpu(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):
            out._metadata = obj._metadata
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def describe(device: torch.device) -> str:
    """E.g. ``cpu`` or ``cuda:0 (NVIDIA H100 80GB HBM3)``, for logs and reports."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)
