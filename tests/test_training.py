"""The shared training loop's choices that depend on the machine."""

from pathlib import Path

from dalle_core.device import bf16_supported
from dalle_core.training import TrainArgs


def test_bf16_only_where_the_cpu_computes_it():
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if cpuinfo.exists() else ""
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    assert bf16_supported("cpu") is native
    assert (
        TrainArgs(out="run", device="cpu").bf16 is native
    )  # None resolves to the hardware's answer
    assert TrainArgs(out="run", device="cpu", bf16=True).bf16 is True  # an explicit choice stays
