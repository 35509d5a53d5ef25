"""Immutable models of the Ryzen AI NPUs: the numbers the tiling planner and the cost model read.

Every number below carries its source as a tag in a comment; the tags are listed here once. ``DERIVED`` marks
arithmetic on cited numbers, ``ASSUMPTION`` a figure no public source gives, with the reason it is reasonable.
``tests/backends/aie/test_device.py`` checks that every numeric field keeps such a comment.

Sources:
  [DEV]    Xilinx/mlir-aie docs/Devices.md: npu1 (Phoenix, Hawk Point) is 5 columns x 6 rows whose column 0 has no
           shim DMA, and is used through the npu1_1col..npu1_4col partitions; npu2 (Strix, Strix Halo, Krackan) is
           8 columns x 6 rows.
  [TM]     Xilinx/mlir-aie include/aie/Dialect/AIE/IR/AIETargetModel.h: AIE2TargetModel (shared by NPU1 and NPU2):
           getLocalMemorySize 0x10000, getMemTileSize 0x80000, getNumBDs 48 (mem tile) / 16, getNumLocks
           64 (mem tile) / 16; BaseNPU1TargetModel / BaseNPU2TargetModel: rows 6 = 1 shim + 1 mem tile + 4 core
           rows, getNumMemTileRows 1; VirtualizedNPU1TargetModel: at most 4 columns; NPU2TargetModel: columns 8.
  [TMC]    Xilinx/mlir-aie lib/Dialect/AIE/IR/AIETargetModel.cpp: AIE2TargetModel::getNum{Dest,Source}Switchbox
           Connections(WireBundle::DMA) = 2 on a core tile, 6 on a mem tile; getNum{Dest,Source}ShimMuxConnections
           (WireBundle::DMA) = 2 on a shim tile; BaseNPU2TargetModel::getTargetArch = AIE2p.
  [API2]   AIE API (Xilinx/aie_api, read in the mirror jgmelber/aie_api) include/aie_api/detail/aie2/:
           mmul_bf16_bf16.hpp (native 4x8x4 = mac_4x8_8x4), mmul_8_8.hpp (4x8x8 = mac_4x8_8x8; 8x8x8 is two of
           them), mmul_8_4.hpp (int8 x int4 4x16x8 = mac_4x16_16x8).
  [API2P]  Same repository, include/aie_api/detail/aie2p/: mmul_bf16_bf16.hpp (native 4x8x8 = mac_4x8_8x8_bf16;
           8x8x8 is two of them, or one mac_8x8_8x8T in block floating point when AIE_API_EMULATE_BFLOAT16_MMUL_
           WITH_BFP16), mmul_8_8.hpp (8x8x8 = mac_8x8_8x8), mmul_8_4.hpp (int8 x int4 4x16x16 = mac_4x16_16x16).
  [VEC]    Same repository, include/aie_api/vector.hpp includes detail/aie2/vector.hpp for __AIE_ARCH__ 20 and 21
           (AIE-ML and AIE2P), where native_vector_length = 512 / element bits.
  [MAP]    Xilinx/mlir-aie programming_examples/basic/matrix_multiplication/{single_core,whole_array}/*.py: the
           kernel's (r, s, t) per device (microkernel_mac_dim_map in recent versions): npu bf16 (4,8,4), i8
           (4,8,8); npu2 i8 (8,8,8), bf16 (4,8,8), or (8,8,8) when emulate_bf16_mmul_with_bfp16.
  [AM020]  AMD AM020 "Versal Adaptive SoC AIE-ML Architecture Manual", Summary table,
           https://docs.xilinx.com/r/en-US/am020-versal-aie-ml/Summary: per tile INT8 512 ops, INT4 1024 ops,
           bfloat16 256 ops per cycle (1 MAC = 2 ops); 64 KB data memory; 512 KB memory tiles.
  [UG1603] AMD UG1603 "AI Engine-ML Kernel and Graph Programming Guide": "AIE-ML / AIE-ML v2 Memory Tile",
           https://docs.amd.com/r/en-US/ug1603-ai-engine-ml-kernel-graph/AIE-ML/AIE-ML-v2-Memory-Tile (512 KB,
           six MM2S and six S2MM DMAs); "Architecture Overview", https://docs.amd.com/r/2025.1-English/ug1603-ai-
           engine-ml-kernel-graph/Architecture-Overview ("The AXI4-Stream crossbar is 32-bit for AIE-ML").
  [DRV1]   Linux drivers/accel/amdxdna/npu1_regs.c (PCI 0x1502 = Phoenix and Hawk Point): npu1_dpm_clk_table, top
           level {npuclk 847, hclk 1600} MHz; first_col = 1 (applications get columns 1..4).
  [DRV4]   Linux drivers/accel/amdxdna/npu4_regs.c (PCI 0x17f0 rev 0x10 = Strix): npu4_dpm_clk_table, top level
           {npuclk 1267, hclk 1800} MHz. Xilinx/mlir-aie issue #2017 (a maintainer answering "what is the NPU
           clock on Hawk Point / Strix Point") points to these two tables. The H clock is the array clock: the
           driver's aie2_smu.c (2025 versions) rates NPU4 at NPU4_DPM_TOPS = 4096 * columns * hclk_MHz / 1e6,
           i.e. 4 cores x 512 int8 MACs x 2 ops per column per H-clock cycle.
  [TOPS]   NPU TOPS as marketed: TechPowerUp, "AMD Ryzen 8040 Series Hawk Point Mobile Processors Announced with
           a Faster NPU", https://techpowerup.com/316436/amd-ryzen-8040-series-hawk-point-mobile-processors-
           announced-with-a-faster-npu (Phoenix 10 TOPS, Hawk Point 16 TOPS); AnandTech, "AMD Ryzen AI 300: XDNA 2
           NPU with Up To 50 TOPS", https://anandtech.com/show/21469/amd-details-ryzen-ai-300-series-for-mobile-
           strix-point-with-rdna-35-igpu-xdna-2-npu/2 (Strix up to 50 TOPS; XDNA 2 adds Block Floating Point 16).
  [MEM]    Host memory: Phoenix supports DDR5-5600 and LPDDR5x-7500 (Tom's Hardware FR, "Les Ryzen 7040 Phoenix
           Point conservent le PCIe 4.0", https://www.tomshardware.fr/les-ryzen-7040-pheonix-point-conservent-le-
           pcie-4-0/); Strix Point uses LPDDR5X-7500 and DDR5-5600 with the same controller as Phoenix and Hawk
           Point (PurePC, https://www.purepc.pl/amd-krackan-point-procesory-z-rdzeniami-zen-5-i-ukladami-rdna-3-5-
           otrzymaja-usprawniony-kontroler-ram-lpddr5x). These pages give the speed grade, not the bus width: the
           128-bit bus (two 64-bit channels) is the project's stated figure (DESIGN.md), an ASSUMPTION here.
  [AIEX]   Xilinx/mlir-aie include/aie/Dialect/AIEX/IR/AIEX.td, AIE_NpuAddressPatchOp: the host address of a runtime-
           sequence argument plus ``arg_plus`` bytes, an I32Attr, is patched into each shim buffer descriptor
           (lib/Dialect/AIEX/Transforms/AIEDmaToNpu.cpp adds every transfer's offset to it): a transfer can
           start at most 2**31 - 1 bytes into one DDR buffer.
  [LAT]    Xilinx/mlir-aie issue #2381 "Lower bound on kernel execution time" (also Xilinx/XRT #9018): an empty
           mlir-aie kernel launched with XRT kernel() + wait() takes about 45 us.
  [RECONF] nod-ai/iree-amd-aie issue #1187 "Improve the whole array reconfiguration time" (2025-04-01, measured on
           a Strix machine): a whole-array reconfiguration by control packets, with its submission, 116 us per run
           over 1000 runs, 106 us over 5000, 79-82 us for a single control packet. Another mechanism than a
           switch between xclbins; a reference point, not the figure used.
  [XRTRECONF] Xilinx/XRT pull request #8935 (2025-05-06; the test from #8308): xrt-smi validate's
           aie-reconfig-overhead on a Strix machine under Linux, "Array reconfiguration overhead: 3.9 ms" (the run
           time of a sequence that reconfigures the array through the shim DMA minus a no-op sequence's, over 1000
           runs). The same kind of switch as a load_pdi inside one instruction stream.
  [XCLBIN] nod-ai/iree-amd-aie issue #380 "Implement multi-kernel XCLBIN" (2024-06-28, device not named): loading
           an xclbin and taking its kernel took 19.8-21.7 ms. A one-time cost when a runtime opens its contexts,
           not a per-switch figure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from aielower.errors import CompileError

KiB = 1024


@dataclass(frozen=True)
class MMulShape:
    """One native ``aie::mmul<M, K, N, TypeA, TypeB>``: A is MxK, B is KxN, C is MxN."""

    m: int
    k: int
    n: int

    @property
    def macs(self) -> int:
        """Multiply-accumulates per call; one call issues per cycle in a pipelined loop."""
        return self.m * self.k * self.n

    def __str__(self) -> str:
        return f"{self.m}x{self.k}x{self.n}"


@dataclass(frozen=True)
class Device:
    """One NPU as one application sees it: ``columns`` is what one design may use; memories, DMA channels,
    buffer descriptors and locks are counted per tile, MACs per core.

    dtype keys: ``bf16`` (bf16 x bf16), ``i8`` (int8 x int8), ``i8xi4`` (int8 activations x int4 weights) and,
    on AIE2P only, ``bfp16`` (block floating point). There is no bf16 x int4 mmul in the AIE API: a w4abf16
    kernel unpacks its int4 weights to bf16 and runs at the ``bf16`` rate.
    """

    name: str
    arch: str
    product: str
    columns: int  # compute columns usable by one application
    physical_columns: int  # columns in the silicon (npu1 has one without a shim DMA)
    core_rows: int
    mem_tile_rows: int
    core_data_memory: int  # bytes per core tile
    mem_tile_memory: int  # bytes per memory tile
    core_dma_in: int  # S2MM channels per core tile
    core_dma_out: int  # MM2S channels per core tile
    mem_tile_dma_in: int
    mem_tile_dma_out: int
    shim_dma_in: int  # S2MM: array -> DDR
    shim_dma_out: int  # MM2S: DDR -> array
    dma_buffer_descriptors: int  # per core tile
    mem_tile_buffer_descriptors: int
    shim_buffer_descriptors: int
    core_locks: int
    mem_tile_locks: int
    shim_locks: int
    stream_bytes_per_cycle: int  # one DMA channel's stream, per array clock cycle
    vector_bits: int  # native vector register width
    mmul: Mapping[str, MMulShape]  # native aie::mmul shape by dtype
    macs_per_cycle: Mapping[str, int]  # per core, by dtype
    clock_hz: float  # AIE array clock (the driver's H clock) at the top DPM level
    marketed_int8_tops: float  # vendor NPU figure, for cross-checking clock x MACs x cores
    ddr_peak_bytes_per_s: float
    ddr_practical_bytes_per_s: float  # planning figure for sustained NPU reads from DDR
    launch_overhead_s: float  # host-side cost of one kernel launch (XRT run + wait), compute excluded
    reconfiguration_s: float  # switching the array to another design's configuration (another xclbin's context)
    reconfiguration_bounds_s: tuple[float, float]  # the lowest and highest measured figures for such a switch
    max_buffer_bytes: int  # the largest offset a transfer can have into one DDR buffer

    def __reduce__(self):  # pickled with plain dicts (a read-only view does not pickle); __post_init__ wraps them
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["mmul"], values["macs_per_cycle"] = dict(self.mmul), dict(self.macs_per_cycle)
        return (_device, (values,))

    def __post_init__(self) -> None:
        # Read-only views, so a frozen Device cannot be changed through its dicts either.
        object.__setattr__(self, "mmul", MappingProxyType(dict(self.mmul)))
        object.__setattr__(self, "macs_per_cycle", MappingProxyType(dict(self.macs_per_cycle)))
        if set(self.mmul) != set(self.macs_per_cycle):
            raise ValueError(f"{self.name}: mmul and macs_per_cycle must have the same dtypes")

    def __hash__(self) -> int:
        return hash(self.name)

    @property
    def cores(self) -> int:
        return self.columns * self.core_rows

    @property
    def dtypes(self) -> tuple[str, ...]:
        return tuple(self.mmul)

    def peak_macs_per_s(self, dtype: str) -> float:
        """MACs per second of all usable cores, each issuing one native mmul per cycle."""
        if dtype not in self.macs_per_cycle:
            choices = ", ".join(self.dtypes)
            raise CompileError(f"{self.name} has no native mmul for dtype {dtype!r}: choose one of {choices}")
        return self.cores * self.macs_per_cycle[dtype] * self.clock_hz

    @property
    def shim_read_bytes_per_s(self) -> float:
        """Ceiling on DDR -> array traffic set by the shim MM2S channels: one stream word per cycle each."""
        return self.columns * self.shim_dma_out * self.stream_bytes_per_cycle * self.clock_hz


NPU1 = Device(
    name="npu1",
    arch="AIE-ML",  # [TM] AIE2TargetModel; AIE-ML is AMD's name for AIE2 [AM020]
    product="Phoenix / Hawk Point",  # [DEV] "Ryzen Phoenix (e.g. 7940HS) and HawkPoint (e.g., 8040HS)"
    columns=4,  # [DEV] [TM] npu1_4col is the largest partition; [DRV1] first_col = 1
    physical_columns=5,  # [DEV] 5 columns, column 0 without shim DMA
    core_rows=4,  # [TM] rows() = 6 = 1 shim + 1 mem tile + 4 core rows
    mem_tile_rows=1,  # [TM] getNumMemTileRows() = 1
    core_data_memory=64 * KiB,  # [TM] getLocalMemorySize() = 0x10000; [AM020] 64 KB
    mem_tile_memory=512 * KiB,  # [TM] getMemTileSize() = 0x80000; [AM020] [UG1603] 512 KB
    core_dma_in=2,  # [TMC] core tile DMA dest connections = 2
    core_dma_out=2,  # [TMC] core tile DMA source connections = 2
    mem_tile_dma_in=6,  # [TMC] mem tile DMA = 6; [UG1603] six S2MM
    mem_tile_dma_out=6,  # [TMC] mem tile DMA = 6; [UG1603] six MM2S
    shim_dma_in=2,  # [TMC] getNumDestShimMuxConnections(DMA) = 2
    shim_dma_out=2,  # [TMC] getNumSourceShimMuxConnections(DMA) = 2
    dma_buffer_descriptors=16,  # [TM] getNumBDs = 16 off the mem tile
    mem_tile_buffer_descriptors=48,  # [TM] getNumBDs(mem tile) = 48 (even channels BDs 0-23, odd 24-47)
    shim_buffer_descriptors=16,  # [TM] getNumBDs = 16 off the mem tile
    core_locks=16,  # [TM] getNumLocks = 16 off the mem tile
    mem_tile_locks=64,  # [TM] getNumLocks(mem tile) = 64
    shim_locks=16,  # [TM] getNumLocks = 16 off the mem tile
    stream_bytes_per_cycle=4,  # [UG1603] 32-bit AXI4-Stream for AIE-ML
    vector_bits=512,  # [VEC] native_vector_length = 512 / bits for __AIE_ARCH__ 20
    mmul={
        "bf16": MMulShape(4, 8, 4),  # [API2] mac_4x8_8x4; [MAP] npu bf16 (4,8,4)
        "i8": MMulShape(4, 8, 8),  # [API2] mac_4x8_8x8; [MAP] npu i8 (4,8,8). 8x8x8 exists but is two 4x8x8
        "i8xi4": MMulShape(4, 16, 8),  # [API2] mac_4x16_16x8
    },
    macs_per_cycle={
        "bf16": 128,  # [AM020] 256 bfloat16 ops/tile/cycle; = 4*8*4 [API2]
        "i8": 256,  # [AM020] 512 INT8 ops/tile/cycle; = 4*8*8 [API2]
        "i8xi4": 512,  # [AM020] 1024 INT4 ops/tile/cycle; = 4*16*8 [API2]
    },
    clock_hz=1.6e9,  # [DRV1] top DPM H clock 1600 MHz; Phoenix is marketed at 10 TOPS, i.e. about 1.0 GHz [TOPS]
    marketed_int8_tops=16e12,  # [TOPS] Hawk Point 16 TOPS (20 cores x 256 x 2 x 1.6 GHz = 16.4 TOPS)
    ddr_peak_bytes_per_s=120e9,  # [MEM] LPDDR5x-7500 x 128 bit: DERIVED 7500e6 * 16 B (DDR5-5600: 89.6e9)
    # ASSUMPTION: no public figure for what the NPU sustains from DDR. Plan with half the lower of the two ceilings,
    # DDR peak and the shim MM2S streams (DERIVED 4 columns x 2 x 4 B x 1.6 GHz = 51.2e9): 25.6e9. Replace it
    # with a measured memcpy rate (mlir-aie programming_examples/basic/memcpy) when one is taken.
    ddr_practical_bytes_per_s=25.6e9,  # ASSUMPTION (above)
    # [LAT] does not name its device; ASSUMPTION: it holds for both NPUs, whose launch path (XRT, amdxdna) is shared.
    launch_overhead_s=45e-6,  # [LAT] empty kernel through XRT run + wait
    # ASSUMPTION: no public figure for a hardware-context switch between xclbins on the NPU. It reloads the array's
    # configuration (a PDI: 16 KiB program memory per core, switch and DMA setup) before the run, which mlir-aie's
    # own runtime-sequence reconfiguration also does with load_pdi (a device reset); 1 ms is the order of moving
    # and applying that much configuration through the command processor, and far above the 45 us launch. Measured
    # for other mechanisms: ~0.1 ms per whole-array reconfiguration by control packets on Strix [RECONF], 3.9 ms
    # through the shim DMA on Strix [XRTRECONF], ~20 ms to load an xclbin [XCLBIN]; 1 ms lies between the first two.
    reconfiguration_s=1e-3,  # ASSUMPTION (above)
    reconfiguration_bounds_s=(106e-6, 3.9e-3),  # ASSUMPTION: as measured on Strix (npu2) [RECONF] [XRTRECONF]
    max_buffer_bytes=2**31 - 1,  # [AIEX] arg_plus is a signed 32-bit byte offset
)

NPU2 = Device(
    name="npu2",
    arch="AIE2P",  # [TMC] BaseNPU2TargetModel::getTargetArch() = AIE2p
    product="Strix Point",  # [DEV] also Strix Halo and Krackan Point; [DRV4] "NPU Strix"
    columns=8,  # [TM] NPU2TargetModel::columns() = 8; [DEV] 8 columns
    physical_columns=8,  # [DEV] 8 columns, every one with a shim DMA
    core_rows=4,  # [TM] rows() = 6 = 1 shim + 1 mem tile + 4 core rows
    mem_tile_rows=1,  # [TM] getNumMemTileRows() = 1
    core_data_memory=64 * KiB,  # [TM] AIE2TargetModel::getLocalMemorySize() = 0x10000 (not overridden for NPU2)
    mem_tile_memory=512 * KiB,  # [TM] AIE2TargetModel::getMemTileSize() = 0x80000 (not overridden for NPU2)
    core_dma_in=2,  # [TMC] core tile DMA dest connections = 2
    core_dma_out=2,  # [TMC] core tile DMA source connections = 2
    mem_tile_dma_in=6,  # [TMC] mem tile DMA = 6
    mem_tile_dma_out=6,  # [TMC] mem tile DMA = 6
    shim_dma_in=2,  # [TMC] getNumDestShimMuxConnections(DMA) = 2
    shim_dma_out=2,  # [TMC] getNumSourceShimMuxConnections(DMA) = 2
    dma_buffer_descriptors=16,  # [TM] getNumBDs = 16 off the mem tile
    mem_tile_buffer_descriptors=48,  # [TM] getNumBDs(mem tile) = 48
    shim_buffer_descriptors=16,  # [TM] getNumBDs = 16 off the mem tile
    core_locks=16,  # [TM] getNumLocks = 16 off the mem tile
    mem_tile_locks=64,  # [TM] getNumLocks(mem tile) = 64
    shim_locks=16,  # [TM] getNumLocks = 16 off the mem tile
    # ASSUMPTION: no public AIE2P architecture manual gives the stream width; we keep AIE-ML's 32 bits [UG1603].
    # AIE-ML v2 (AM027) doubled it to 64, so this may be conservative; it only matters through the shim ceiling.
    stream_bytes_per_cycle=4,  # ASSUMPTION (above)
    vector_bits=512,  # [VEC] __AIE_ARCH__ 21 (AIE2P) uses the AIE2 vector types: 512 / bits lanes
    mmul={
        "bf16": MMulShape(4, 8, 8),  # [API2P] mac_4x8_8x8_bf16; [MAP] npu2 bf16 (4,8,8) without bfp16 emulation
        "i8": MMulShape(8, 8, 8),  # [API2P] mac_8x8_8x8; [MAP] npu2 i8 (8,8,8)
        "i8xi4": MMulShape(4, 16, 16),  # [API2P] mac_4x16_16x16
        "bfp16": MMulShape(8, 8, 8),  # [API2P] mac_8x8_8x8T; [MAP] npu2 bf16 (8,8,8) with bfp16 emulation
    },
    macs_per_cycle={
        "bf16": 256,  # DERIVED 4*8*8 [API2P], one vector MAC per cycle
        "i8": 512,  # DERIVED 8*8*8 [API2P]; [DRV4] NPU4_DPM_TOPS = 4096 ops per column-cycle = 4 cores x 512 x 2
        "i8xi4": 1024,  # DERIVED 4*16*16 [API2P]
        "bfp16": 512,  # DERIVED 8*8*8 [API2P]: one mac_8x8_8x8T, the same width as int8
    },
    clock_hz=1.8e9,  # [DRV4] top DPM H clock 1800 MHz (50 marketed TOPS imply about 1.5 GHz [TOPS])
    marketed_int8_tops=50e12,  # [TOPS] Strix 50 TOPS (32 cores x 512 x 2 x 1.8 GHz = 59 TOPS)
    ddr_peak_bytes_per_s=120e9,  # [MEM] LPDDR5X-7500 x 128 bit: DERIVED 7500e6 * 16 B
    # ASSUMPTION, as for npu1: half the lower of DDR peak (120e9) and the shim MM2S ceiling (DERIVED 8 columns x 2 x
    # 4 B x 1.8 GHz = 115.2e9): 57.6e9.
    ddr_practical_bytes_per_s=57.6e9,  # ASSUMPTION (above)
    launch_overhead_s=45e-6,  # [LAT] ASSUMPTION: as for npu1
    reconfiguration_s=1e-3,  # ASSUMPTION: as for npu1
    reconfiguration_bounds_s=(106e-6, 3.9e-3),  # [RECONF] 106 us (5000 runs), [XRTRECONF] 3.9 ms, both on Strix
    max_buffer_bytes=2**31 - 1,  # [AIEX] arg_plus is a signed 32-bit byte offset
)

DEVICES: Mapping[str, Device] = MappingProxyType({d.name: d for d in (NPU1, NPU2)})


def _device(values: dict) -> Device:
    return Device(**values)


def get_device(name: str) -> Device:
    """The device model called ``name`` (``npu1`` or ``npu2``)."""
    try:
        return DEVICES[name]
    except KeyError:
        raise CompileError(f"unknown AIE device {name!r}: choose one of {', '.join(DEVICES)}") from None
