"""Weight quantization math (NumPy only): bf16 rounding, bit packing, group-wise RTN.

    from aielower.quant import quantize_rtn
    qw = quantize_rtn(w, bits=4, group=128)   # w: float32 [out, in]
    w_hat = qw.dequantize()                   # float32 [out, in]

See :mod:`aielower.quant.groupwise` for the formula and the error bound.
"""

from aielower.quant.bf16 import bf16_bits, from_bf16_bits, round_to_bf16
from aielower.quant.groupwise import (
    QuantizedWeight,
    quantize_rtn,
    quantize_with_scales,
    rtn_dequantized,
    rtn_scales_zeros,
)
from aielower.quant.packing import PACK_BITS, check_bits, pack, unpack

__all__ = [
    "PACK_BITS",
    "QuantizedWeight",
    "bf16_bits",
    "check_bits",
    "from_bf16_bits",
    "pack",
    "quantize_rtn",
    "quantize_with_scales",
    "round_to_bf16",
    "rtn_dequantized",
    "rtn_scales_zeros",
    "unpack",
]
