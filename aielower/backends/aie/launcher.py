"""What a host program hands to the device for one launch: the :class:`Launcher` interface and the
:class:`Resident` DDR tensors that outlive a launch.

Two launchers exist: the host emulator's :class:`aielower.backends.aie.emulator.DesignLauncher` (runs the design
file) and the XRT host runtime's :class:`aielower.backends.aie.runtime.XrtLauncher` (buffer objects, instruction
streams and kernel runs through ``pyxrt`` or the emulated device).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:  # the kernel families hand Resident tensors to the host program; designs import the families
    from aielower.backends.aie.designs.model import Design


@dataclass(frozen=True)
class Resident:
    """A DDR tensor that outlives a launch: ``key`` names its buffer across launches (a weight, one batch row of a
    layer's KV cache), ``array`` is its host copy. ``changed`` lists the ``(first element, count)`` ranges the host
    changed since the last launch that read it (``()``: none), or is None when the whole array is new (a fresh KV
    cache taking over the buffer of an earlier one). A launcher writes the whole array the first time it sees
    ``key`` or when ``changed`` is None, else only these ranges."""

    key: str
    array: np.ndarray
    changed: tuple[tuple[int, int], ...] | None = ()


class Launcher(Protocol):
    """Runs one launch: runtime sequence ``sequence`` (None: the design's only one) of ``design`` over ``tensors``
    (runtime-sequence argument name -> flat array, or a :class:`Resident`); outputs are written into the arrays."""

    calls: int  # kernel calls made by all launches, where the launcher can count them (else 0)

    def launch(self, design: Design, sequence: str | None, tensors: Mapping[str, np.ndarray | Resident]) -> None: ...


__all__ = ["Launcher", "Resident"]
