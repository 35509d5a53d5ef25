"""Code generators. ``ref``: NumPy. (``aie``: the Ryzen AI NPU, not yet implemented.)"""
