"""A set of audio files drawn at random, decoded through a small LRU cache.

Files that fail to load are logged once and excluded. Drawing is rejection sampling with
the caller's generator, so which file comes out depends only on the generator's state and
on which files are unreadable, never on which failures were already known: items stay a
pure function of their seed in every worker process.
"""
from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .audio import AudioError, load_audio

logger = logging.getLogger(__name__)

#: Random draws before falling back to a scan for the next readable file.
_MAX_DRAWS = 32


class AudioPool:
    """Files of one kind (speech, noise, RIR) with cached decoding and bad-file exclusion.

    ``loader(path) -> (N,) float32`` raises :class:`AudioError` for unusable files (default:
    :func:`load_audio` at ``sample_rate``). At most ``cache_files`` decoded files and
    ``cache_mb`` MiB are kept; cached arrays are read-only.
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        kind: str,
        sample_rate: int = 16000,
        loader: Callable[[Path], np.ndarray] | None = None,
        cache_files: int = 256,
        cache_mb: float = 256.0,
    ) -> None:
        self.files = [Path(f) for f in files]
        self.kind = kind
        if not self.files:
            raise AudioError(f"no {kind} files given")
        self.loader = loader or functools.partial(load_audio, sample_rate=sample_rate)
        self.cache_files = cache_files
        self.cache_bytes = int(cache_mb * 2**20)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cached_bytes = 0
        self.bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.files)

    def __getstate__(self) -> dict:
        # worker processes start with an empty cache instead of a pickled copy
        state = self.__dict__.copy()
        state["_cache"], state["_cached_bytes"] = OrderedDict(), 0
        return state

    def load(self, i: int) -> np.ndarray | None:
        """Decoded file ``i`` (read-only), or None when it is unusable."""
        if i in self.bad:
            return None
        audio = self._cache.get(i)
        if audio is not None:
            self._cache.move_to_end(i)
            return audio
        try:
            audio = np.asarray(self.loader(self.files[i]), dtype=np.float32)
        except AudioError as e:
            self.bad.add(i)
            logger.warning("skipping %s file (%d of %d now excluded): %s", self.kind, len(self.bad), len(self), e)
            return None
        audio.flags.writeable = False
        if audio.nbytes <= self.cache_bytes and self.cache_files > 0:
            self._cache[i] = audio
            self._cached_bytes += audio.nbytes
            while len(self._cache) > self.cache_files or self._cached_bytes > self.cache_bytes:
                self._cached_bytes -= self._cache.popitem(last=False)[1].nbytes
        return audio

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """A uniformly drawn readable file ``(N,)``; raises :class:`AudioError` if none is left."""
        n = len(self.files)
        i = 0
        for _ in range(_MAX_DRAWS):
            if len(self.bad) == n:
                break
            i = int(rng.integers(n))
            audio = self.load(i)
            if audio is not None:
                return audio
        for k in range(1, n + 1):  # many bad files: take the next readable one after the last draw
            if len(self.bad) == n:
                break
            audio = self.load((i + k) % n)
            if audio is not None:
                return audio
        raise AudioError(f"no valid {self.kind} file remains: all {n} failed to load")
