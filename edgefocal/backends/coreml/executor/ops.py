"""The ML-program operations a FocalNet uses, in numpy, following the MIL op definitions in coremltools
(coremltools/converters/mil/mil/ops/defs/). Each function takes the op's inputs by name (constants and
activations alike) plus a RunContext, and returns the op's outputs as a tuple.

Activations are float32 (or float16 where the program computes in FP16: heavy ops then compute in float32
and store float16, as Core ML's GPU/ANE kernels accumulate in higher precision). Convolutions run as one
BLAS matmul (1×1 and im2col) or as k² shifted multiply-adds (depthwise), the fastest shapes numpy offers.

Batch: a program converted with a fixed batch (usually 1) still runs on any batch here; `reshape` and
`slice_by_index` whose leading dimension equals the declared batch follow the actual batch instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


@dataclass
class RunContext:
    declared_batch: int | None  # the program's fixed batch, or None for a ranged/flexible batch
    batch: int = 1  # the batch being run


def _f32(x) -> np.ndarray:
    x = np.asarray(x)
    return x if x.dtype == np.float32 else x.astype(np.float32)


def _erf(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf  # numpy has no erf; scipy's is the maintained vectorised one

    return erf(x)


# ---------------------------------------------------------------- elementwise


def _binary(fn):
    return lambda a, ctx: (fn(a["x"], a["y"]),)


def _gelu(a, ctx):
    x = _f32(a["x"])
    mode = str(a.get("mode", "EXACT"))
    if mode == "EXACT":
        out = 0.5 * x * (1.0 + _erf(x * np.float32(1 / np.sqrt(2))))
    elif mode == "TANH_APPROXIMATION":
        out = 0.5 * x * (1 + np.tanh(np.float32(np.sqrt(2 / np.pi)) * (x + 0.044715 * x**3)))
    elif mode == "SIGMOID_APPROXIMATION":
        out = x / (1 + np.exp(-1.702 * x))
    else:
        raise ValueError(f"gelu mode {mode}")
    return (out.astype(np.float32, copy=False),)


def _softmax(a, ctx):
    x = _f32(a["x"])
    axis = int(a.get("axis", -1))
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True),)


def _cast(a, ctx):
    dtypes = {"fp16": np.float16, "fp32": np.float32, "int32": np.int32, "int16": np.int16, "int8": np.int8,
              "uint8": np.uint8, "bool": np.bool_}
    return (np.asarray(a["x"]).astype(dtypes[str(a["dtype"])]),)


# ---------------------------------------------------------------- layout


def _batch_fix(shape: list[int], x: np.ndarray, ctx: RunContext) -> list[int]:
    """A leading dimension equal to the declared batch follows the batch actually run."""
    if ctx.declared_batch is not None and shape and shape[0] == ctx.declared_batch and x.shape[0] == ctx.batch:
        shape = [ctx.batch, *shape[1:]]
    return shape


def _reshape(a, ctx):
    x = a["x"]
    shape = [int(s) for s in np.asarray(a["shape"]).reshape(-1)]
    shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]  # MIL: 0 copies the input dim
    return (x.reshape(_batch_fix(shape, x, ctx)),)


def _transpose(a, ctx):
    return (np.transpose(a["x"], [int(p) for p in a["perm"]]),)


def _slice_by_index(a, ctx):
    x = a["x"]
    rank = x.ndim
    begin = np.asarray(a["begin"]).reshape(-1).tolist()
    end = np.asarray(a["end"]).reshape(-1).tolist()
    stride = np.asarray(a.get("stride", [1] * rank)).reshape(-1).tolist()
    bmask = np.asarray(a.get("begin_mask", [False] * rank)).reshape(-1).tolist()
    emask = np.asarray(a.get("end_mask", [False] * rank)).reshape(-1).tolist()
    smask = np.asarray(a.get("squeeze_mask", [False] * rank)).reshape(-1).tolist()
    index = []
    for i in range(rank):
        b = None if bmask[i] else int(begin[i])
        e = None if emask[i] else int(end[i])
        if i == 0 and ctx.declared_batch is not None and x.shape[0] == ctx.batch and (b in (None, 0)) \
                and e == ctx.declared_batch:
            e = None  # the whole (declared) batch means the whole batch being run
        if smask[i]:
            index.append(int(begin[i]))
        else:
            index.append(slice(b, e, int(stride[i])))
    return (x[tuple(index)],)


def _split(a, ctx):
    x = a["x"]
    axis = int(a["axis"])
    if a.get("split_sizes") is not None:
        cuts = np.cumsum(np.asarray(a["split_sizes"]).reshape(-1))[:-1]
        return tuple(np.split(x, cuts, axis=axis))
    return tuple(np.split(x, int(a["num_splits"]), axis=axis))


def _concat(a, ctx):
    return (np.concatenate(list(a["values"]), axis=int(a["axis"])),)


def _squeeze(a, ctx):
    axes = a.get("axes")
    return (np.squeeze(a["x"], axis=None if axes is None else tuple(int(i) for i in axes)),)


def _expand_dims(a, ctx):
    x = a["x"]
    for ax in sorted(int(i) for i in a["axes"]):
        x = np.expand_dims(x, ax)
    return (x,)


def _identity(a, ctx):
    return (a["x"],)


# ---------------------------------------------------------------- reductions, normalisation


def _reduce(fn):
    def run(a, ctx):
        axes = a.get("axes")
        axes = None if axes is None else tuple(int(i) for i in np.asarray(axes).reshape(-1))
        return (fn(_f32(a["x"]), axis=axes, keepdims=bool(a.get("keep_dims", False))),)

    return run


def _layer_norm(a, ctx):
    x = _f32(a["x"])
    axes = tuple(int(i) for i in np.asarray(a["axes"]).reshape(-1))
    eps = np.float32(a.get("epsilon", 1e-5))
    mean = x.mean(axis=axes, keepdims=True)
    centered = x - mean
    var = np.mean(centered * centered, axis=axes, keepdims=True)
    out = centered / np.sqrt(var + eps)
    if a.get("gamma") is not None:
        out = out * _f32(a["gamma"])
    if a.get("beta") is not None:
        out = out + _f32(a["beta"])
    return (out,)


# ---------------------------------------------------------------- conv, linear


def _pads(a, x: np.ndarray, kernel: tuple[int, int], strides, dilations) -> list[int]:
    pad_type = str(a.get("pad_type", "valid"))
    if pad_type == "valid":
        return [0, 0, 0, 0]
    if pad_type == "custom":
        return [int(p) for p in a["pad"]]
    if pad_type in ("same", "same_lower"):
        pads = []
        for d in range(2):
            size = x.shape[2 + d]
            eff = (kernel[d] - 1) * dilations[d] + 1
            out = -(-size // strides[d])
            total = max((out - 1) * strides[d] + eff - size, 0)
            small, big = total // 2, total - total // 2
            pads += [big, small] if pad_type == "same_lower" else [small, big]
        return pads
    raise ValueError(f"conv pad_type {pad_type}")


def _conv(a, ctx):
    x = _f32(a["x"])
    w = _f32(a["weight"])
    if x.ndim != 4:
        raise ValueError(f"conv on rank-{x.ndim} input (only 2-D convolution is implemented)")
    groups = int(a.get("groups", 1))
    strides = [int(s) for s in a.get("strides", [1, 1])]
    dil = [int(d) for d in a.get("dilations", [1, 1])]
    cout, cin_g, kh, kw = w.shape
    pt, pb, pl, pr = _pads(a, x, (kh, kw), strides, dil)
    n, cin, h, wd = x.shape
    if (kh, kw) == (1, 1) and strides == [1, 1] and groups == 1 and not any((pt, pb, pl, pr)):
        # 1×1 conv = one BLAS matmul over channels (NHWC rows; reshape copies only if x is not NHWC already)
        rows = np.moveaxis(x, 1, -1).reshape(-1, cin)
        out = np.moveaxis((rows @ w.reshape(cout, cin).T).reshape(n, h, wd, cout), -1, 1)
    else:
        if any((pt, pb, pl, pr)):
            x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
        ho = (x.shape[2] - (kh - 1) * dil[0] - 1) // strides[0] + 1
        wo = (x.shape[3] - (kw - 1) * dil[1] - 1) // strides[1] + 1
        if groups == cin and cin_g == 1 and cout == cin:  # depthwise: k² shifted multiply-adds
            out = np.zeros((n, cout, ho, wo), np.float32)
            for i in range(kh):
                for j in range(kw):
                    r, c = i * dil[0], j * dil[1]
                    if r + (ho - 1) * strides[0] < pt or r >= pt + h or c + (wo - 1) * strides[1] < pl or c >= pl + wd:
                        continue  # this tap reads only padding
                    patch = x[:, :, r:r + (ho - 1) * strides[0] + 1:strides[0], c:c + (wo - 1) * strides[1] + 1:strides[1]]
                    out += patch * w[:, 0, i, j][None, :, None, None]
        elif groups == 1 and [kh, kw] == strides and dil == [1, 1] and x.shape[2] % kh == 0 and x.shape[3] % kw == 0:
            # patchify (stem, downsampling): non-overlapping windows are a reshape, then one matmul
            patches = x.reshape(n, cin, ho, kh, wo, kw).transpose(0, 2, 4, 1, 3, 5).reshape(n * ho * wo, -1)
            out = np.moveaxis((patches @ w.reshape(cout, -1).T).reshape(n, ho, wo, cout), -1, 1)
        else:  # im2col: windows as a strided view, then one tensordot per group
            win = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::strides[0], ::strides[1]]
            win = win[..., ::dil[0], ::dil[1]] if dil != [1, 1] else win
            win = win[:, :, :ho, :wo]
            if groups == 1:
                out = np.einsum("nchwij,ocij->nohw", win, w, optimize=True)
            else:
                g = groups
                win = win.reshape(n, g, cin // g, ho, wo, kh, kw)
                wg = w.reshape(g, cout // g, cin_g, kh, kw)
                out = np.einsum("ngchwij,gocij->ngohw", win, wg, optimize=True).reshape(n, cout, ho, wo)
    if a.get("bias") is not None:
        out = out + _f32(a["bias"])[None, :, None, None]
    return (out,)


def _linear(a, ctx):
    out = _f32(a["x"]) @ _f32(a["weight"]).T
    if a.get("bias") is not None:
        out = out + _f32(a["bias"])
    return (out,)


def _matmul(a, ctx):
    x, y = _f32(a["x"]), _f32(a["y"])
    if bool(a.get("transpose_x", False)):
        x = np.swapaxes(x, -1, -2)
    if bool(a.get("transpose_y", False)):
        y = np.swapaxes(y, -1, -2)
    return (x @ y,)


# ---------------------------------------------------------------- classifier head


def _classify(a, ctx):
    probs = _f32(a["probabilities"])
    labels = np.asarray(a["classes"])
    return labels[probs.reshape(probs.shape[0] if probs.ndim > 1 else 1, -1).argmax(-1)], probs


# ---------------------------------------------------------------- activation quantization (iOS17)


def _per_axis(v, x: np.ndarray, axis) -> np.ndarray:
    v = np.asarray(v)
    if v.ndim == 0 or axis is None:
        return v
    shape = [1] * x.ndim
    shape[int(axis)] = -1
    return v.reshape(shape)


_INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int4": (-8, 7), "uint4": (0, 15)}


def _quantize(a, ctx):
    x = _f32(a["input"])
    dtype = str(a["output_dtype"])
    lo, hi = _INT_RANGES[dtype]
    axis = a.get("axis")
    scale = _per_axis(_f32(a["scale"]), x, axis)
    zp = 0 if a.get("zero_point") is None else _per_axis(a["zero_point"], x, axis).astype(np.float32)
    q = np.clip(np.rint(x / scale + zp), lo, hi)  # round half to even, as Core ML does
    return (q.astype(np.int8 if dtype.startswith("int") else np.uint8),)


def _dequantize(a, ctx):
    q = np.asarray(a["input"]).astype(np.float32)
    axis = a.get("axis")
    scale = _per_axis(_f32(a["scale"]), q, axis)
    zp = 0 if a.get("zero_point") is None else _per_axis(a["zero_point"], q, axis).astype(np.float32)
    return ((q - zp) * scale,)


# ---------------------------------------------------------------- compressed weights (constexpr_*)


def _unpack_bits(packed: np.ndarray, nbits: int, count: int) -> np.ndarray:
    """Core ML packs n-bit elements least significant bit first (coremltools' pack_elements_into_bits)."""
    bits = np.unpackbits(np.asarray(packed).astype(np.uint8).reshape(-1), bitorder="little")[: count * nbits]
    return (bits.reshape(count, nbits).astype(np.uint32) << np.arange(nbits, dtype=np.uint32)).sum(-1)


def _affine_dequantize(a, ctx):  # iOS16: (q - zero_point) * scale along `axis`
    q = np.asarray(a["quantized_data"]).astype(np.float32)
    axis = int(a["axis"])
    zp = _per_axis(np.asarray(a["zero_point"]).astype(np.float32), q, axis if np.ndim(a["zero_point"]) else None)
    scale = _per_axis(_f32(a["scale"]), q, axis if np.ndim(a["scale"]) else None)
    return ((q - zp) * scale,)


def _block_broadcast(v: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Repeat a per-block parameter (shape dividing `shape`) to the full weight shape."""
    v = np.asarray(v).reshape((1,) * (len(shape) - np.ndim(v)) + np.shape(v))
    for axis, (size, n) in enumerate(zip(shape, v.shape)):
        if n != size:
            v = np.repeat(v, size // n, axis=axis)
    return v


def _blockwise_shift_scale(a, ctx):  # iOS18: scale * (data - offset), parameters per block
    data = np.asarray(a["data"]).astype(np.float32)
    out = data
    if a.get("offset") is not None:
        out = out - _block_broadcast(np.asarray(a["offset"]).astype(np.float32), data.shape)
    return (out * _block_broadcast(_f32(a["scale"]), data.shape),)


def _lut_to_dense(a, ctx):
    lut = np.asarray(a["lut"])
    indices = np.asarray(a["indices"])
    if a.get("shape") is not None:  # iOS16: one scalar LUT, indices packed into uint8
        shape = tuple(int(s) for s in a["shape"])
        nbits = int(np.log2(lut.size))
        idx = _unpack_bits(indices, nbits, int(np.prod(shape)))
        return (lut.reshape(-1)[idx].reshape(shape).astype(np.float32),)
    # iOS18: indices already unpacked to the weight shape; lut is [blocks..., 2**nbits, vector]
    shape = indices.shape
    vec = lut.shape[-1]
    if vec != 1:
        raise ValueError("vector palettization (cluster_dim > 1) is not implemented")
    block_lut = lut[..., 0]  # [blocks per dim..., 2**nbits]
    full = np.empty(shape, np.float32)
    grid = block_lut.shape[:-1]
    sizes = [s // g for s, g in zip(shape, grid)]
    for block in np.ndindex(*grid):
        sl = tuple(slice(b * s, (b + 1) * s) for b, s in zip(block, sizes))
        full[sl] = block_lut[block][indices[sl].astype(np.int64)]
    return (full,)


def _sparse_to_dense(a, ctx):
    nonzero = np.asarray(a["nonzero_data"])
    mask = np.asarray(a["mask"])
    if a.get("shape") is not None:  # iOS16: 1-bit mask packed into uint8
        shape = tuple(int(s) for s in a["shape"])
        flat_mask = _unpack_bits(mask, 1, int(np.prod(shape))).astype(bool)
    else:  # iOS18: mask holds the weight's shape
        shape = mask.shape
        flat_mask = mask.reshape(-1).astype(bool)
    dense = np.zeros(int(np.prod(shape)), np.float32)
    dense[flat_mask] = nonzero.reshape(-1).astype(np.float32)
    return (dense.reshape(shape),)


OpFn = Callable[[dict, RunContext], tuple]

#: activation ops: computed on every run
OPS: dict[str, OpFn] = {
    "add": _binary(np.add),
    "sub": _binary(np.subtract),
    "mul": _binary(np.multiply),
    "real_div": _binary(np.divide),
    "maximum": _binary(np.maximum),
    "minimum": _binary(np.minimum),
    "pow": _binary(np.power),
    "sqrt": lambda a, ctx: (np.sqrt(a["x"]),),
    "relu": lambda a, ctx: (np.maximum(a["x"], 0),),
    "sigmoid": lambda a, ctx: (1 / (1 + np.exp(-_f32(a["x"]))),),
    "gelu": _gelu,
    "softmax": _softmax,
    "cast": _cast,
    "identity": _identity,
    "reshape": _reshape,
    "transpose": _transpose,
    "slice_by_index": _slice_by_index,
    "split": _split,
    "concat": _concat,
    "squeeze": _squeeze,
    "expand_dims": _expand_dims,
    "reduce_mean": _reduce(np.mean),
    "reduce_sum": _reduce(np.sum),
    "reduce_max": _reduce(np.max),
    "layer_norm": _layer_norm,
    "conv": _conv,
    "linear": _linear,
    "matmul": _matmul,
    "classify": _classify,
    "quantize": _quantize,
    "dequantize": _dequantize,
}

#: weight decompression ops: their inputs are constants, so they are evaluated once, at load
CONSTEXPR_OPS: dict[str, OpFn] = {
    "constexpr_affine_dequantize": _affine_dequantize,
    "constexpr_blockwise_shift_scale": _blockwise_shift_scale,
    "constexpr_lut_to_dense": _lut_to_dense,
    "constexpr_sparse_to_dense": _sparse_to_dense,
    "constexpr_cast": lambda a, ctx: (np.asarray(a["source_val"]).astype(np.float16 if str(a["output_dtype"]) == "fp16" else np.float32),),
}
