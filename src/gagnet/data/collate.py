"""Batching variable-length items by zero-padding."""
from __future__ import annotations

from collections.abc import Sequence

import torch


def collate(items: Sequence[dict]) -> dict[str, torch.Tensor]:
    """Stack item dicts into ``noisy``/``clean`` ``(B, Nmax)`` (zero-padded at the end),
    ``lengths`` ``(B,)`` int64 and ``snr`` ``(B,)`` float32 (and ``index`` ``(B,)`` int64 when
    every item has one)."""
    if not items:
        raise ValueError("cannot collate an empty batch")
    lengths = torch.tensor([len(it["noisy"]) for it in items], dtype=torch.long)
    for it in items:
        if len(it["clean"]) != len(it["noisy"]):
            raise ValueError(f"noisy and clean lengths differ: {len(it['noisy'])} vs {len(it['clean'])}")
    n_max = int(lengths.max())
    out = {}
    for key in ("noisy", "clean"):
        batch = torch.zeros(len(items), n_max, dtype=torch.float32)
        for b, it in enumerate(items):
            batch[b, : lengths[b]] = torch.as_tensor(it[key], dtype=torch.float32)
        out[key] = batch
    out["lengths"] = lengths
    out["snr"] = torch.tensor([float(it.get("snr", float("nan"))) for it in items], dtype=torch.float32)
    if all("index" in it for it in items):
        out["index"] = torch.tensor([int(it["index"]) for it in items], dtype=torch.long)
    return out
