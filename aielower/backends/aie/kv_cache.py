"""A decoder layer's KV cache kept in DDR the way the attention designs read it.

The attention designs read keys and values as one tensor per batch row, blocked by KV tile:
``[kv_heads][rows / tkv][K|V][tkv][d_pad]`` bf16, then one step tile per head, ``[kv_heads][K|V][tkv][d_pad]``
(:func:`aielower.backends.aie.host_arrays.kv_blocks`). A decode step's keys and values go to the step tiles (a place
that does not depend on the position), the attention design reads a head's step tile after the cache tiles of the
rows before the step, and the host appends the rows to the cache after the launch. (The step tiles come after all
heads, not after each head's tiles: a head's stride stays within what a shim buffer descriptor can step.) A host
runtime allocates the tensor once at its full size (the compiled ``max_seq_len``) and copies to the device only the
element ranges the host changed since the last launch that read it (:meth:`BlockedKvCache.resident`).
"""

from __future__ import annotations

import numpy as np

from aielower.backends.aie.launcher import Resident
from aielower.errors import AielowerError


class BlockedKvCache:
    """The KV cache of one decoder layer (``name``) for ``batch`` rows of up to ``rows`` positions, ``kv_heads``
    heads of ``head_dim``; ``shape`` is the IR's ``[batch, kv_heads, rows, head_dim]``.

    The layout's padded sizes (KV heads, padded head dim, KV tile) are the attention plan's; they are fixed by the
    first :meth:`write` or :meth:`stage` (the storage is allocated then, once) and checked on every later one. The
    same object stands for the layer's key cache and its value cache: in DDR they are one tensor.
    """

    device_resident = True  # the interpreter passes it to the attention op as it is (it has shape and ndim)

    def __init__(self, name: str, batch: int, kv_heads: int, rows: int, head_dim: int):
        if min(batch, kv_heads, rows, head_dim) < 1:
            raise AielowerError(f"a KV cache needs positive sizes, got batch {batch}, kv_heads {kv_heads}, "
                                f"rows {rows}, head_dim {head_dim}")
        self.name, self.batch, self.rows = name, batch, rows
        self.shape = (batch, kv_heads, rows, head_dim)  # what the IR's k_cache / v_cache arguments are
        self.ndim = 4
        self.data: np.ndarray | None = None  # [batch, elements] bf16 bits
        self.layout: tuple[int, int, int] | None = None  # (kv_heads, d_pad, tkv)
        self._written: set[int] = set()  # batch rows handed to a launch at least once
        self._changed: dict[int, list[tuple[int, int]]] = {}  # per batch row, ranges changed since its last launch

    def _views(self, row: int, keys: np.ndarray, values: np.ndarray, kv_heads: int, d_pad: int,
               tkv: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch row ``row``'s cache tiles [kv_heads][blocks][K|V][tkv][d_pad] and step tiles
        [kv_heads][K|V][tkv][d_pad], after checking the step's arrays."""
        if values.shape != keys.shape:
            raise AielowerError(f"KV cache {self.name}: keys {keys.shape} and values {values.shape} differ")
        if not 0 <= row < self.batch:
            raise AielowerError(f"KV cache {self.name} has batch rows 0..{self.batch - 1}, not {row}")
        layout = (kv_heads, d_pad, tkv)
        if self.data is None:
            if self.rows % tkv:
                raise AielowerError(f"KV cache {self.name}: {self.rows} positions are not a whole number of KV tiles "
                                    f"of {tkv}")
            self.data = np.zeros((self.batch, kv_heads * (self.rows + tkv) * 2 * d_pad), np.uint16)
            self.layout = layout
        elif layout != self.layout:
            raise AielowerError(f"KV cache {self.name} is laid out for (kv_heads, d_pad, tkv) = {self.layout}, "
                                f"not {layout}")
        split = kv_heads * self.rows * 2 * d_pad
        return (self.data[row][:split].reshape(kv_heads, self.rows // tkv, 2, tkv, d_pad),
                self.data[row][split:].reshape(kv_heads, 2, tkv, d_pad))

    def _mark(self, row: int, heads: int, start, first: int, n: int, d_pad: int) -> None:
        """Rows ``first ..`` (``n``) of the tiles at ``start(h, part)`` (element offsets) changed, for ``heads``."""
        changed = self._changed.setdefault(row, [])
        changed += [(start(h, part) + first * d_pad, n * d_pad) for h in range(heads) for part in (0, 1)]

    def write(self, row: int, position: int, keys: np.ndarray, values: np.ndarray, *, kv_heads: int, d_pad: int,
              tkv: int) -> None:
        """Write ``keys`` and ``values`` (bf16 bits [heads, s, d] with heads <= kv_heads, d <= d_pad) of batch row
        ``row`` at positions ``position .. position + s - 1``."""
        heads, s, d = keys.shape
        if position < 0 or position + s > self.rows:
            raise AielowerError(f"positions {position}..{position + s - 1} do not fit the KV cache of {self.rows}")
        view, _ = self._views(row, keys, values, kv_heads, d_pad, tkv)
        blocks = view.shape[1]
        p = position
        while p < position + s:  # one run of rows per KV tile the step touches
            block, first = divmod(p, tkv)
            n = min(tkv - first, position + s - p)
            view[:heads, block, 0, first : first + n, :d] = keys[:, p - position : p - position + n]
            view[:heads, block, 1, first : first + n, :d] = values[:, p - position : p - position + n]
            self._mark(row, heads, lambda h, part: ((h * blocks + block) * 2 + part) * tkv * d_pad, first, n, d_pad)
            p += n

    def stage(self, row: int, keys: np.ndarray, values: np.ndarray, *, kv_heads: int, d_pad: int, tkv: int) -> None:
        """Put a step's ``keys`` and ``values`` (as for :meth:`write`, at most ``tkv`` rows) in the first rows of
        the step tile of batch row ``row``."""
        heads, s, d = keys.shape
        if s > tkv:
            raise AielowerError(f"KV cache {self.name}: a step tile holds {tkv} rows, not {s}")
        cache, step = self._views(row, keys, values, kv_heads, d_pad, tkv)
        step[:heads, 0, :s, :d] = keys
        step[:heads, 1, :s, :d] = values
        split = cache.size
        self._mark(row, heads, lambda h, part: split + (h * 2 + part) * tkv * d_pad, 0, s, d_pad)

    def pending(self, row: int) -> tuple[tuple[int, int], ...]:
        """The ``(first element, count)`` ranges of batch row ``row`` written since the last launch that read it
        (after a decode step: the step's rows appended to the cache)."""
        return tuple(self._changed.get(row, ()))

    def resident(self, row: int) -> Resident:
        """Batch row ``row``'s DDR tensor for a launch, as a :class:`~aielower.backends.aie.launcher.Resident`
        whose ``changed`` ranges are those written since the last launch that read it (the whole row the first
        time: a runtime reusing the DDR buffer of an earlier cache of this name must not keep that cache's rows)."""
        if self.data is None:
            raise AielowerError(f"KV cache {self.name}: nothing was written before a launch read it")
        first = row not in self._written
        self._written.add(row)
        changed = self._changed.pop(row, [])
        return Resident(f"kv/{self.name}/{row}", self.data[row], None if first else tuple(changed))

    def __repr__(self) -> str:
        return f"<BlockedKvCache {self.name}: batch {self.batch}, {self.rows} positions>"


__all__ = ["BlockedKvCache"]
