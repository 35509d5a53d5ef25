"""AIE backend for the Ryzen AI NPU (``compile(model, target="aie", out_dir=...)``).

Modules, in the order a compile uses them:

- ``device``    the NPUs (npu1: Phoenix / Hawk Point, npu2: Strix), every number with its source
- ``plan``      the plan of one op (launches, buffers, streams, access patterns) as stored in ``aie.plan``
- ``planner``   tile-size and core-grid search per op kind; ``budget`` the limits every launch must hold
              (the pass itself is ``aielower.backends.aie.tiling``)
- ``schedule``  per core, the kernel calls of a launch and the DMA access pattern of every tile
- ``kernels``   kernel specs, AIE API C++ from templates, host builds with g++; ``binding`` maps launches to specs
- ``weights``   4-bit weights pre-tiled in the order the DMA reads them
- ``dma``       access patterns: canonical form, compaction into shim transfers, buffer-descriptor limits
- ``designs``   MLIR-AIE designs as data: built from plans, rendered to text, parsed back, checked against the
              rules mlir-aie's verifiers miss, simulated with mlir-aie's data-movement semantics
- ``buildfile`` the Makefile for Peano and aiecc; ``toolchain`` runs the real ``aie-opt`` on designs (check-aie)
- ``cost``, ``report``  the modelled latency and the report in the model card's format
- ``artifact``  writes the output directory; ``compiled`` is what compile returns; ``emulator`` runs it on the
              host from the design files
"""
