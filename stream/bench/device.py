"""What a benchmark reads of its device: memory in use and at peak, weights' size, the machine.

CUDA figures are the allocator's; CPU figures are the process's resident set (Linux
``/proc``). Torch is imported inside functions, so importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import gc
import os
import platform
from pathlib import Path
from typing import Any


def weights_mib(module: Any) -> float:
    """Bytes of a model's weights and buffers (int8 packed weights included), in MiB."""
    import torch

    total = 0
    for value in module.state_dict().values():
        for tensor in value if isinstance(value, tuple) else (value,):
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * tensor.element_size()
    return total / 2**20


def sync(device: str) -> None:
    """Wait for the device's queued work (a no-op on CPU)."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def memory_mib(device: str) -> float:
    """Memory in use now: allocated on the GPU (CUDA), or the process's resident set (CPU)."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
        return torch.cuda.memory_allocated() / 2**20
    return _proc_status_mib("VmRSS") or 0.0


def reset_peak(device: str) -> None:
    """Start a new peak for :func:`peak_mib`."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return
    with contextlib.suppress(OSError):
        # Linux: writing 5 resets the process's peak resident set size (VmHWM).
        Path("/proc/self/clear_refs").write_text("5")


def peak_mib(device: str) -> float | None:
    """Peak memory since :func:`reset_peak`: GPU allocations (CUDA) or resident set (CPU)."""
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return _proc_status_mib("VmHWM")


def _proc_status_mib(field_name: str) -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1]) / 1024
    return None


def free_memory(device: str) -> None:
    """Collect garbage and, on CUDA, hand cached blocks back: memory figures start clean."""
    gc.collect()
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


def machine(device: str) -> str:
    """The GPU's name on CUDA, else the CPU count and architecture."""
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    cpus = os.cpu_count() or 0
    return f"{cpus} CPU {platform.machine()} ({platform.processor() or platform.system()})"
