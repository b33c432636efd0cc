"""Synthetic noise for training: deterministic generators and a FLAC noise corpus.

Every generator is a pure function of ``(rng, seconds, sample_rate)`` (babble also takes
its speech files and a loader) that uses numpy only and returns float32 ``(N,)`` with
``N = round(seconds * sample_rate)``, scaled to unit RMS (all zeros only if silent):

* :func:`colored_noise` -- Gaussian noise with power spectral density ``~ f**exponent``,
  ``exponent`` uniform in [-2, 2] unless given: violet (+2), blue (+1), white (0),
  pink (-1, -3 dB/octave), brown (-2, -6 dB/octave); see also :func:`pink_noise` etc.
* :func:`hum` -- 50 or 60 Hz mains hum with random harmonics (the fundamental strongest)
  and slow wander of amplitude and frequency.
* :func:`clicks` -- sparse impulses: :func:`crackle` (Poisson impulses with random decays
  and heavy-tailed amplitudes) and/or :func:`keyboard` (bursts of press/release transients).
* :func:`babble` -- 3 to 8 overlapping talkers built from the given speech files.
* :func:`machine_noise` -- a few stationary sinusoids plus amplitude-modulated coloured noise.

:data:`MIXES` names the kinds of the corpus and what each clip is made of; the generators
by name are in :data:`GENERATORS`. :func:`write_noise_corpus` writes a balanced set of
clips, byte-identical for a seed; :func:`register` adds the ``gagnet make-noise`` command.
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .audio import AudioError, list_audio, load_audio

logger = logging.getLogger(__name__)

Loader = Callable[[Path], np.ndarray]

#: Mean-square power below which a signal counts as silent.
_SILENCE = 1e-20
#: Coloured noise is flat below this frequency (Hz), so brown noise has no DC drift.
COLOR_MIN_HZ = 20.0
#: Named spectral exponents (power ~ f**exponent).
COLORS = {"violet": 2.0, "blue": 1.0, "white": 0.0, "pink": -1.0, "brown": -2.0}
#: Babble skips source files whose mean-square power is below this (-60 dBFS): silent prompts.
BABBLE_MIN_POWER = 1e-6
#: Corpus clips are scaled to this RMS (dBFS), or lower when the peak would exceed ``CLIP_PEAK``.
CLIP_RMS_DB = -24.0
CLIP_PEAK = 0.95


# --------------------------------------------------------------------------- helpers


def _n_samples(seconds: float, sample_rate: int) -> int:
    if seconds <= 0 or sample_rate <= 0:
        raise ValueError(f"seconds and sample_rate must be positive, got {seconds}, {sample_rate}")
    return int(round(seconds * sample_rate))


def _unit(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to unit RMS as float32 (unchanged zeros when silent)."""
    x = np.asarray(x, dtype=np.float64)
    p = float(np.mean(np.square(x))) if x.size else 0.0
    if p > _SILENCE:
        x = x / np.sqrt(p)
    return x.astype(np.float32)


def _wander(rng: np.random.Generator, n: int, sample_rate: int, max_hz: float, parts: int = 3) -> np.ndarray:
    """A smooth random curve in [-1, 1]: a sum of ``parts`` slow sinusoids (0.02..``max_hz`` Hz)."""
    t = np.arange(n) / sample_rate
    freqs = rng.uniform(0.02, max_hz, parts)
    phases = rng.uniform(0.0, 2 * np.pi, parts)
    weights = rng.uniform(0.3, 1.0, parts)
    curve = np.zeros(n)
    for f, ph, w in zip(freqs, phases, weights):
        curve += w * np.sin(2 * np.pi * f * t + ph)
    return curve / weights.sum()


