"""Where the model runs: the device, and whether bf16 autocast is native there."""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path

import torch


def resolve_device(device: str) -> str:
    """ "auto" picks cuda when available; asking for cuda without it is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but CUDA is not available on this machine")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}: use auto, cpu or cuda")
    return device


def bf16_supported(device: str) -> bool:
    """Whether bf16 autocast is fast on `device`: a CUDA GPU with bf16, or a CPU with AVX-512 BF16 or AMX.

    Without native support (an AVX2-only CPU, say) PyTorch emulates bf16 matmuls about 100x slower than fp32.
    """
    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def device_name(device: str) -> str:
    """What `device` is, for the record: the GPU's name, or the CPU's model name with its native bf16 units
    ("AMD EPYC (avx512_bf16)"): the development machine's CPU changes between sessions, and its speed with it."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name()
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    fields: dict[str, str] = {}  # the first processor's fields
    for line in info.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    flags = fields.get("flags", "").split()
    units = [unit for unit in ("amx_bf16", "avx512_bf16") if unit in flags]
    return (
        f"{fields.get('model name', platform.machine())} ({', '.join(units) or 'no native bf16'})"
    )


def autocast(device: str, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on `device`, or nothing."""
    return torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
