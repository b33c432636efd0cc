"""Shipped models, and loading any GaGNet weights file by name or path.

A shipped model is ``gagnet/pretrained/<name>.pt``: ``torch.save`` of
``{"config": GaGNetConfig.to_dict(), "state_dict": tensors (fp16 allowed), "card":
{"summary": "one line", ...}, "atten_lim_db": dB}``, with an optional model card ``<name>.md``
beside it. ``atten_lim_db`` (optional) is the attenuation limit the model is meant to run with
(:mod:`gagnet.attenuation`): :class:`~gagnet.enhance.Enhancer` and the CLI apply it unless told
otherwise.

:func:`load_model` also reads the files ``gagnet train`` writes: ``model.pt``
(``{"config", "state_dict"}`` from :func:`gagnet.train.save_weights`) and Lightning
checkpoints (``.ckpt``: ``hyper_parameters["train_cfg"]`` and ``model.net.*`` weights).
Every file is read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import functools
import math
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..config import GaGNetConfig, TrainConfig
from ..model import GaGNet, WaveGaGNet

#: Folder of the shipped ``<name>.pt`` files.
PRETRAINED_DIR = Path(__file__).resolve().parent

#: Model used when none is named. None: no trained model has shipped yet.
DEFAULT_MODEL: str | None = "causal-v1"


class ModelError(ValueError):
    """A model that cannot be found or loaded; the message is one line."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _shipped() -> dict[str, Path]:
    return {p.stem: p for p in sorted(PRETRAINED_DIR.glob("*.pt")) if not p.name.startswith(".")}


@functools.lru_cache(maxsize=None)
def _meta(path: Path, mtime: float) -> tuple[dict[str, Any], Any]:
    """``(card, atten_lim_db)`` of a model file; a broken file gives an "unreadable" card."""
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # files in torch's legacy (non-zip) format cannot be memory-mapped
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a broken shipped file must not break listing the others
        return {"summary": f"(unreadable: {_one_line(e)[:80]})"}, None
    if not isinstance(obj, Mapping):
        return {}, None
    card = obj.get("card")
    return (dict(card) if isinstance(card, Mapping) else {}), obj.get("atten_lim_db")


def recommended_atten_lim(name_or_path: str | os.PathLike | None = None) -> float | None:
    """The attenuation limit in dB that a model file names (``atten_lim_db``), or None.

    ``name_or_path`` as in :func:`load_model`. Raises :class:`ModelError` when the value is
    not a finite number >= 0.
    """
    path = resolve(name_or_path)
    value = _meta(path, path.stat().st_mtime)[1]
    if value is None:
        return None
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
        raise ModelError(f"{path}: atten_lim_db must be a finite number of dB >= 0, got {_one_line(value)[:40]}")
    return float(value)


def card(name: str) -> dict[str, Any]:
    """The ``card`` dict of a shipped model (``summary`` filled from ``<name>.md`` if missing)."""
    shipped = _shipped()
    if name not in shipped:
        raise ModelError(_unknown(name))
    path = shipped[name]
    info = dict(_meta(path, path.stat().st_mtime)[0])
    if not info.get("summary"):
        md = path.with_suffix(".md")
        if md.is_file():
            for line in md.read_text(encoding="utf-8", errors="replace").splitlines():
                line = line.strip().lstrip("#").strip()
                if line:
                    info["summary"] = line
                    break
    info.setdefault("summary", "(no summary)")
    info["summary"] = _one_line(info["summary"])
    return info


def available() -> dict[str, str]:
    """Shipped models: name -> one-line summary (empty when none is shipped)."""
    return {name: card(name)["summary"] for name in _shipped()}


def _unknown(name: str) -> str:
    names = sorted(_shipped())
    shipped = f"shipped models: {', '.join(names)}" if names else "no model is shipped yet"
    return f"unknown model {name!r} ({shipped}); pass the path of a .pt or .ckpt file"