def _shaped_noise(rng: np.random.Generator, n: int, sample_rate: int, gain: Callable[[np.ndarray], np.ndarray]):
    """White Gaussian noise whose spectrum is multiplied by ``gain(freqs_hz)`` (amplitude)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    spec *= gain(freqs)
    spec[0] = 0.0
    return np.fft.irfft(spec, n)


def _add_at(out: np.ndarray, start: int, kernel: np.ndarray) -> None:
    """``out[start:start + len(kernel)] += kernel``, cut at the end of ``out``."""
    end = min(start + len(kernel), len(out))
    if end > start >= 0:
        out[start:end] += kernel[: end - start]


# --------------------------------------------------------------------------- generators


def colored_noise(
    rng: np.random.Generator, seconds: float, sample_rate: int = 16000, exponent: float | None = None
) -> np.ndarray:
    """Gaussian noise with power spectral density ``~ f**exponent`` above ``COLOR_MIN_HZ``.

    ``exponent`` is drawn uniform in [-2, 2] when None: 0 white, -1 pink (-3 dB/octave),
    -2 brown (-6 dB/octave), +1 blue, +2 violet. Flat below ``COLOR_MIN_HZ``; no DC.
    The FFT shaping makes the clip loop seamlessly.
    """
    n = _n_samples(seconds, sample_rate)
    if exponent is None:
        exponent = float(rng.uniform(-2.0, 2.0))
    half = exponent / 2.0
    return _unit(_shaped_noise(rng, n, sample_rate, lambda f: np.maximum(f, COLOR_MIN_HZ) ** half))


def white_noise(rng: np.random.Generator, seconds: float, sample_rate: int = 16000) -> np.ndarray:
    return colored_noise(rng, seconds, sample_rate, COLORS["white"])


def pink_noise(rng: np.random.Generator, seconds: float, sample_rate: int = 16000) -> np.ndarray:
    return colored_noise(rng, seconds, sample_rate, COLORS["pink"])


def brown_noise(rng: np.random.Generator, seconds: float, sample_rate: int = 16000) -> np.ndarray:
    return colored_noise(rng, seconds, sample_rate, COLORS["brown"])


def blue_noise(rng: np.random.Generator, seconds: float, sample_rate: int = 16000) -> np.ndarray:
    return colored_noise(rng, seconds, sample_rate, COLORS["blue"])


def violet_noise(rng: np.random.Generator, seconds: float, sample_rate: int = 16000) -> np.ndarray:
    return colored_noise(rng, seconds, sample_rate, COLORS["violet"])


def hum(
    rng: np.random.Generator, seconds: float, sample_rate: int = 16000, mains_hz: float | None = None
) -> np.ndarray:
    """Mains hum at 50 or 60 Hz (``mains_hz``, random when None) with 2 to 15 harmonics.

    Harmonic ``k >= 2`` has amplitude ``U(0.02, 0.7) * k**-U(0.3, 1.2)`` (odd ones boosted
    for a buzzier sound half of the time), always below the fundamental's 1. The frequency
    wanders slowly by up to about ±0.3 % and the amplitude by up to ±30 %.
    """
    n = _n_samples(seconds, sample_rate)
    f0 = float(mains_hz) if mains_hz is not None else float(rng.choice([50.0, 60.0]))
    n_harm = int(rng.integers(2, 16))
    odd_boost = rng.random() < 0.5
    freq_dev = rng.uniform(0.0005, 0.003)
    am_depth = rng.uniform(0.05, 0.3)
    inst = f0 * (1.0 + freq_dev * _wander(rng, n, sample_rate, 0.5))
    phase = 2 * np.pi * np.cumsum(inst) / sample_rate
    env = 1.0 + am_depth * _wander(rng, n, sample_rate, 1.0)
    out = np.sin(phase + rng.uniform(0, 2 * np.pi))
    for k in range(2, n_harm + 1):
        amp = rng.uniform(0.02, 0.7) * k ** -rng.uniform(0.3, 1.2)
        ph = rng.uniform(0, 2 * np.pi)
        if odd_boost and k % 2 == 1:
            amp = min(1.5 * amp, 0.9)
        if k * f0 * (1 + freq_dev) < 0.45 * sample_rate:
            out += amp * np.sin(k * phase + ph)
    return _unit(out * env)


def _decay_kernel(rng: np.random.Generator, tau_s: float, sample_rate: int, tone_hz: float | None) -> np.ndarray:
    """An impulse response of ``6 * tau_s``: decaying noise, or a decaying sinusoid at ``tone_hz``."""
    m = max(int(6 * tau_s * sample_rate), 1)
    t = np.arange(m) / sample_rate
    env = np.exp(-t / tau_s)
    if tone_hz is None:
        body = rng.standard_normal(m)
        body[0] = abs(body[0]) + 1.0  # a sharp onset
    else:
        body = np.sin(2 * np.pi * tone_hz * t + rng.uniform(0, 2 * np.pi))
    return env * body


def crackle(rng: np.random.Generator, seconds: float, sample_rate: int = 16000) -> np.ndarray:
    """Sparse impulses (vinyl/static crackle): Poisson times at 3 to 40 per second, heavy-tailed
    (Pareto) amplitudes of random sign, each a decaying noise or ringing burst of 0.05 to 3 ms."""
    n = _n_samples(seconds, sample_rate)
    rate = rng.uniform(3.0, 40.0)
    alpha = rng.uniform(1.5, 3.0)
    count = int(rng.poisson(rate * n / sample_rate))
    times = np.sort(rng.integers(0, n, count))
    out = np.zeros(n)
    for start in times:
        amp = min(rng.pareto(alpha) + 1.0, 30.0) * rng.choice([-1.0, 1.0])
        tau = np.exp(rng.uniform(np.log(5e-5), np.log(3e-3)))
        tone = float(rng.uniform(500.0, 0.4 * sample_rate)) if rng.random() < 0.3 else None
        _add_at(out, int(start), amp * _decay_kernel(rng, tau, sample_rate, tone))
    return _unit(out)


def keyboard(rng: np.random.Generator, seconds: float, sample_rate: int = 16000) -> np.ndarray:
    """Typing: bursts of keystrokes (3 to 10 per second, pauses of 0.2 to 0.9 s between
    bursts), each a press and a quieter release 40 to 120 ms later; every transient is a
    1 to 6 ms decaying noise burst plus a ringing at one of the keyboard's 2 to 4 resonances."""
    n = _n_samples(seconds, sample_rate)
    resonances = rng.uniform(800.0, min(6000.0, 0.4 * sample_rate), int(rng.integers(2, 5)))
    speed = rng.uniform(3.0, 10.0)
    out = np.zeros(n)
    t = rng.uniform(0.0, 0.3)
    burst_left = int(rng.integers(3, 15))
    while t * sample_rate < n:
        amp = rng.uniform(0.4, 1.0)
        for which, gain in ((0, 1.0), (1, rng.uniform(0.3, 0.7))):
            at = t + which * rng.uniform(0.04, 0.12)
            tau = rng.uniform(1e-3, 6e-3)
            res = float(resonances[rng.integers(len(resonances))]) * rng.uniform(0.95, 1.05)
            click = _decay_kernel(rng, tau, sample_rate, None)
            ring = rng.uniform(0.5, 2.0) * _decay_kernel(rng, tau * rng.uniform(0.5, 1.5), sample_rate, res)
            kernel = np.zeros(max(click.size, ring.size))
            kernel[: click.size] += click
            kernel[: ring.size] += ring
            _add_at(out, int(at * sample_rate), amp * gain * kernel)
        burst_left -= 1
        if burst_left <= 0:
            t += rng.uniform(0.2, 0.9)
            burst_left = int(rng.integers(3, 15))
        else:
            t += rng.gamma(4.0, 1.0 / (4.0 * speed))
    return _unit(out)


