"""Training mixtures made a whole batch at a time, on whatever device the corpora live on.

:class:`BatchMixer` maps a batch of global mixture indices ``(B,)`` to ``noisy`` and
``clean`` ``(B, N)`` with tensor operations only (no per-mixture Python), so the same code
mixes on a GPU during training and on CPU tensors in tests. Every random draw comes from a
counter-based hash of ``(seed, index, stream)`` (:func:`uniform`), so a mixture is a pure
function of its index: the batch it lands in, the device and the run's history do not
matter, which keeps a resumed run exact.

What one mixture is, as in :class:`~gagnet.data.mixing.MixingDataset`:

* **Speech, no padding**: the segment starts at a random point of a random utterance and
  goes on through further random utterances, back to back, until it is full, so it holds
  no digital silence beyond what the recordings themselves contain (their zero runs at the
  ends are trimmed when the corpus is built).
* **Reverberation** with probability ``reverb_prob``: the speech, with enough preceding
  context for the room's tail, is convolved (batched FFT) with a random impulse response
  scaled to a unit direct path; the target stays the dry speech aligned to the direct path.
* **Noise**: ``noises_per_mix`` random noise files (an inclusive range), each cropped at a
  random offset, looped when shorter than the segment, at unit RMS times a gain uniform in
  :data:`~gagnet.data.mixing.NOISE_GAIN_DB`, summed and scaled to a random SNR.
* **Level and peak**: the speech as heard in the mixture is set to a random RMS level, then
  the gain is lowered where needed so that neither wave peaks above
  :data:`~gagnet.data.mixing.PEAK_LIMIT`.

Augmentations (``cfg.augment``, :class:`~gagnet.config.AugmentConfig`; functions in
:mod:`gagnet.data.augment`), in signal order: speed, pitch and formant perturbation of the
speech; a random microphone and channel (EQ, tilt, band limits) on the speech, the target
included; its room (target: dry or early reverberation); the noise with its own channel and
room; noise-only and clean-only segments; after the level, gain jumps on noisy and target
alike and clipping of the mixture alone. Each sub-draw has its own stream (``Stream``, and
multiples of 100 above it).
"""
from __future__ import annotations

import math
from enum import IntEnum

import torch

from ..config import DataConfig
from .augment import apply_response, channel_response, formant_warp_rows, gain_jumps, pitch_shift_rows, resample_rows
from .corpus import SCALE, Corpus
from .mixing import NOISE_GAIN_DB, PEAK_LIMIT, SILENCE_POWER, _check_range

_M32 = 0xFFFFFFFF


class Stream(IntEnum):
    """One independent random stream per quantity drawn for a mixture."""

    SPEECH_FILE = 1
    SPEECH_OFFSET = 2
    REVERB = 3
    RIR_FILE = 4
    NOISE_COUNT = 5
    NOISE_FILE = 6
    NOISE_OFFSET = 7
    NOISE_GAIN = 8
    SNR = 9
    LEVEL = 10
    SEGMENT_KIND = 11
    NOISE_REVERB = 12
    NOISE_RIR = 13
    AUG_SPEED = 14
    AUG_PITCH = 15
    AUG_FORMANT = 16
    AUG_JUMP = 17
    AUG_CLIP = 18
    SPEECH_CHANNEL = 20  # 20..29
    NOISE_CHANNEL = 40  # 40..49


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash of int64 values in [0, 2**32) (multipliers under 2**31, so no
    product overflows int64; the same on every device)."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x1B873593) & _M32
    return x ^ (x >> 16)


def index_key(seed: int, index: torch.Tensor) -> torch.Tensor:
    """The hash of ``(seed, index)`` ``(B,)``, shared by every draw of a mixture: computed once
    per batch, then :func:`uniform_key` adds the stream and the column."""
    idx = index.to(torch.int64)
    h = _mix32(torch.full_like(idx, seed & _M32) ^ 0x5BD1E995)
    h = _mix32(h ^ (idx & _M32))
    return _mix32(h ^ ((idx >> 32) & _M32))


