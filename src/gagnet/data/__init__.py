"""Training and evaluation data: audio files, on-the-fly mixing, RIRs, paired folders,
the fixed validation set and batching."""
from .audio import AUDIO_EXTENSIONS, AudioError, list_audio, load_audio
from .collate import collate
from .mixing import MixingDataset, mix_at_snr
from .paired import PairedDataset
from .pool import AudioPool
from .rir import RIRSource, reverberate, simulate_rir
from .validation import ValidationSet, split_holdout, split_sources

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioError",
    "AudioPool",
    "MixingDataset",
    "PairedDataset",
    "RIRSource",
    "ValidationSet",
    "collate",
    "list_audio",
    "load_audio",
    "mix_at_snr",
    "reverberate",
    "simulate_rir",
    "split_holdout",
    "split_sources",
]