def resolve(name_or_path: str | os.PathLike | None = None) -> Path:
    """The file of a shipped model name or a path; ``None`` means :data:`DEFAULT_MODEL`."""
    if name_or_path is None or str(name_or_path) == "":
        if DEFAULT_MODEL is None:
            raise ModelError(
                "no default model is shipped yet; pass --model PATH (a model.pt or .ckpt from gagnet train)"
            )
        name_or_path = DEFAULT_MODEL
    text = os.path.expanduser(str(name_or_path))
    path = Path(text)
    if path.is_file():
        return path
    if path.exists():
        raise ModelError(f"{path}: not a file")
    shipped = _shipped()
    if text in shipped:
        return shipped[text]
    if path.suffix or os.sep in text or (os.altsep and os.altsep in text):
        raise ModelError(f"{path}: no such model file")
    raise ModelError(_unknown(text))


def _weights(sd: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    if not isinstance(sd, Mapping):
        raise TypeError("state_dict is not a mapping")
    out = {}
    for k, v in sd.items():
        if not isinstance(k, str) or not k.startswith(prefix) or not isinstance(v, torch.Tensor):
            continue
        out[k[len(prefix):]] = v.float() if v.is_floating_point() else v
    return out


def _parse(obj: Any, path: Path) -> tuple[GaGNetConfig, dict[str, torch.Tensor]]:
    """Config and GaGNet weights of a loaded file (shipped / model.pt / Lightning .ckpt)."""
    if not isinstance(obj, Mapping) or "state_dict" not in obj:
        raise ModelError(
            f"{path}: not a gagnet model file (expected a dict with 'config' or 'hyper_parameters' and 'state_dict'; "
            "for the authors' checkpoints use gagnet.compat.from_official)"
        )
    try:
        if "config" in obj:
            cfg = GaGNetConfig.from_dict(dict(obj["config"]))
            sd = _weights(obj["state_dict"])
            if sd and all(k.startswith("net.") for k in sd):  # a WaveGaGNet state dict
                sd = {k[4:]: v for k, v in sd.items()}
        elif isinstance(obj.get("hyper_parameters"), Mapping) and "train_cfg" in obj["hyper_parameters"]:
            cfg = TrainConfig.from_dict(dict(obj["hyper_parameters"]["train_cfg"])).model_config()
            sd = _weights(obj["state_dict"], "model.net.")
        else:
            raise ModelError(f"{path}: has weights but no model config ('config' or hyper_parameters['train_cfg'])")
    except ModelError:
        raise
    except (TypeError, ValueError, KeyError) as e:
        raise ModelError(f"{path}: invalid model config ({_one_line(e)})") from None
    if not sd:
        raise ModelError(f"{path}: contains no GaGNet weights")
    return cfg, sd


def load_model(name_or_path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> WaveGaGNet:
    """A :class:`~gagnet.model.WaveGaGNet` in eval mode on ``device``, weights in float32.

    ``name_or_path``: a shipped model name, a shipped-style ``.pt``, a ``model.pt`` from
    ``gagnet train`` or a Lightning ``.ckpt`` from ``gagnet train``; ``None`` for
    :data:`DEFAULT_MODEL`. Raises :class:`ModelError` (one line) on any problem.
    """
    path = resolve(name_or_path)
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: empty file")
    if path.suffix.lower() == ".onnx":
        raise ModelError(f"{path}: an ONNX graph; `gagnet stream --model` runs it, this needs a shipped name "
                         "or a model.pt / .ckpt from gagnet train")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04" and head[:1] != b"\x80":  # torch's zip archive, or its older pickle
        raise ModelError(f"{path}: not a PyTorch weights file (a shipped name, or a model.pt / .ckpt "
                         "from gagnet train)")
    try:
        obj = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        if isinstance(e, pickle.UnpicklingError):  # torch's own message suggests an unsafe load: not that
            raise ModelError(f"{path}: holds Python objects besides weights, which are not loaded "
                             "(only weight files are safe to read)") from None
        first = _one_line(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
        raise ModelError(f"{path}: cannot load ({type(e).__name__}: {first[:200]})") from None
    cfg, sd = _parse(obj, path)
    net = GaGNet(cfg)
    missing = sorted(set(net.state_dict()) - set(sd))
    unexpected = sorted(set(sd) - set(net.state_dict()))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise ModelError(f"{path}: weights do not match the config: {', '.join(parts)}")
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise ModelError(f"{path}: weights do not match the config ({_one_line(e)[:200]})") from None
    return WaveGaGNet(net).to(device).eval()


__all__ = ["DEFAULT_MODEL", "PRETRAINED_DIR", "ModelError", "available", "card", "load_model", "recommended_atten_lim", "resolve"]
