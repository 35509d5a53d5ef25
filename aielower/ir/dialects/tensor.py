"""``tensor`` dialect: ops that move, view or create data without arithmetic."""

from __future__ import annotations

from aielower.ir.core import Op, ViewOf, WritesInPlace, attr, normalize_axis, op, operand, operands, require, tensor_type
from aielower.ir.types import Sym, TensorType, same_numel


@op("tensor.reshape")
class Reshape(Op):
    """View ``x`` with another shape of the same number of elements (row-major)."""

    traits = (ViewOf("x"),)

    x = operand()
    shape = attr("dims")

    def result_types(self):
        t = tensor_type(self.x, self.name, "x")
        require(same_numel(t.shape, self.shape), f"{self.name}: cannot reshape {t} to {list(map(str, self.shape))}")
        return [t.with_shape(self.shape)]


@op("tensor.transpose")
class Transpose(Op):
    """Swap two dims."""

    traits = (ViewOf("x"),)

    x = operand()
    dim0 = attr("int")
    dim1 = attr("int")

    def result_types(self):
        t = tensor_type(self.x, self.name, "x")
        a, b = normalize_axis(self.dim0, t.rank, self.name), normalize_axis(self.dim1, t.rank, self.name)
        shape = list(t.shape)
        shape[a], shape[b] = shape[b], shape[a]
        return [t.with_shape(shape)]


@op("tensor.permute")
class Permute(Op):
    """Reorder dims: result dim i is input dim ``perm[i]``."""

    traits = (ViewOf("x"),)

    x = operand()
    perm = attr("ints")

    def result_types(self):
        t = tensor_type(self.x, self.name, "x")
        require(sorted(self.perm) == list(range(t.rank)), f"{self.name}: perm {list(self.perm)} is not a permutation of rank {t.rank}")
        return [t.with_shape([t.shape[p] for p in self.perm])]


@op("tensor.expand")
class Expand(Op):
    """Broadcast size-1 dims of ``x`` (leading dims may be added) to ``shape``."""

    traits = (ViewOf("x"),)

    x = operand()
    shape = attr("dims")

    def result_types(self):
        t = tensor_type(self.x, self.name, "x")
        require(len(self.shape) >= t.rank, f"{self.name}: target rank {len(self.shape)} < input rank {t.rank}")
        for src, dst in zip(t.shape, self.shape[len(self.shape) - t.rank :]):
            require(src == dst or src == 1, f"{self.name}: cannot expand dim {src} to {dst}")
        return [t.with_shape(self.shape)]


@op("tensor.slice")
class Slice(Op):
    """``x[..., start:end:step, ...]`` along ``dim``; ``end`` is clamped to the dim size. A negative ``start`` counts
    from the end, as in Python: ``start=-1`` with ``end`` the whole dim keeps the last entry (of a symbolic dim too,
    which holds at least one)."""

    traits = (ViewOf("x"),)

    x = operand()
    dim = attr("int")
    start = attr("int", 0)
    end = attr("dim")
    step = attr("int", 1)

    def result_types(self):
        t = tensor_type(self.x, self.name, "x")
        d = normalize_axis(self.dim, t.rank, self.name)
        size = t.shape[d]
        require(self.step >= 1, f"{self.name}: step must be >= 1")
        if isinstance(size, Sym) or isinstance(self.end, Sym):
            require(self.step == 1 and self.end == size and self.start in (0, -1),
                    f"{self.name}: a slice of a symbolic dim must cover it whole or keep its last entry (start=-1)")
            new = size if self.start == 0 else 1
        else:
            require(self.start >= -size, f"{self.name}: start {self.start} is before the first of {size} entries")
            start = self.start + size if self.start < 0 else self.start
            end = min(self.end, size)
            require(start <= end, f"{self.name}: start {self.start} > end {end}")
            new = (end - start + self.step - 1) // self.step
        shape = list(t.shape)
        shape[d] = new
        return [t.with_shape(shape)]


@op("tensor.concat")
class Concat(Op):
    """Join tensors along ``dim``; other dims must agree."""

    inputs = operands()
    dim = attr("int")

    def result_types(self):
        types = [tensor_type(v, self.name, "input") for v in self.inputs]
        first = types[0]
        d = normalize_axis(self.dim, first.rank, self.name)
        total = 0
        for t in types:
            require(t.rank == first.rank and t.dtype == first.dtype, f"{self.name}: inputs {first} and {t} differ in rank or dtype")
            require(all(a == b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != d),
                    f"{self.name}: inputs {first} and {t} differ outside dim {self.dim}")
            require(isinstance(t.shape[d], int), f"{self.name}: cannot concatenate along a symbolic dim")
            total += t.shape[d]
        shape = list(first.shape)
        shape[d] = total
        return [first.with_shape(shape)]


@op("tensor.split")
class Split(Op):
    """Split ``x`` along ``dim`` into pieces of the given ``sizes`` (one result each)."""

    traits = (ViewOf("x"),)

    x = operand()
    dim = attr("int")
    sizes = attr("ints")

    def result_types(self):
        t = tensor_type(self.x, self.name, "x")
        d = normalize_axis(self.dim, t.rank, self.name)
        require(sum(self.sizes) == t.shape[d], f"{self.name}: sizes {list(self.sizes)} do not add up to dim {t.shape[d]}")
        out = []
        for s in self.sizes:
            shape = list(t.shape)
            shape[d] = s
            out.append(t.with_shape(shape))
        return out


@op("tensor.index_copy")
class IndexCopy(Op):
    """``x`` with the slices ``index[i]`` along ``dim`` replaced by ``src``'s slices ``i``
    (torch.index_copy). Used for KV-cache writes: the result is the new cache."""

    traits = (WritesInPlace({0: "x"}),)

    x = operand()
    index = operand()
    src = operand()
    dim = attr("int")

    def result_types(self):
        x = tensor_type(self.x, self.name, "x")
        idx = tensor_type(self.index, self.name, "index")
        src = tensor_type(self.src, self.name, "src")
        d = normalize_axis(self.dim, x.rank, self.name)
        require(idx.rank == 1 and idx.dtype in ("i64", "i32"), f"{self.name}: index must be a 1-D integer tensor, got {idx}")
        expected = x.shape[:d] + (idx.shape[0],) + x.shape[d + 1 :]
        require(src.shape == expected and src.dtype == x.dtype, f"{self.name}: src {src} must be {x.with_shape(expected)}")
        return [x]


@op("tensor.arange")
class Arange(Op):
    """``[start, start + step, ...]`` below ``end`` (``end`` may be a symbol when start=0, step=1)."""

    end = attr("dim")
    start = attr("int", 0)
    step = attr("int", 1)
    dtype = attr("dtype", "i64")

    def result_types(self):
        if isinstance(self.end, Sym):
            require(self.start == 0 and self.step == 1, f"{self.name}: symbolic end needs start=0 and step=1")
            return [TensorType((self.end,), self.dtype)]
        require(self.step >= 1 and self.end >= self.start, f"{self.name}: empty or reversed range")
        return [TensorType(((self.end - self.start + self.step - 1) // self.step,), self.dtype)]


@op("tensor.cast")
class Cast(Op):
    """Convert the element type."""

    x = operand()
    dtype = attr("dtype")

    def result_types(self):
        return [tensor_type(self.x, self.name, "x").with_dtype(self.dtype)]