def uniform_key(key: torch.Tensor, stream: int, count: int) -> torch.Tensor:
    """``(B, count)`` float64 uniform in [0, 1) with 53 random bits from :func:`index_key` ``key``."""
    h = _mix32(key ^ int(stream))
    col = torch.arange(count, device=key.device, dtype=torch.int64)
    a = _mix32(h[:, None] ^ ((col * 0x3C6EF372) & _M32))
    b = _mix32(a ^ 0x2545F491)
    return ((a << 21) | (b >> 11)).to(torch.float64) / float(1 << 53)


def uniform(seed: int, index: torch.Tensor, stream: int, count: int) -> torch.Tensor:
    """``(B, count)`` float64 uniform in [0, 1) with 53 random bits, a pure function of
    ``(seed, index[b], stream, column)``; ``index`` is ``(B,)`` int64, non-negative."""
    return uniform_key(index_key(seed, index), stream, count)


def _randint(u: torch.Tensor, high: torch.Tensor | int) -> torch.Tensor:
    """Integers uniform in [0, high) from uniforms ``u`` (``high`` broadcasts)."""
    x = (u * high).to(torch.int64)
    return x.clamp_max(high - 1) if isinstance(high, int) else torch.minimum(x, high - 1)


def _power(x: torch.Tensor) -> torch.Tensor:
    return x.double().square().mean(-1)


def fill_speech(corpus: Corpus, seed: int, index: torch.Tensor, length: int, stream: int = Stream.SPEECH_FILE,
                offset_stream: int = Stream.SPEECH_OFFSET, key: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, length)`` float32: from a random point of a random file, then further random files
    back to back until ``length`` samples are filled."""
    key = index_key(seed, index) if key is None else key
    k = min(length // max(corpus.shortest, 1) + 2, 4096)
    files = _randint(uniform_key(key, stream, k), len(corpus))  # (B, K)
    lens = corpus.lengths[files]
    first = _randint(uniform_key(key, offset_stream, 1)[:, 0], lens[:, 0])
    taken = lens.clone()
    taken[:, 0] -= first
    ends = torch.cumsum(taken, 1)  # (B, K): where each file's part ends in the segment
    t = torch.arange(length, device=index.device, dtype=torch.int64).expand(len(index), length)
    j = torch.searchsorted(ends, t.contiguous(), right=True).clamp_max(k - 1)  # (B, N): which file
    begin = torch.gather(ends - taken, 1, j)  # where that file's part begins in the segment
    pos = torch.gather(corpus.starts[files], 1, j) + (t - begin) + torch.where(j == 0, first[:, None], 0)
    return corpus.audio[pos].float() * SCALE


def loop_crops(corpus: Corpus, files: torch.Tensor, offsets: torch.Tensor, length: int) -> torch.Tensor:
    """``(B, M, length)`` float32: file ``files[b, m]`` from ``offsets[b, m]``, looped."""
    t = torch.arange(length, device=files.device, dtype=torch.int64)
    lens = corpus.lengths[files][..., None]
    pos = corpus.starts[files][..., None] + (offsets[..., None] + t) % lens
    return corpus.audio[pos].float() * SCALE


def _fft_convolve(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Row-wise full linear convolution of ``x`` ``(R, L)`` with ``h`` ``(R, K)``: ``(R, L + K - 1)``."""
    n = x.shape[-1] + h.shape[-1] - 1
    nfft = 1 << (n - 1).bit_length()
    y = torch.fft.irfft(torch.fft.rfft(x, nfft) * torch.fft.rfft(h, nfft), nfft)
    return y[..., :n]


