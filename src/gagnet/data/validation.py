"""The fixed validation set: files held out by a stable hash, mixtures made once."""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import soundfile as sf
from torch.utils.data import Dataset

from ..config import DataConfig
from .audio import AUDIO_EXTENSIONS
from .mixing import MixingDataset

logger = logging.getLogger(__name__)


def source_name(path: Path) -> str:
    """``path``'s name, less the ``.ogg`` a pack adds to it (``a.wav.ogg`` -> ``a.wav``).

    A packed file (:mod:`gagnet.data.pack`) is keyed by its original's name, so a pack and its
    sources hold out the same files; other names (``a.ogg``, ``icra_0.25.flac``) are unchanged.
    """
    inner = Path(path.stem).suffix.lower()
    if path.suffix.lower() == ".ogg" and inner in AUDIO_EXTENSIONS:
        return path.stem
    return path.name


def _hash_key(path: Path, root: Path | None) -> str:
    if root is not None:
        path = path.relative_to(root)
        return (path.parent / source_name(path)).as_posix()
    return "/".join((*path.parent.parts[-1:], source_name(path)))


def _unit_hash(key: str) -> float:
    """A stable number in [0, 1) for ``key`` (SHA-1, independent of Python's hash seed)."""
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") / 2.0**64


def _speaker_key(path: Path) -> str:
    """A file's speaker: its parent folder, named with the folder above it (``vcc2016/SF1``)."""
    return "/".join(path.parent.parts[-2:])


def split_holdout(
    files: Sequence[str | Path], fraction: float, root: str | Path | None = None, by: str = "file",
) -> tuple[list[Path], list[Path]]:
    """Split ``files`` into ``(train, held)``, ``held`` being about ``fraction`` of them.

    A file is held out when the SHA-1 of its key falls below ``fraction``; the key is its
    path relative to ``root``, or without ``root`` its parent folder and name (e.g.
    ``p225/p225_001.wav``; a packed copy keys as its original, :func:`source_name`), so the
    split survives moving the data, adding files and packing them. With
    ``by="speaker"`` the key is the parent folder (:func:`_speaker_key`), so whole speakers
    are held out: validation then hears voices that training never saw. With
    ``0 < fraction`` and at least two keys, at least one is held out (the lowest hash).
    Order within each part follows ``files``.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"holdout fraction must be in [0, 1], got {fraction}")
    if by not in ("file", "speaker"):
        raise ValueError(f"holdout by must be 'file' or 'speaker', got {by!r}")
    paths = [Path(f) for f in files]
    base = None if root is None else Path(root)
    keys = [_speaker_key(p) if by == "speaker" else _hash_key(p, base) for p in paths]
    scores = [_unit_hash(k) for k in keys]
    held_mask = [s < fraction for s in scores]
    if fraction > 0 and len(set(keys)) > 1 and not any(held_mask):
        lowest = min(scores)
        held_mask = [s == lowest for s in scores]
    train = [p for p, h in zip(paths, held_mask) if not h]
    held = [p for p, h in zip(paths, held_mask) if h]
    return train, held


def split_sources(cfg: DataConfig) -> tuple[tuple[list[Path], list[Path]], tuple[list[Path], list[Path]]]:
    """``((speech_train, speech_held), (noise_train, noise_held))`` of ``cfg``'s sources, as
    training splits them: speech by ``cfg.holdout_by``, noise by file, both ``cfg.holdout_fraction``."""
    from .audio import list_audio

    return (split_holdout(list_audio(cfg.speech), cfg.holdout_fraction, by=cfg.holdout_by),
            split_holdout(list_audio(cfg.noise), cfg.holdout_fraction))


class ValidationSet(Dataset):
    """``cfg.val_count`` mixtures of ``cfg.val_seconds``, made once with seed ``cfg.val_seed``.

    Built by :class:`~gagnet.data.mixing.MixingDataset` (same SNR, level, noise and reverb
    settings), so it is identical in every run for the same files and config. Items are
    the mixing item dicts (``noisy``/``clean`` ``(N,)`` float32, ``snr``).
    """

    def __init__(
        self,
        speech_files: Sequence[str | Path],
        noise_files: Sequence[str | Path],
        cfg: DataConfig,
        sample_rate: int = 16000,
    ) -> None:
        pick = lambda own, train: train if own is None else own  # noqa: E731
        val_cfg = cfg.replace(segment_seconds=cfg.val_seconds, epoch_size=cfg.val_count,
                              snr_db=pick(cfg.val_snr_db, cfg.snr_db), level_db=pick(cfg.val_level_db, cfg.level_db),
                              reverb_prob=pick(cfg.val_reverb_prob, cfg.reverb_prob))
        mixer = MixingDataset(speech_files, noise_files, val_cfg, sample_rate, seed=cfg.val_seed)
        self.sample_rate = sample_rate
        self.items = [mixer[i] for i in range(cfg.val_count)]
        logger.info("validation set: %d mixtures of %.1f s", len(self.items), cfg.val_seconds)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]

    def write(self, folder: str | Path) -> Path:
        """Write ``folder/noisy/NNNN.wav`` and ``folder/clean/NNNN.wav`` (16-bit PCM); returns ``folder``."""
        folder = Path(folder)
        for kind in ("noisy", "clean"):
            (folder / kind).mkdir(parents=True, exist_ok=True)
        for i, item in enumerate(self.items):
            for kind in ("noisy", "clean"):
                sf.write(folder / kind / f"{i:04d}.wav", item[kind].numpy(), self.sample_rate, subtype="PCM_16")
        return folder
