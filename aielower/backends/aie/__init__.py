"""AIE backend for the Ryzen AI NPU. So far: device models (device.py). The tiling planner,
codegen, host emulator and cost model follow (issue: AIE backend)."""
