"""Int8 weights for an exported ONNX graph: its large constant matrix products as ONNX Runtime's
``DynamicQuantizeMatMul`` (com.microsoft), a quarter of the bytes of float32.

A 10 ms streaming step reads every weight once (about 24 MB in float32 for the paper-size
model), so its matrix-vector products are bound by memory traffic. :func:`quantize_int8`
rewrites each ``MatMul``, and each ``Gemm`` of the form ``A @ B + c``, whose right-hand side
is a constant of at least ``min_params`` values: the weights become int8, symmetric, with one
float32 scale per output column (per stack for batched (S, K, N) weights); at run time ONNX
Runtime scales each input vector to uint8 (one scale and zero point per call), forms the
products as exact int32 sums and rescales them to float32 (the Gemm's bias is added in
float32). Everything else in the graph (norms, activations, gathers, state) stays float32.
So this is not weight-only quantisation: the input of each product is rounded to 8 bits too.
ONNX Runtime's weight-only int8 kernel (``MatMulNBits`` with float32 accumulation) ran about
ten times slower than float32 here (version 1.32, Xeon CPU), so it is not used.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def quantize_columns(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., K, N) float weights -> int8 ``q`` (same shape) and float32 scales (..., 1, N).

    Symmetric, one scale per output column: ``w ~ scale * q``, ``q`` in -127..127.
    """
    amax = np.abs(w).max(axis=-2, keepdims=True)
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


def dequantize_columns(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The float32 weights ``scale * q`` that an int8 product stands for."""
    return q.astype(np.float32) * scale


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike, min_params: int = 4096,
                  min_rows: int = 128) -> dict[str, Any]:
    """Write the ONNX graph ``src`` with int8 weights (see the module docstring) to ``dst``.

    Products with fewer than ``min_params`` weights or fewer than ``min_rows`` input rows (K)
    stay float32: on the paper-size step, ONNX Runtime's int8 kernel ran the S-TCM expand
    convs (64 rows) slower than float32 (a whole step: 1.07 ms with them float32, 1.12 ms
    with them int8).

    Returns counts: ``replaced`` products, ``params_int8`` weights now int8, ``params_f32``
    weights left float32, and the two files' sizes in bytes.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    nodes: list[Any] = []
    drop: set[str] = set()
    stats = {"replaced": 0, "params_int8": 0}
    for node in g.node:
        b = node.input[1] if len(node.input) > 1 else None
        w = numpy_helper.to_array(inits[b]) if b in inits else None
        ok = node.op_type == "MatMul" or node.op_type == "Gemm" and _plain_gemm(node, inits)
        if not ok or w is None or w.ndim not in (2, 3) or w.size < min_params or w.shape[-2] < min_rows:
            nodes.append(node)
            continue
        tag = f"q8_{stats['replaced']}"
        q, scale = quantize_columns(w.astype(np.float64))
        if w.ndim == 2:
            scale = scale.reshape(-1)  # (N,)
        g.initializer.extend([numpy_helper.from_array(q, f"{tag}_w"), numpy_helper.from_array(scale, f"{tag}_scale")])
        ins = [node.input[0], f"{tag}_w", f"{tag}_scale"]
        if node.op_type == "Gemm" and len(node.input) > 2:
            ins += ["", node.input[2]]  # no zero point (symmetric); the bias
        nodes.append(helper.make_node("DynamicQuantizeMatMul", ins, [node.output[0]], name=node.name or tag,
                                      domain="com.microsoft"))
        drop.add(b)
        stats["replaced"] += 1
        stats["params_int8"] += int(w.size)
    used = {i for n in nodes for i in n.input}
    keep = [i for i in g.initializer if i.name not in drop or i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    del g.node[:]
    g.node.extend(nodes)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    stats["params_f32"] = int(sum(np.prod(i.dims) for i in g.initializer  # weights left float32, not the scales
                                  if i.data_type == onnx.TensorProto.FLOAT and not i.name.startswith("q8_")))
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    stats["bytes_src"], stats["bytes_dst"] = os.path.getsize(src), os.path.getsize(dst)
    log.info("int8 weights: %d products, %d weights int8, %d float32", stats["replaced"], stats["params_int8"],
             stats["params_f32"])
    return stats


def _plain_gemm(node: Any, inits: dict[str, Any]) -> bool:
    """A Gemm that is ``A @ B + c``: no transposes, unit alpha and beta, a 1-D bias (or none)."""
    for a in node.attribute:
        if a.name in ("transA", "transB") and a.i or a.name in ("alpha", "beta") and a.f != 1.0:
            return False
    return len(node.input) < 3 or node.input[2] in inits and len(inits[node.input[2]].dims) == 1