def clicks(rng: np.random.Generator, seconds: float, sample_rate: int = 16000) -> np.ndarray:
    """Crackle (40 %), keyboard typing (40 %) or both (20 %), at unit RMS."""
    u = rng.random()
    if u < 0.4:
        return crackle(rng, seconds, sample_rate)
    if u < 0.8:
        return keyboard(rng, seconds, sample_rate)
    a = crackle(rng, seconds, sample_rate)
    b = keyboard(rng, seconds, sample_rate)
    return _unit(a * 10 ** (rng.uniform(-10, 0) / 20) + b)


def machine_noise(rng: np.random.Generator, seconds: float, sample_rate: int = 16000) -> np.ndarray:
    """Machinery: 2 to 6 stationary sinusoids (harmonics of a 10 to 60 Hz rotation rate, or
    free tones at 100 Hz to 5 kHz) over coloured noise (exponent in [-2, 0.5]) with a resonant
    band, amplitude-modulated at the rotation rate (depth 0.1 to 0.9); tone-to-noise -15 to +5 dB."""
    n = _n_samples(seconds, sample_rate)
    t = np.arange(n) / sample_rate
    rot = rng.uniform(10.0, 60.0)
    nyq = 0.45 * sample_rate
    tones = np.zeros(n)
    for _ in range(int(rng.integers(2, 7))):
        if rng.random() < 0.5:
            f = rot * int(rng.integers(1, 40))
        else:
            f = float(np.exp(rng.uniform(np.log(100.0), np.log(min(5000.0, nyq)))))
        f = min(f, nyq)
        tones += 10 ** (rng.uniform(-20, 0) / 20) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))

    exponent = rng.uniform(-2.0, 0.5)
    fc = float(np.exp(rng.uniform(np.log(200.0), np.log(min(4000.0, nyq)))))
    width = fc * rng.uniform(0.1, 0.5)
    boost = 10 ** (rng.uniform(0, 20) / 20)

    def gain(f: np.ndarray) -> np.ndarray:
        return np.maximum(f, COLOR_MIN_HZ) ** (exponent / 2) * (1 + boost * np.exp(-0.5 * ((f - fc) / width) ** 2))

    noise = _unit(_shaped_noise(rng, n, sample_rate, gain)).astype(np.float64)
    depth = rng.uniform(0.1, 0.9)
    mod = 1.0 + depth * np.sin(2 * np.pi * rot * t + rng.uniform(0, 2 * np.pi))
    if rng.random() < 0.5:  # an uneven rotation: add the second harmonic of the modulation
        mod += 0.5 * depth * np.sin(4 * np.pi * rot * t + rng.uniform(0, 2 * np.pi))
    noise = _unit(noise * np.maximum(mod, 0.0)).astype(np.float64)
    tnr = 10 ** (rng.uniform(-15, 5) / 20)
    return _unit(tnr * _unit(tones) + noise)


