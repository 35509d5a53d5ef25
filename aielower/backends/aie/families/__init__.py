"""Kernel families: the unit of the AIE backend (one module per family; the interface in :mod:`.base`).

- :mod:`.linear_w4`: 4-bit group-quantized linears (``quant.linear`` and linear-like fused ops), GEMV and GEMM;
- :mod:`.rms_norm`: ``fused.rms_norm`` and ``fused.add_rms_norm``;
- :mod:`.silu_mul`: ``fused.silu_mul``;
- :mod:`.attention`: ``fused.attention``, rotary embedding of q and k then flash attention.

Each module owns its ops' planning, its kernels (definitions and ``*_spec`` constructors), its launches' schedule,
its cost (kernel calls per core) and the host side of its launches. :data:`KERNEL_FAMILIES` is the registry the
drivers (tiling, binding, design generator, cost model, host program) look families up in; a :class:`FamilyRegistry`
is immutable once built.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from aielower.backends.aie.families.attention import Attention
from aielower.backends.aie.families.base import KernelFamily, unknown
from aielower.backends.aie.families.linear_w4 import LinearW4
from aielower.backends.aie.families.rms_norm import RmsNorm
from aielower.backends.aie.families.silu_mul import SiluMul
from aielower.errors import CompileError


class FamilyRegistry:
    """Kernel families by name, by plan kind and by kernel; each kind and kernel belongs to one family."""

    def __init__(self, families: Iterable[KernelFamily]):
        self._families = tuple(families)
        by_kind: dict[str, KernelFamily] = {}
        by_kernel: dict[str, KernelFamily] = {}
        for family in self._families:
            for table, keys, what in ((by_kind, family.kinds, "kind"), (by_kernel, family.kernels, "kernel")):
                for key in keys:
                    if key in table:
                        raise CompileError(f"kernel families {table[key].name} and {family.name} both claim the "
                                           f"{what} {key!r}")
                    table[key] = family
        self._by_kind, self._by_kernel = by_kind, by_kernel
        self.kinds: tuple[str, ...] = tuple(by_kind)
        self.kernels: tuple[str, ...] = tuple(by_kernel)

    def __iter__(self) -> Iterator[KernelFamily]:
        return iter(self._families)

    def for_kind(self, kind: str) -> KernelFamily:
        """The family that runs ops planned as ``kind``."""
        family = self._by_kind.get(kind)
        if family is None:
            raise unknown("runs plans of kind", kind, self._by_kind)
        return family

    def kernel_definition(self, kernel: str):
        """The :class:`~aielower.backends.aie.kernels.KernelDef` of ``kernel``, or None if no family runs it."""
        family = self._by_kernel.get(kernel)
        return None if family is None else family.kernel_defs[kernel]

    def for_kernel(self, kernel: str) -> KernelFamily:
        """The family whose launches run ``kernel``."""
        family = self._by_kernel.get(kernel)
        if family is None:
            raise unknown("runs the kernel", kernel, self._by_kernel)
        return family

    def plan_key(self, op, buckets: tuple[int, ...], linear_buckets: tuple[int, ...]):
        """The first family's :meth:`~KernelFamily.plan_key` for ``op`` that is not None (None: a host op)."""
        for family in self._families:
            found = family.plan_key(op, buckets, linear_buckets)
            if found is not None:
                return found
        return None


KERNEL_FAMILIES = FamilyRegistry((LinearW4(), RmsNorm(), SiluMul(), Attention()))

__all__ = ["KERNEL_FAMILIES", "FamilyRegistry", "KernelFamily"]
