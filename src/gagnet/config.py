"""The one configuration object: signal settings and network hyperparameters.

Every hyperparameter of the project is named here and nowhere else. Named presets:

* ``paper``  -- the published GaGNet (instance norm over the utterance, so not causal).
* ``causal`` -- the same network with cumulative instance norm: truly causal, streamable.
* ``tiny``   -- a very small network for tests and smoke runs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

#: Normalisations whose statistics only use past and present frames.
CAUSAL_NORMS = ("cin", "fln")
#: All normalisations: instance (published), batch, cumulative instance, frame-wise layer.
NORMS = ("in", "bn", "cin", "fln")


def _fields_from(cls: type, d: dict[str, Any], tuples: bool = True) -> dict[str, Any]:
    """Keyword arguments for dataclass ``cls`` from a plain dict; unknown keys raise.

    With ``tuples``, lists become tuples (the frozen configs' sequence fields).
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(fields)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    out = {}
    for k, v in d.items():
        if isinstance(v, str) and str(fields[k].type).startswith("float"):
            try:  # YAML 1.1 reads 1e-3 (no dot) as a string
                v = float(v)
            except ValueError:
                raise ValueError(f"{cls.__name__}.{k} must be a number, got {v!r}") from None
        out[k] = tuple(v) if tuples and isinstance(v, list) else v
    return out


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    """Tuples as lists, for YAML and JSON."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass(frozen=True)
class GaGNetConfig:
    """Signal and network settings of a GaGNet model.

    Signal: ``sample_rate`` Hz, a Hann window of ``win_length`` samples moved by
    ``hop_length``, an ``n_fft``-point FFT (``n_fft // 2 + 1`` bins) and magnitude
    power compression ``compress`` (0.5 = square root).

    Network (names follow the paper and the authors' file): ``c`` channels in the
    2-D encoder, ``k_first``/``k1`` gated-conv kernels (time, freq), ``k2`` UNet-block
    kernels, ``unet_depths`` per encoder layer, ``c_end`` channels of the last gated
    conv (``c_end * 4 = d_feat`` for 161 bins), ``kd1``/``cd1`` kernel and channels of
    the dilated S-TCM convs, ``d_feat`` 1-D feature channels, ``p`` S-TCM groups per
    block, ``q`` glance-gaze modules, ``dilations`` within a group. ``norm`` picks the
    normalisation (see :mod:`gagnet.model.norm`); ``cin_prior`` is the number of
    zero-mean, unit-variance pseudo-frames that condition the cumulative norm's first frames,
    and ``cin_tau`` the time constant (frames) over which its statistics decay (None: they
    never do, and a network may key on how long ago the signal began).
    """

    sample_rate: int = 16000
    win_length: int = 320
    hop_length: int = 160
    n_fft: int = 320
    compress: float = 0.5

    cin: int = 2
    c: int = 64
    c_end: int = 64
    k_first: tuple[int, int] = (2, 5)
    k1: tuple[int, int] = (2, 3)
    k2: tuple[int, int] = (1, 3)
    unet_depths: tuple[int, ...] = (4, 3, 2, 1)
    kd1: int = 3
    cd1: int = 64
    d_feat: int = 256
    p: int = 2
    q: int = 3
    dilations: tuple[int, ...] = (1, 2, 5, 9)
    causal_conv: bool = True
    squeezed_gaze: bool = False
    gain_activation: str = "sigmoid"
    skip: str = "cat"
    norm: str = "in"
    norm_eps: float = 1e-5
    cin_prior: float = 1.0
    cin_tau: float | None = None
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.skip not in ("cat", "add"):
            raise ValueError(f"skip must be 'cat' or 'add', got {self.skip!r}")
        if self.gain_activation not in ("sigmoid", "tanh", "relu"):
            raise ValueError(f"gain_activation must be sigmoid, tanh or relu, got {self.gain_activation!r}")
        if self.k2[0] != 1:
            raise ValueError("UNet-block kernels k2 must have time size 1 (they are not padded in time)")
        if self.hop_length > self.win_length or self.win_length > self.n_fft:
            raise ValueError("need hop_length <= win_length <= n_fft")
        if self.feat_bins * self.c_end != self.d_feat:
            raise ValueError(
                f"the encoder gives {self.c_end} x {self.feat_bins} = {self.c_end * self.feat_bins} "
                f"features per frame but d_feat is {self.d_feat}"
            )

    @property
    def n_freq(self) -> int:
        """Number of STFT bins, ``n_fft // 2 + 1`` (161 for the paper)."""
        return self.n_fft // 2 + 1

    @property
    def feat_bins(self) -> int:
        """Frequency bins left after the encoder's five stride-2 gated convs (4 for 161)."""
        f = (self.n_freq - self.k_first[1]) // 2 + 1
        for _ in range(len(self.unet_depths)):
            f = (f - self.k1[1]) // 2 + 1
        return f

    @property
    def causal(self) -> bool:
        """True when no output frame depends on a later input frame (in eval mode)."""
        return self.causal_conv and self.norm in CAUSAL_NORMS + ("bn",)

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency of a causal configuration: one analysis window."""
        return self.win_length

    def frames(self, n_samples: int) -> int:
        """STFT frames used for a signal of ``n_samples`` (see :mod:`gagnet.dsp`)."""
        return (n_samples + self.win_length - self.hop_length - 1) // self.hop_length + 1

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists) for YAML, JSON and checkpoints."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GaGNetConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        return cls(**_fields_from(cls, d))

    def replace(self, **changes: Any) -> "GaGNetConfig":
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, GaGNetConfig] = {
    "paper": GaGNetConfig(name="paper"),
    "causal": GaGNetConfig(norm="cin", cin_tau=150.0, name="causal"),
    # the authors' own causal setting: batch norm, fixed statistics at inference (stateless)
    "causal-bn": GaGNetConfig(norm="bn", name="causal-bn"),
    "tiny": GaGNetConfig(
        c=8, c_end=8, d_feat=32, cd1=8, p=1, q=2, unet_depths=(2, 1, 1, 1), norm="cin", name="tiny"
    ),
}


def get_config(name: str | GaGNetConfig, **overrides: Any) -> GaGNetConfig:
    """Look up a named preset (``paper``, ``causal``, ``causal-bn``, ``tiny``) and apply overrides."""
    if isinstance(name, GaGNetConfig):
        cfg = name
    else:
        if name not in PRESETS:
            raise ValueError(f"unknown config {name!r}; choose from {sorted(PRESETS)}")
        cfg = PRESETS[name]
    return cfg.replace(**overrides) if overrides else cfg


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentations of the batch mixer (:mod:`gagnet.data.augment`); every ``*_prob`` is the
    share of mixtures that get it (all 0: off). Ranges are uniform unless said otherwise.

    Speaker: ``speed_prob`` resamples the speech by a factor in ``speed`` (tempo and pitch
    together); ``pitch_prob`` shifts the pitch by ``pitch_semitones`` keeping the tempo;
    ``formant_prob`` warps the spectral envelope (vocal-tract length) by a factor in
    ``formant``, keeping the harmonics. Microphone and channel, applied to the speech (the
    target too: the network is to remove noise, not to restore the microphone) and
    independently to the noise: ``eq_prob`` adds 1 to ``eq_bands`` bell-shaped bands of
    ``eq_db`` dB (centres log-uniform over 100 Hz to 6 kHz) and a tilt in ``tilt_db``
    dB per octave about 1 kHz; ``bandlimit_prob`` cuts below a high-pass corner in
    ``highpass_hz`` and above a low-pass corner in ``lowpass_hz``, or, for a
    ``narrowband_share`` of them, at 4 kHz (8 kHz speech upsampled). On the mixture:
    ``clip_prob`` clips at a level in ``clip_at`` times its peak (the target stays unclipped);
    ``gain_jump_prob`` changes the gain of noisy and target alike by up to ``gain_jump_db`` at
    1 to 3 random instants. Rooms: ``noise_reverb_prob`` reverberates the noise with its own
    room; ``reverb_target_ms`` keeps that much of the room response after the direct path in
    the target (0: the dry speech). Segments: ``noise_only_prob`` of them hold noise alone
    (target silent), ``clean_only_prob`` clean speech alone.
    """

    speed_prob: float = 0.0
    speed: tuple[float, float] = (0.9, 1.1)
    pitch_prob: float = 0.0
    pitch_semitones: tuple[float, float] = (-3.0, 3.0)
    formant_prob: float = 0.0
    formant: tuple[float, float] = (0.88, 1.14)
    eq_prob: float = 0.0
    eq_bands: int = 3
    eq_db: tuple[float, float] = (-8.0, 8.0)
    tilt_db: tuple[float, float] = (-2.0, 2.0)
    bandlimit_prob: float = 0.0
    highpass_hz: tuple[float, float] = (40.0, 250.0)
    lowpass_hz: tuple[float, float] = (3500.0, 7800.0)
    narrowband_share: float = 0.3
    clip_prob: float = 0.0
    clip_at: tuple[float, float] = (0.5, 0.9)
    gain_jump_prob: float = 0.0
    gain_jump_db: float = 6.0
    noise_reverb_prob: float = 0.0
    reverb_target_ms: float = 0.0
    noise_only_prob: float = 0.0
    clean_only_prob: float = 0.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.name.endswith("_prob") and not 0.0 <= getattr(self, f.name) <= 1.0:
                raise ValueError(f"augment.{f.name} must be in [0, 1], got {getattr(self, f.name)}")
        if self.noise_only_prob + self.clean_only_prob > 1.0:
            raise ValueError("augment.noise_only_prob + clean_only_prob must not exceed 1")

    @property
    def enabled(self) -> bool:
        return any(getattr(self, f.name) > 0 for f in dataclasses.fields(self) if f.name.endswith("_prob"))


@dataclass(frozen=True)
class DataConfig:
    """On-the-fly mixing and data loading for training.

    ``speech``/``noise``: folders (searched recursively) or text files listing audio paths.
    ``rir``: None, ``"simulate"`` (pyroomacoustics shoebox rooms) or a folder of impulse
    responses, applied with probability ``reverb_prob``. ``snr_db``, ``level_db`` (speech
    RMS in dBFS) and ``noises_per_mix`` are uniform ranges (inclusive for the count).
    ``holdout_fraction`` of the speakers' files (chosen by a hash of the path) is kept out of
    training for the fixed validation set of ``val_count`` mixtures of ``val_seconds``.
    ``epoch_size`` mixtures make one epoch; each mixture is a pure function of
    (``seed``, its index), so data order survives a restart. Each loader worker keeps up to
    ``cache_mb`` MiB of decoded speech and as much noise (raise it when there are many cores
    and much memory, so that files are decoded once).

    ``mixer``: ``"batch"`` decodes every training file once into memory (on the GPU when
    training there) and mixes whole batches with tensor operations
    (:class:`~gagnet.data.batch_mixing.BatchMixer`); ``"files"`` mixes one mixture at a time
    in loader workers from files decoded through a cache
    (:class:`~gagnet.data.mixing.MixingDataset`), for corpora too large for memory. With
    ``rir: simulate`` the batch mixer draws from ``rir_count`` rooms simulated once.
    ``val_snr_db``, ``val_level_db`` and ``val_reverb_prob`` set the validation set's SNR
    range, level range and reverberation apart from training's (default: the same), so that
    runs with different training mixtures validate on identical mixtures.
    ``holdout_by: speaker`` holds out whole speakers (a file's parent folder) instead of
    files, so that validation measures unseen voices; noise files are held out by file.
    ``augment`` (:class:`AugmentConfig`) sets the batch mixer's augmentations.
    """

    speech: tuple[str, ...] = ()
    noise: tuple[str, ...] = ()
    rir: str | None = None
    reverb_prob: float = 0.0
    segment_seconds: float = 2.0
    snr_db: tuple[float, float] = (-5.0, 20.0)
    level_db: tuple[float, float] = (-35.0, -15.0)
    noises_per_mix: tuple[int, int] = (1, 2)
    holdout_fraction: float = 0.03
    val_count: int = 48
    val_seconds: float = 4.0
    val_seed: int = 1234
    val_snr_db: tuple[float, float] | None = None
    val_level_db: tuple[float, float] | None = None
    val_reverb_prob: float | None = None
    epoch_size: int = 2000
    seed: int = 0
    num_workers: int = 1
    cache_mb: float = 256.0
    mixer: str = "batch"
    rir_count: int = 64
    holdout_by: str = "file"
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if self.mixer not in ("batch", "files"):
            raise ValueError(f"data.mixer must be 'batch' or 'files', got {self.mixer!r}")
        if self.holdout_by not in ("file", "speaker"):
            raise ValueError(f"data.holdout_by must be 'file' or 'speaker', got {self.holdout_by!r}")
        if self.augment.enabled and self.mixer != "batch":
            raise ValueError("data.augment needs data.mixer: batch")

    def replace(self, **changes: Any) -> "DataConfig":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class TrainConfig:
    """A training run: model preset (and overrides), data, optimisation and trainer settings.

    The paper's recipe: Adam at ``lr`` 5e-4, gradient-norm clipping at ``grad_clip``, and
    the rate halved (``plateau_factor``) once ``plateau_patience`` validations in a row
    bring no better validation loss. ``val_every_steps`` steps make one epoch of the loop, so that
    every checkpoint sits on an epoch boundary and resumes exactly. ``init_weights`` starts
    a new run from the network weights of a ``model.pt`` or checkpoint (fine-tuning).

    ``lr_schedule: cosine`` replaces the plateau halving by ``warmup_steps`` of linear warm-up
    and a cosine decay to ``min_lr`` over the run's budget: ``max_steps`` or, when set,
    ``max_minutes`` of training time, whichever ends first (for fixed-time GPU leases).

    ``compile`` runs the training steps' network under ``torch.compile`` (same math; see
    :func:`gagnet.train.compile_loss`): faster steps after a first one that compiles.
    ``compile_cache`` names a file of the compile's cache (:mod:`gagnet.compile_cache`): loaded
    before the fit when it exists, written after the first step when anything compiled from
    scratch, so that the next run on the same GPU, torch and Triton skips the cold compile.

    ``val_every_minutes`` (batch mixer only) ends a loop epoch, and so validates and writes
    the checkpoint, once that much training time has passed, instead of after
    ``val_every_steps`` steps (which then only bounds an epoch's length). Rank 0's clock
    decides, checked every ``log_every_steps`` steps; the epoch ends after the one batch the
    loader has already fetched.

    ``residual_noise_weight`` > 0 adds that times :func:`gagnet.loss.residual_noise` (the
    noise left in noise-dominated bins) to the training loss; validation keeps the paper's.
    ``anchor_weight`` > 0 adds that times :func:`gagnet.loss.speech_anchor`: the distance, where
    speech dominates, from what the ``init_weights`` network makes of the same input (fine-tuning
    the pauses without drifting on speech).

    ``trainable`` (glob patterns of parameter names, e.g. ``["stages.*.glance.gain.*"]``) trains
    only the parameters that match one of them and freezes the rest; empty: all train.

    ``ema_decay`` > 0 keeps an exponential moving average of the weights
    (:mod:`gagnet.weight_average`), starting from the run's first weights; validation, the
    best-weights choice, ``model.pt`` and ``model_best.pt`` use it, training the raw weights.

    ``stop_after_minutes`` ends this invocation once its fit has run that long (rank 0's
    wall clock), with a checkpoint and a validation, while ``max_minutes`` stays the budget of the whole run (and
    of its cosine schedule): a run split over several calls of a time-limited machine, each
    resumed with ``--resume``, follows one schedule.
    """

    model: str = "causal"
    model_overrides: dict = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    batch_size: int = 8
    lr: float = 5e-4
    grad_clip: float = 5.0
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    min_lr: float = 1e-6
    max_steps: int = 100_000
    val_every_steps: int = 1000
    val_metric_clips: int = 4
    log_every_steps: int = 25
    precision: str = "auto"
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    seed: int = 0
    out_dir: str = "runs/gagnet"
    threads: int = 0
    init_weights: str | None = None
    lr_schedule: str = "plateau"
    warmup_steps: int = 0
    max_minutes: float | None = None
    compile: bool = False
    compile_cache: str | None = None
    freeze_bn_stats: bool = False
    residual_noise_weight: float = 0.0
    anchor_weight: float = 0.0
    ema_decay: float = 0.0
    trainable: list = field(default_factory=list)
    val_every_minutes: float | None = None
    stop_after_minutes: float | None = None

    def __post_init__(self) -> None:
        if self.lr_schedule not in ("plateau", "cosine"):
            raise ValueError(f"lr_schedule must be 'plateau' or 'cosine', got {self.lr_schedule!r}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError("max_minutes must be positive")
        if self.stop_after_minutes is not None and self.stop_after_minutes <= 0:
            raise ValueError("stop_after_minutes must be positive")
        if self.val_every_minutes is not None and self.val_every_minutes <= 0:
            raise ValueError("val_every_minutes must be positive")
        if self.plateau_patience < 1:
            raise ValueError("plateau_patience must be at least 1")
        if self.residual_noise_weight < 0:
            raise ValueError("residual_noise_weight must be non-negative")
        if self.anchor_weight < 0:
            raise ValueError("anchor_weight must be non-negative")
        if self.anchor_weight > 0 and not self.init_weights:
            raise ValueError("anchor_weight needs init_weights: the network whose speech it keeps")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError("ema_decay must lie in [0, 1) (0: no weight average)")
        if self.batch_size < 1 or self.val_every_steps < 1:
            raise ValueError("batch_size and val_every_steps must be positive")

    def model_config(self) -> GaGNetConfig:
        return get_config(self.model, **self.model_overrides)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Build from a nested dict (YAML); unknown keys raise ``ValueError``."""
        d = dict(d)
        data = d.pop("data", {}) or {}
        top = _fields_from(cls, d, tuples=False)  # e.g. devices: [0, 1] stays a list for Lightning
        data = _fields_from(DataConfig, data)
        data["augment"] = AugmentConfig(**_fields_from(AugmentConfig, dict(data.get("augment") or {})))
        return cls(data=DataConfig(**data), **top)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["data"] = _plain(d["data"])
        d["data"]["augment"] = _plain(d["data"]["augment"])
        return d
