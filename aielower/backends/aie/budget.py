"""The budgets every launch must hold on its device: memory per core and per memory tile, DMA channels per tile.

Channel counting follows the data-movement topology every design uses (see :class:`~aielower.backends.aie.plan.
Stream`): per column, each input stream takes one shim MM2S channel into the memory tile, which feeds the core rows
with one MM2S channel per row (``split``) or one for all rows (``broadcast``); each output stream comes from every
core row into its own memory-tile S2MM channel and leaves through one shim S2MM channel.
"""

from __future__ import annotations

from dataclasses import dataclass

from aielower.backends.aie.device import Device
from aielower.backends.aie.plan import LaunchPlan


@dataclass(frozen=True)
class Usage:
    """What one launch takes from the tiles of one column (the heaviest core / memory tile)."""

    l1: int
    l2: int
    core_in: int
    core_out: int
    mem_in: int
    mem_out: int
    shim_in: int  # MM2S: DDR -> array
    shim_out: int  # S2MM: array -> DDR

    @classmethod
    def of(cls, launch: LaunchPlan) -> "Usage":
        ins = [s for s in launch.streams if s.direction == "in"]
        outs = [s for s in launch.streams if s.direction == "out"]
        rows = launch.rows
        return cls(
            l1=launch.l1_bytes(),
            l2=launch.l2_bytes(),
            core_in=len(ins),
            core_out=len(outs),
            mem_in=len(ins) + rows * len(outs),
            mem_out=sum(rows if s.to_cores == "split" else 1 for s in ins) + len(outs),
            shim_in=len(ins),
            shim_out=len(outs),
        )


def violations(launch: LaunchPlan, device: Device) -> list[str]:
    """Every budget ``launch`` breaks on ``device``, as sentences; empty when it fits."""
    u = Usage.of(launch)
    out = []

    def over(what: str, used: int, limit: int, detail: str = "") -> None:
        if used > limit:
            out.append(f"{what} {used:,} > {limit:,}{detail}")

    l1 = ", ".join(f"{b.name} {b.bytes:,}x{b.depth}" for b in launch.buffers if b.tier == "L1")
    l2 = ", ".join(f"{b.name} {b.bytes:,}x{b.depth}" for b in launch.buffers if b.tier == "L2")
    over("L1 bytes per core", u.l1, device.core_data_memory, f" ({l1})")
    over("memory-tile bytes", u.l2, device.mem_tile_memory, f" ({l2})")
    over("core DMA input channels", u.core_in, device.core_dma_in)
    over("core DMA output channels", u.core_out, device.core_dma_out)
    over("memory-tile DMA input channels", u.mem_in, device.mem_tile_dma_in)
    over("memory-tile DMA output channels", u.mem_out, device.mem_tile_dma_out)
    over("shim DMA channels DDR -> array", u.shim_in, device.shim_dma_out)
    over("shim DMA channels array -> DDR", u.shim_out, device.shim_dma_in)
    if launch.columns > device.columns or launch.rows > device.core_rows:
        out.append(f"cores {launch.columns}x{launch.rows} > the device's {device.columns}x{device.core_rows}")
    return out


__all__ = ["Usage", "violations"]
