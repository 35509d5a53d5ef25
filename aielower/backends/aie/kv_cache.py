"""A decoder layer's KV cache kept in DDR the way the attention designs read it.

The attention designs read keys and values as one tensor per batch row, blocked by KV tile:
``[kv_heads][rows / tkv][K|V][tkv][d_pad]`` bf16 (:func:`aielower.backends.aie.host_arrays.kv_blocks`). A decode
design reads the cache tiles of the rows before the step; the step's own keys and values come with its query
records, and the host appends them to the cache after the launch. A host runtime allocates the tensor once at its
full size (the compiled ``max_seq_len``) and copies to the device only the element ranges the host changed since the
last launch that read it (:meth:`BlockedKvCache.resident`). A reader may read up to ``tail_bytes`` past a row's
last KV row (decode attention on the GEMV configuration reads weight tiles larger than the KV rows they carry,
:func:`~aielower.backends.aie.families.gemv_attention.kv_tail_bytes`): the row's DDR tensor has them after it, zero.
"""

from __future__ import annotations

import numpy as np

from aielower.backends.aie.launcher import Resident
from aielower.errors import AielowerError


class BlockedKvCache:
    """The KV cache of one decoder layer (``name``) for ``batch`` rows of up to ``rows`` positions, ``kv_heads``
    heads of ``head_dim``; ``shape`` is the IR's ``[batch, kv_heads, rows, head_dim]``.

    The layout's padded sizes (KV heads, padded head dim, KV tile) are the attention plan's; they are fixed by the
    first :meth:`write` or :meth:`resident` (the storage is allocated then, once) and checked on every later one. The
    same object stands for the layer's key cache and its value cache: in DDR they are one tensor.
    """

    device_resident = True  # the interpreter passes it to the attention op as it is (it has shape and ndim)

    def __init__(self, name: str, batch: int, kv_heads: int, rows: int, head_dim: int, tail_bytes: int = 0):
        if min(batch, kv_heads, rows, head_dim) < 1 or tail_bytes < 0:
            raise AielowerError(f"a KV cache needs positive sizes, got batch {batch}, kv_heads {kv_heads}, "
                                f"rows {rows}, head_dim {head_dim} (and a tail of {tail_bytes} bytes)")
        self.name, self.batch, self.rows = name, batch, rows
        self.tail = -(-tail_bytes // 2)  # bf16 elements after a row's KV rows (see the module docs)
        self.shape = (batch, kv_heads, rows, head_dim)  # what the IR's k_cache / v_cache arguments are
        self.ndim = 4
        self.data: np.ndarray | None = None  # [batch, elements] bf16 bits
        self.layout: tuple[int, int, int] | None = None  # (kv_heads, d_pad, tkv)
        self._written: set[int] = set()  # batch rows handed to a launch at least once
        self._changed: dict[int, list[tuple[int, int]]] = {}  # per batch row, ranges changed since its last launch

    def _view(self, row: int, kv_heads: int, d_pad: int, tkv: int) -> np.ndarray:
        """Batch row ``row``'s cache tiles [kv_heads][blocks][K|V][tkv][d_pad]; the storage is allocated by the first
        call, for the layout it gives."""
        if not 0 <= row < self.batch:
            raise AielowerError(f"KV cache {self.name} has batch rows 0..{self.batch - 1}, not {row}")
        layout = (kv_heads, d_pad, tkv)
        if self.data is None:
            if self.rows % tkv:
                raise AielowerError(f"KV cache {self.name}: {self.rows} positions are not a whole number of KV tiles "
                                    f"of {tkv}")
            self.data = np.zeros((self.batch, kv_heads * self.rows * 2 * d_pad + self.tail), np.uint16)
            self.layout = layout
        elif layout != self.layout:
            raise AielowerError(f"KV cache {self.name} is laid out for (kv_heads, d_pad, tkv) = {self.layout}, "
                                f"not {layout}")
        return self.data[row, : self.data.shape[1] - self.tail].reshape(kv_heads, self.rows // tkv, 2, tkv, d_pad)

    def write(self, row: int, position: int, keys: np.ndarray, values: np.ndarray, *, kv_heads: int, d_pad: int,
              tkv: int) -> None:
        """Write ``keys`` and ``values`` (bf16 bits [heads, s, d] with heads <= kv_heads, d <= d_pad) of batch row
        ``row`` at positions ``position .. position + s - 1``."""
        if values.shape != keys.shape:
            raise AielowerError(f"KV cache {self.name}: keys {keys.shape} and values {values.shape} differ")
        heads, s, d = keys.shape
        if position < 0 or position + s > self.rows:
            raise AielowerError(f"positions {position}..{position + s - 1} do not fit the KV cache of {self.rows}")
        view = self._view(row, kv_heads, d_pad, tkv)
        blocks = view.shape[1]
        changed = self._changed.setdefault(row, [])
        p = position
        while p < position + s:  # one run of rows per KV tile the step touches
            block, first = divmod(p, tkv)
            n = min(tkv - first, position + s - p)
            view[:heads, block, 0, first : first + n, :d] = keys[:, p - position : p - position + n]
            view[:heads, block, 1, first : first + n, :d] = values[:, p - position : p - position + n]
            changed += [((((h * blocks + block) * 2 + part) * tkv + first) * d_pad, n * d_pad)
                        for h in range(heads) for part in (0, 1)]
            p += n

    def pending(self, row: int) -> tuple[tuple[int, int], ...]:
        """The ``(first element, count)`` ranges of batch row ``row`` written since the last launch that read it
        (after a decode step: the step's rows appended to the cache)."""
        return tuple(self._changed.get(row, ()))

    def resident(self, row: int, *, kv_heads: int, d_pad: int, tkv: int) -> Resident:
        """Batch row ``row``'s DDR tensor for a launch, as a :class:`~aielower.backends.aie.launcher.Resident`
        whose ``changed`` ranges are those written since the last launch that read it (the whole row the first
        time: a runtime reusing the DDR buffer of an earlier cache of this name must not keep that cache's rows).
        A decode step's first launch may come before anything was written (its rows come with the queries)."""
        self._view(row, kv_heads, d_pad, tkv)
        first = row not in self._written
        self._written.add(row)
        changed = self._changed.pop(row, [])
        return Resident(f"kv/{self.name}/{row}", self.data[row], None if first else tuple(changed))

    def __repr__(self) -> str:
        return f"<BlockedKvCache {self.name}: batch {self.batch}, {self.rows} positions>"


def kv_tail_bytes(fn) -> int:
    """The bytes the launches of function ``fn`` read past a cache row's last KV row (the most any reads:
    :meth:`~aielower.backends.aie.families.base.KernelFamily.kv_tail_bytes`)."""
    from aielower.backends.aie.families import KERNEL_FAMILIES
    from aielower.backends.aie.plan import plan_of

    return max((KERNEL_FAMILIES.for_kernel(x.kernel).kv_tail_bytes(x) for op in fn.ops
                if (plan := plan_of(op)) is not None for x in plan.launches), default=0)


__all__ = ["BlockedKvCache", "kv_tail_bytes"]