def _trim_silence(x: np.ndarray, sample_rate: int, floor_db: float = -40.0) -> np.ndarray:
    """``x`` without leading/trailing 10-ms frames ``floor_db`` below its loudest frame."""
    hop = max(sample_rate // 100, 1)
    frames = len(x) // hop
    if frames < 2:
        return x
    power = np.mean(np.square(x[: frames * hop].astype(np.float64)).reshape(frames, hop), axis=1)
    active = np.flatnonzero(power > power.max() * 10 ** (floor_db / 10))
    if active.size == 0:
        return x
    return x[active[0] * hop : (active[-1] + 1) * hop]


def _talker(
    rng: np.random.Generator,
    n: int,
    sample_rate: int,
    files: Sequence[Path],
    load: Callable[[Path], np.ndarray | None],
    warp: tuple[float, float],
) -> np.ndarray:
    """One talker: speech files drawn from ``files`` played one after another (0 to 0.3 s
    apart, silence trimmed) from a random offset into the first, looped if needed, with one
    random speed/pitch factor from ``warp``. Zeros if no file could be loaded."""
    pieces: list[np.ndarray] = []
    total = 0
    failures = 0
    first = True
    factor = float(rng.uniform(*warp))
    while total < n and failures < 8:
        audio = load(files[int(rng.integers(len(files)))])
        if audio is None:
            failures += 1
            continue
        x = _trim_silence(np.asarray(audio, dtype=np.float64), sample_rate)
        if x.size < 2:
            failures += 1
            continue
        if factor != 1.0:  # linear-interpolation resampling: speed and pitch change together
            x = np.interp(np.arange(0.0, len(x) - 1, factor), np.arange(len(x)), x)
        if first:
            x = np.roll(x, -int(rng.integers(len(x))))  # random offset, the file looped
            first = False
        else:
            gap = np.zeros(int(rng.uniform(0.0, 0.3) * sample_rate))
            pieces.append(gap)
            total += gap.size
        pieces.append(x)
        total += x.size
    if not pieces:
        return np.zeros(n)
    stream = np.concatenate(pieces)
    if stream.size < n:  # too few files could be loaded: loop what there is
        stream = np.resize(stream, n)
    return stream[:n]


def babble(
    rng: np.random.Generator,
    seconds: float,
    sample_rate: int = 16000,
    sources: Sequence[str | Path] = (),
    loader: Loader | None = None,
    talkers: tuple[int, int] = (3, 8),
    level_db: tuple[float, float] = (-10.0, 0.0),
    warp: tuple[float, float] = (0.9, 1.12),
) -> np.ndarray:
    """Babble: the sum of ``talkers`` (3 to 8, inclusive) talkers, each made of files drawn from
    ``sources``, randomly offset and looped, brought to unit RMS, then given a gain uniform
    in ``level_db`` and a speed/pitch factor uniform in ``warp`` (``(1, 1)`` turns it off).

    ``sources`` should be speech of speakers that are *not* training targets.
    ``loader(path) -> (N,) float`` at ``sample_rate`` (default :func:`load_audio`); files it
    rejects with :class:`AudioError` and (near) silent files (below ``BABBLE_MIN_POWER``,
    e.g. the Asterisk ``silence/`` prompts) are skipped. Raises :class:`AudioError` when no source
    could be used.
    """
    n = _n_samples(seconds, sample_rate)
    files = [Path(s) for s in sources]
    if not files:
        raise AudioError("babble needs at least one speech source file")
    loader = loader or functools.partial(load_audio, sample_rate=sample_rate)
    bad: set[Path] = set()

    def load(path: Path) -> np.ndarray | None:
        if path in bad:
            return None
        try:
            audio = loader(path)
        except AudioError as e:
            bad.add(path)
            logger.warning("babble: skipping %s", e)
            return None
        x = np.asarray(audio, dtype=np.float64)
        if x.size == 0 or float(np.mean(np.square(x))) < BABBLE_MIN_POWER:
            bad.add(path)
            logger.debug("babble: skipping %s: (near) silent", path)
            return None
        return audio

    out = np.zeros(n)
    used = 0
    for _ in range(int(rng.integers(talkers[0], talkers[1] + 1))):
        voice = _unit(_talker(rng, n, sample_rate, files, load, warp)).astype(np.float64)
        gain = 10 ** (rng.uniform(*level_db) / 20)
        if np.any(voice):
            out += gain * voice
            used += 1
    if used == 0:
        raise AudioError(f"babble: none of the {len(files)} source files could be used")
    return _unit(out)


# --------------------------------------------------------------------------- corpus

#: Generators by name, each ``f(rng, seconds, sample_rate)``; babble also takes ``sources``, ``loader``.
GENERATORS: dict[str, Callable[..., np.ndarray]] = {
    "colored": colored_noise,
    "hum": hum,
    "clicks": clicks,
    "machine": machine_noise,
    "babble": babble,
}

#: Corpus kinds: each clip of a kind sums its components ``(generator, low_db, high_db)``,
#: each at unit RMS times a gain uniform in ``[low_db, high_db]`` (relative to the first).
MIXES: dict[str, tuple[tuple[str, float, float], ...]] = {
    "colored": (("colored", 0.0, 0.0),),
    "hum": (("hum", 0.0, 0.0), ("colored", -35.0, -15.0)),
    "clicks": (("clicks", 0.0, 0.0), ("colored", -45.0, -25.0)),
    "machine": (("machine", 0.0, 0.0),),
    "babble": (("babble", 0.0, 0.0),),
    "babble_machine": (("babble", 0.0, 0.0), ("machine", -15.0, -3.0)),
    "hum_clicks": (("hum", 0.0, 0.0), ("clicks", -10.0, 0.0), ("colored", -35.0, -20.0)),
}


def _needs_babble(kind: str) -> bool:
    return any(name == "babble" for name, _, _ in MIXES[kind])


def make_clip(
    kind: str,
    rng: np.random.Generator,
    seconds: float,
    sample_rate: int = 16000,
    babble_sources: Sequence[str | Path] = (),
    loader: Loader | None = None,
) -> np.ndarray:
    """One clip of corpus ``kind`` (a key of :data:`MIXES`), float32 at unit RMS."""
    if kind not in MIXES:
        raise ValueError(f"unknown noise kind {kind!r}; choose from {sorted(MIXES)}")
    n = _n_samples(seconds, sample_rate)
    out = np.zeros(n)
    for name, low, high in MIXES[kind]:
        if name == "babble":
            part = babble(rng, seconds, sample_rate, sources=babble_sources, loader=loader)
        else:
            part = GENERATORS[name](rng, seconds, sample_rate)
        gain = 10 ** ((low if low == high else rng.uniform(low, high)) / 20)
        out += gain * part.astype(np.float64)
    return _unit(out)


def _clip_rng(seed: int, kind: str, index: int) -> np.random.Generator:
    """The generator of clip ``index`` of ``kind``: independent of the other clips and kinds."""
    return np.random.default_rng([int(seed), zlib.crc32(kind.encode("utf-8")), int(index)])


def _to_pcm16(x: np.ndarray) -> np.ndarray:
    """Unit-RMS float to int16 at ``CLIP_RMS_DB`` dBFS RMS, peak at most ``CLIP_PEAK``."""
    x = np.asarray(x, dtype=np.float64)
    gain = 10 ** (CLIP_RMS_DB / 20)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak * gain > CLIP_PEAK:
        gain = CLIP_PEAK / peak
    return np.clip(np.round(x * gain * 32767.0), -32768, 32767).astype(np.int16)


class _CachedLoader:
    """``load_audio`` at a rate, keeping the last ``max_files`` decoded files."""

    def __init__(self, sample_rate: int, max_files: int = 256) -> None:
        self.sample_rate = sample_rate
        self.max_files = max_files
        self.cache: OrderedDict[Path, np.ndarray] = OrderedDict()

    def __call__(self, path: Path) -> np.ndarray:
        audio = self.cache.get(path)
        if audio is None:
            audio = load_audio(path, self.sample_rate)
            self.cache[path] = audio
            if len(self.cache) > self.max_files:
                self.cache.popitem(last=False)
        else:
            self.cache.move_to_end(path)
        return audio


def plan_corpus(minutes: float, clip_seconds: float, kinds: Sequence[str]) -> dict[str, int]:
    """Clips per kind: ``round(minutes * 60 / clip_seconds)`` (at least one) shared out evenly,
    the first kinds taking the remainder."""
    if minutes <= 0 or clip_seconds <= 0:
        raise ValueError(f"minutes and clip_seconds must be positive, got {minutes}, {clip_seconds}")
    if not kinds:
        raise ValueError("no noise kinds to write")
    total = max(1, int(round(minutes * 60.0 / clip_seconds)))
    base, extra = divmod(total, len(kinds))
    return {k: base + (i < extra) for i, k in enumerate(kinds)}


def write_noise_corpus(
    out_dir: str | Path,
    minutes: float,
    babble_sources: str | Path | Sequence[str | Path] | None,
    seed: int = 0,
    sample_rate: int = 16000,
    clip_seconds: float = 10.0,
    kinds: Sequence[str] | None = None,
    overwrite: bool = False,
    loader: Loader | None = None,
) -> dict:
    """Write about ``minutes`` of noise as ``out_dir/<kind>/<kind>_<nnnn>.flac`` (mono 16-bit
    FLAC, ``clip_seconds`` each, RMS ``CLIP_RMS_DB`` dBFS or peak ``CLIP_PEAK``), the same
    number of clips per kind (±1), plus ``out_dir/corpus.json`` describing the run.

    ``kinds`` defaults to all of :data:`MIXES`; those with babble are left out when
    ``babble_sources`` (folders, ``.txt`` lists or files, see :func:`list_audio`) is empty or
    None. Clip ``n`` of a kind depends only on ``(seed, kind, n)`` and the babble files, so
    the output is byte-identical for a seed. Refuses (``FileExistsError``) a non-empty
    ``out_dir`` unless ``overwrite``, which first deletes the FLACs of the kind folders and
    ``corpus.json``. Returns the summary written to ``corpus.json``.
    """
    out = Path(out_dir)
    if babble_sources is None:
        babble_sources = []
    elif isinstance(babble_sources, (str, Path)):
        babble_sources = [babble_sources]
    sources = list_audio(babble_sources) if len(babble_sources) else []
    if kinds is None:
        kinds = [k for k in MIXES if sources or not _needs_babble(k)]
        if not sources:
            logger.warning("no babble sources: leaving out %s", [k for k in MIXES if _needs_babble(k)])
    kinds = list(dict.fromkeys(kinds))
    for k in kinds:
        if k not in MIXES:
            raise ValueError(f"unknown noise kind {k!r}; choose from {sorted(MIXES)}")
        if _needs_babble(k) and not sources:
            raise AudioError(f"noise kind {k!r} needs babble sources")
    counts = plan_corpus(minutes, clip_seconds, kinds)
    _n_samples(clip_seconds, sample_rate)

    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty (--overwrite, or overwrite=True, replaces the corpus)")
        (out / "corpus.json").unlink(missing_ok=True)
        for k in MIXES:
            for old in sorted((out / k).glob(f"{k}_*.flac")) if (out / k).is_dir() else []:
                old.unlink()
    load = loader or _CachedLoader(sample_rate)

    import soundfile as sf  # file writing only; the generators need numpy alone

    written: dict[str, int] = {}
    for kind in kinds:
        folder = out / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(counts[kind]):
            clip = make_clip(kind, _clip_rng(seed, kind, i), clip_seconds, sample_rate, sources, load)
            sf.write(folder / f"{kind}_{i:04d}.flac", _to_pcm16(clip), sample_rate, format="FLAC", subtype="PCM_16")
        written[kind] = counts[kind]
        logger.info("make-noise: %s: %d clips", kind, counts[kind])
    n = _n_samples(clip_seconds, sample_rate)
    summary = {
        "seed": int(seed),
        "sample_rate": int(sample_rate),
        "clip_seconds": n / sample_rate,
        "clips": written,
        "total_clips": sum(written.values()),
        "total_minutes": round(sum(written.values()) * n / sample_rate / 60.0, 3),
        "mixes": {k: [list(c) for c in MIXES[k]] for k in kinds},
        "babble_sources": len(sources),
        "babble_folders": sorted({str(p.parent) for p in sources})[:50],
    }
    (out / "corpus.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


# --------------------------------------------------------------------------- CLI


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``make-noise`` subcommand to a ``gagnet`` sub-parser set."""
    p = subparsers.add_parser(
        "make-noise",
        help="write a synthetic noise corpus (coloured, hum, clicks, machine, babble)",
        description="Write about MINUTES of synthetic noise clips as OUT/<kind>/<kind>_<n>.flac, balanced "
        f"over the kinds {', '.join(MIXES)} (babble kinds only with --babble). Deterministic for a seed. "
        "Babble sources must be speakers that are NOT training targets.",
    )
    p.add_argument("out", metavar="OUT", help="output folder (must be empty unless --overwrite)")
    p.add_argument("--minutes", type=float, required=True, help="total duration to write")
    p.add_argument(
        "--babble", nargs="+", action="extend", default=[], metavar="DIR_OR_LIST",
        help="speech folders, .txt lists or files for babble (non-target speakers; repeatable)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--clip-seconds", type=float, default=10.0, help="length of each clip (default 10)")
    p.add_argument("--sample-rate", type=int, default=16000, help="sample rate in Hz (default 16000)")
    p.add_argument("--kinds", metavar="A,B,...", help=f"comma-separated subset of: {', '.join(MIXES)}")
    p.add_argument("--overwrite", action="store_true", help="replace an existing corpus in OUT")
    p.set_defaults(func=cmd_make_noise)
    return p


def cmd_make_noise(args: argparse.Namespace) -> int:
    """Run :func:`write_noise_corpus` for parsed arguments and print a summary; 2 on bad input."""
    kinds = getattr(args, "kinds", None)
    try:
        summary = write_noise_corpus(
            args.out,
            args.minutes,
            list(getattr(args, "babble", None) or []),
            seed=getattr(args, "seed", 0),
            sample_rate=getattr(args, "sample_rate", 16000),
            clip_seconds=getattr(args, "clip_seconds", 10.0),
            kinds=[k.strip() for k in kinds.split(",") if k.strip()] if kinds else None,
            overwrite=getattr(args, "overwrite", False),
        )
    except (AudioError, ValueError, FileExistsError, OSError) as e:
        print(f"gagnet make-noise: error: {e}", file=sys.stderr)
        return 2
    per_kind = ", ".join(f"{k} {c}" for k, c in summary["clips"].items())
    print(
        f"wrote {summary['total_clips']} clips, {summary['total_minutes']:.1f} min to {args.out} "
        f"({per_kind}; {summary['babble_sources']} babble source files)"
    )
    return 0