class BatchMixer:
    """Mixes batches of global indices into training pairs, on the corpora's device.

    ``speech`` and ``noise`` are :class:`Corpus` objects (``rirs`` too, or None); the mixing
    settings come from ``cfg`` (segment length, SNR, level, noises per mixture, reverb
    probability) and the seed from ``seed`` (default ``cfg.seed``). Calling it with
    ``index`` ``(B,)`` int64 returns ``{"noisy", "clean": (B, N) float32, "lengths": (B,)
    int64, "snr": (B,) float32}`` with ``N = round(segment_seconds * sample_rate)``; ``snr``
    is ``inf`` where no noise was added.
    """

    def __init__(self, speech: Corpus, noise: Corpus, cfg: DataConfig, rirs: Corpus | None = None,
                 seed: int | None = None) -> None:
        _check_range("snr_db", cfg.snr_db)
        _check_range("level_db", cfg.level_db)
        _check_range("noises_per_mix", cfg.noises_per_mix, low=0)
        if cfg.segment_seconds <= 0:
            raise ValueError(f"DataConfig.segment_seconds must be positive, got {cfg.segment_seconds}")
        self.speech, self.noise, self.cfg = speech, noise, cfg
        self.rirs = rirs if cfg.reverb_prob > 0 or cfg.augment.noise_reverb_prob > 0 else None
        self.seed = cfg.seed if seed is None else int(seed)
        self.sample_rate = speech.sample_rate
        self.length = int(round(cfg.segment_seconds * self.sample_rate))
        self._rir_bank: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> "BatchMixer":
        """Move the corpora (once; a no-op when they are there already)."""
        if self.speech.device != torch.device(device):
            self.speech, self.noise = self.speech.to(device), self.noise.to(device)
            self.rirs = self.rirs.to(device) if self.rirs is not None else None
            self._rir_bank = None
        return self

    @property
    def device(self) -> torch.device:
        return self.speech.device

    def _bank(self) -> torch.Tensor:
        """All impulse responses ``(R, K)`` float32, zero-padded, each scaled to a unit direct
        path and shifted so that the direct path sits at sample 0."""
        if self._rir_bank is None:
            rows = []
            for i in range(len(self.rirs)):
                h = self.rirs.file(i).double()
                d = int(torch.argmax(h.abs()))
                rows.append((h / h[d])[d:])
            k = max(len(r) for r in rows)
            self._rir_bank = torch.stack([torch.nn.functional.pad(r, (0, k - len(r))) for r in rows]).float()
        return self._rir_bank

    def _rows(self, index: torch.Tensor, stream: int, prob: float) -> torch.Tensor:
        """Rows of the batch that get an augmentation of probability ``prob``."""
        if prob <= 0:
            return torch.zeros(0, dtype=torch.int64, device=index.device)
        return torch.nonzero(uniform_key(index, stream, 1)[:, 0] < prob).flatten()

    def _convolve_rows(self, index: torch.Tensor, x: torch.Tensor, rows: torch.Tensor, stream: int,
                       early_ms: float = 0.0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Rows ``rows`` of ``x`` ``(B, ctx + N)`` convolved with a random room each: the last
        ``N`` samples ``(len(rows), N)`` and, with ``early_ms``, the same through only the
        first ``early_ms`` of the room after its direct path (faded out over 2 ms)."""
        n, ctx = self.length, x.shape[1] - self.length
        bank = self._bank()
        which = _randint(uniform_key(index[rows], stream, 1)[:, 0], bank.shape[0])
        wet = _fft_convolve(x[rows], bank[which])[:, ctx : ctx + n]
        if early_ms <= 0:
            return wet, None
        keep = int(early_ms * 1e-3 * self.sample_rate)
        fade = max(int(2e-3 * self.sample_rate), 1)
        t = torch.arange(bank.shape[1], device=bank.device, dtype=torch.float32)
        window = ((keep + fade - t) / fade).clamp(0, 1)
        early = _fft_convolve(x[rows], bank[which] * window)[:, ctx : ctx + n]
        return wet, early

    def _reverberate(self, index: torch.Tensor, speech: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``speech`` ``(B, ctx + N)`` made reverberant where drawn: (speech as heard ``(B, N)``,
        target ``(B, N)``: the dry speech, or its early reverberation with ``reverb_target_ms``)."""
        dry = speech[:, speech.shape[1] - self.length :]
        rows = self._rows(index, Stream.REVERB, self.cfg.reverb_prob)
        if rows.numel() == 0:
            return dry, dry
        wet, early = self._convolve_rows(index, speech, rows, Stream.RIR_FILE, self.cfg.augment.reverb_target_ms)
        target = dry if early is None else dry.index_put((rows,), early.to(dry.dtype))
        return dry.index_put((rows,), wet.to(dry.dtype)), target

    def _channel(self, index: torch.Tensor, x: torch.Tensor, base: int) -> torch.Tensor:
        """A random microphone and channel on rows of ``x``: EQ bands and tilt, band limits."""
        aug = self.cfg.augment
        u = lambda k, count=1: uniform_key(index, base + k, count)  # noqa: E731
        eq = u(0)[:, 0] < aug.eq_prob
        band = u(6)[:, 0] < aug.bandlimit_prob
        rows = torch.nonzero(eq | band).flatten()
        if rows.numel() == 0:
            return x
        m = aug.eq_bands
        count = 1 + _randint(u(1)[:, 0], m)
        used = (torch.arange(m, device=x.device)[None, :] < count[:, None]) & eq[:, None]
        centres = 100.0 * (60.0 ** u(2, m))  # log-uniform over 100 Hz .. 6 kHz
        gains = torch.where(used, aug.eq_db[0] + (aug.eq_db[1] - aug.eq_db[0]) * u(3, m), 0.0)
        widths = 0.3 + 1.2 * u(4, m)
        tilt = torch.where(eq, aug.tilt_db[0] + (aug.tilt_db[1] - aug.tilt_db[0]) * u(5)[:, 0], 0.0)
        narrow = u(7)[:, 0] < aug.narrowband_share
        hp = torch.where(band, aug.highpass_hz[0] + (aug.highpass_hz[1] - aug.highpass_hz[0]) * u(8)[:, 0], 0.0)
        lp = aug.lowpass_hz[0] + (aug.lowpass_hz[1] - aug.lowpass_hz[0]) * u(9)[:, 0]
        lp = torch.where(band, torch.where(narrow, 3800.0, lp), 1e9)  # 3.8 kHz: its edge ends at 4.18 kHz
        args = [v[rows].float() for v in (centres, gains, widths, tilt, hp, lp)]
        filtered = apply_response(x[rows], lambda f: channel_response(f, *args), self.sample_rate)
        return x.index_put((rows,), filtered)

    def _speaker(self, index: torch.Tensor, source: torch.Tensor, length: int) -> torch.Tensor:
        """Speed, pitch and formant perturbation of ``source`` ``(B, >= length)``: ``(B, length)``."""
        aug = self.cfg.augment
        out = source[:, :length]
        rows = self._rows(index, Stream.AUG_SPEED, aug.speed_prob)
        if rows.numel():
            rate = aug.speed[0] + (aug.speed[1] - aug.speed[0]) * uniform_key(index[rows], Stream.AUG_SPEED + 100, 1)[:, 0]
            out = out.index_put((rows,), resample_rows(source[rows], rate.float(), length))
        rows = self._rows(index, Stream.AUG_PITCH, aug.pitch_prob)
        if rows.numel():
            lo, hi = aug.pitch_semitones
            semis = lo + (hi - lo) * uniform_key(index[rows], Stream.AUG_PITCH + 100, 1)[:, 0]
            out = out.index_put((rows,), pitch_shift_rows(out[rows], (2.0 ** (semis / 12.0)).float(), length,
                                                          max_factor=2.0 ** (hi / 12.0)))
        rows = self._rows(index, Stream.AUG_FORMANT, aug.formant_prob)
        if rows.numel():
            factor = aug.formant[0] + (aug.formant[1] - aug.formant[0]) * uniform_key(index[rows],
                                                                                Stream.AUG_FORMANT + 100, 1)[:, 0]
            out = out.index_put((rows,), formant_warp_rows(out[rows], factor.float()))
        return out

    def _noise(self, index: torch.Tensor, length: int) -> torch.Tensor:
        """Sum of ``noises_per_mix`` unit-RMS noise crops with random gains: ``(B, length)``."""
        lo, hi = (int(v) for v in self.cfg.noises_per_mix)
        b = len(index)
        if hi == 0:
            return torch.zeros(b, length, device=index.device)
        count = lo + _randint(uniform_key(index, Stream.NOISE_COUNT, 1)[:, 0], hi - lo + 1)
        files = _randint(uniform_key(index, Stream.NOISE_FILE, hi), len(self.noise))
        offsets = _randint(uniform_key(index, Stream.NOISE_OFFSET, hi), self.noise.lengths[files])
        gain_db = NOISE_GAIN_DB[0] + (NOISE_GAIN_DB[1] - NOISE_GAIN_DB[0]) * uniform_key(index,
                                                                                    Stream.NOISE_GAIN, hi)
        crops = loop_crops(self.noise, files, offsets, length)  # (B, M, L)
        p = _power(crops[..., length - self.length:])
        used = torch.arange(hi, device=index.device)[None, :] < count[:, None]
        scale = torch.where(used & (p >= SILENCE_POWER), 10.0 ** (gain_db / 20.0) / p.clamp_min(SILENCE_POWER).sqrt(),
                            0.0)
        return (crops * scale.float()[..., None]).sum(1)

    @torch.no_grad()
    def __call__(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        if index.device.type == "cpu" and index.numel() and int(index.min()) < 0:  # checked where it costs no sync
            raise IndexError("mixture indices must be non-negative")
        index = index.to(self.device, torch.int64).flatten()
        aug, n, b = self.cfg.augment, self.length, len(index)
        ctx = self._bank().shape[1] if self.rirs is not None else 0
        span = ctx + n
        fill = span
        if aug.speed_prob > 0:  # room for reading faster, and for the interpolator's taps
            fill = int(math.ceil(span * max(1.0, aug.speed[1]))) + 32
        index = index_key(self.seed, index)  # from here on the hash of (seed, index): draws reuse it
        source = self._speaker(index, fill_speech(self.speech, self.seed, index, fill, key=index), span)
        source = self._channel(index, source, Stream.SPEECH_CHANNEL)
        speech, clean = self._reverberate(index, source) if ctx else (source, source)
        noise_reverb = self.rirs is not None and aug.noise_reverb_prob > 0
        noise = self._channel(index, self._noise(index, span if noise_reverb else n), Stream.NOISE_CHANNEL)
        if noise_reverb:
            rows = self._rows(index, Stream.NOISE_REVERB, aug.noise_reverb_prob)
            tail = noise[:, ctx:]
            if rows.numel():
                tail = tail.index_put((rows,), self._convolve_rows(index, noise, rows, Stream.NOISE_RIR)[0])
            noise = tail
        kind = uniform_key(index, Stream.SEGMENT_KIND, 1)[:, 0]
        noise_only = kind < aug.noise_only_prob
        clean_only = ~noise_only & (kind < aug.noise_only_prob + aug.clean_only_prob)
        speech = torch.where(noise_only[:, None], 0.0, speech)
        clean = torch.where(noise_only[:, None], 0.0, clean)
        noise = torch.where(clean_only[:, None], 0.0, noise)
        snr = self.cfg.snr_db[0] + (self.cfg.snr_db[1] - self.cfg.snr_db[0]) * uniform_key(index, Stream.SNR, 1)[:, 0]
        ps, pn = _power(speech), _power(noise)
        noise_gain = torch.where(pn < SILENCE_POWER, 0.0,
                                 torch.where(ps < SILENCE_POWER, 1.0,
                                             (ps / (pn.clamp_min(SILENCE_POWER) * 10.0 ** (snr / 10.0))).sqrt()))
        noisy = speech + noise * noise_gain.float()[:, None]
        level = self.cfg.level_db[0] + (self.cfg.level_db[1] - self.cfg.level_db[0]) * uniform_key(index,
                                                                                                Stream.LEVEL, 1)[:, 0]
        ref = torch.where(ps < SILENCE_POWER, _power(noisy), ps)
        gain = torch.where(ref >= SILENCE_POWER, 10.0 ** (level / 20.0) / ref.clamp_min(SILENCE_POWER).sqrt(), 1.0)
        noisy, clean = noisy * gain.float()[:, None], clean * gain.float()[:, None]
        rows = self._rows(index, Stream.AUG_JUMP, aug.gain_jump_prob)
        if rows.numel():
            sub = index[rows]
            curve = gain_jumps(uniform_key(sub, Stream.AUG_JUMP + 100, 3).float(),
                               uniform_key(sub, Stream.AUG_JUMP + 200, 3).float(),
                               1 + _randint(uniform_key(sub, Stream.AUG_JUMP + 300, 1)[:, 0], 3), n,
                               aug.gain_jump_db, self.sample_rate)
            noisy = noisy.index_put((rows,), noisy[rows] * curve)
            clean = clean.index_put((rows,), clean[rows] * curve)
        rows = self._rows(index, Stream.AUG_CLIP, aug.clip_prob)
        if rows.numel():  # the target stays unclipped: clipping is one more distortion to remove
            at = aug.clip_at[0] + (aug.clip_at[1] - aug.clip_at[0]) * uniform_key(index[rows], Stream.AUG_CLIP + 100, 1)
            limit = (noisy[rows].abs().amax(-1, keepdim=True) * at.float()).clamp_min(1e-12)
            noisy = noisy.index_put((rows,), torch.maximum(torch.minimum(noisy[rows], limit), -limit))
        peak = torch.maximum(noisy.abs().amax(-1), clean.abs().amax(-1)).double()
        limit = torch.where(peak > PEAK_LIMIT, PEAK_LIMIT / peak.clamp_min(1e-30), 1.0).float()[:, None]
        snr = torch.where(noise_gain > 0, snr, math.inf)
        snr = torch.where(noise_only, -math.inf, snr).float()
        return {"noisy": noisy * limit, "clean": clean * limit,
                "lengths": torch.full((b,), n, dtype=torch.int64, device=self.device), "snr": snr}


def zero_fraction(clean: torch.Tensor) -> float:
    """Share of samples of ``clean`` that are exact zeros (digital silence)."""
    return float((clean == 0).double().mean())


def rir_corpus(spec: str | None, count: int, sample_rate: int = 16000, seed: int = 0, workers: int = 0) -> Corpus | None:
    """Impulse responses for the batch mixer: None, ``count`` simulated rooms (``"simulate"``,
    seeded) or the files of a folder / list."""
    if spec is None:
        return None
    if spec == "simulate":
        import numpy as np

        from .rir import simulate_rir

        rng = np.random.default_rng(seed)
        return Corpus.from_arrays([simulate_rir(rng, sample_rate) for _ in range(count)], sample_rate, kind="rir")
    import functools

    from .audio import list_audio
    from .rir import _load_rir

    return Corpus.from_files(list_audio(spec), sample_rate, workers=workers, kind="rir", min_seconds=0.0,
                             loader=functools.partial(_load_rir, sample_rate=sample_rate))


def build_mixer(speech_files, noise_files, cfg: DataConfig, sample_rate: int = 16000, workers: int = 0) -> BatchMixer:
    """Decode the training files once and return their :class:`BatchMixer` (on the CPU)."""
    speech = Corpus.from_files(speech_files, sample_rate, workers=workers, kind="speech")
    noise = Corpus.from_files(noise_files, sample_rate, workers=workers, kind="noise")
    rooms = cfg.reverb_prob > 0 or cfg.augment.noise_reverb_prob > 0
    rirs = rir_corpus(cfg.rir, cfg.rir_count, sample_rate, cfg.seed, workers) if rooms else None
    return BatchMixer(speech, noise, cfg, rirs)
