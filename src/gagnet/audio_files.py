"""Audio files for ``gagnet enhance``: finding inputs, naming outputs, reading and writing.

* :func:`discover` turns command-line arguments (files, folders, glob patterns) into a
  list of :class:`InputFile`, each with the relative path it keeps under an output folder.
* :func:`plan_outputs` maps every input to its output path.
* :func:`probe` reads a header and raises :class:`AudioFileError` (one line) for empty,
  corrupt, non-audio and zero-sample files; :class:`BlockReader` reads float32 blocks and
  rejects NaN/Inf samples.
* :func:`choose_output` keeps the input's container, subtype, rate and channels, falling
  back to FLAC for formats libsndfile can read but not write.
* :class:`AtomicAudioWriter` writes to a hidden temporary file beside the destination
  (``.<name>.part<random><suffix>``) and renames it onto the final name only on success, so
  an interrupted run never leaves a partial file under the final name.
"""
from __future__ import annotations

import glob
import logging
import os
import secrets
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

logger = logging.getLogger(__name__)

#: Extensions collected from folders and glob matches (lower case).
AUDIO_EXTENSIONS = (
    ".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".caf", ".w64", ".rf64",
)

#: The libsndfile container written for an output extension (used when it differs from the input's).
EXTENSION_FORMATS = {
    ".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".oga": "OGG", ".opus": "OGG", ".mp3": "MP3",
    ".aif": "AIFF", ".aiff": "AIFF", ".aifc": "AIFF", ".au": "AU", ".caf": "CAF", ".w64": "W64", ".rf64": "RF64",
}

#: Name part added to outputs written next to their input.
ENHANCED_SUFFIX = "_enhanced"

_TEMP_MARK = ".part"
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
_HIGH_RES = ("PCM_24", "PCM_32", "FLOAT", "DOUBLE")


class AudioFileError(ValueError):
    """A file that cannot be read or written; the message is one line."""


def one_line(text: object) -> str:
    """``text`` with all whitespace runs (newlines included) collapsed to single spaces."""
    return " ".join(str(text).split())


def is_audio_name(path: str | Path) -> bool:
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def has_magic(pattern: str) -> bool:
    """True when ``pattern`` contains glob wildcards (``*``, ``?`` or ``[``)."""
    return any(c in pattern for c in "*?[")


# --------------------------------------------------------------------------- discovery
@dataclass(frozen=True)
class InputFile:
    """An input audio file; ``rel`` is where it goes under an output folder."""

    path: Path
    rel: Path
    explicit: bool = False  # named directly on the command line (not from a folder or a glob)
    root: Path | None = None  # the folder or glob base it was found under (a named file: its folder)


@dataclass
class Discovery:
    """What :func:`discover` found: the files, and one line per argument that gave none."""

    files: list[InputFile] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _walk(folder: Path, exclude: Sequence[Path], skip_enhanced: bool) -> Iterator[Path]:
    """Audio files under ``folder`` (sorted, recursive), skipping hidden entries and ``exclude``."""
    for dirpath, dirnames, filenames in os.walk(folder):
        d = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames if not _hidden(n) and (d / n).resolve() not in exclude)
        for name in sorted(filenames):
            p = d / name
            if _hidden(name) or not is_audio_name(name):
                continue
            if skip_enhanced and Path(name).stem.endswith(ENHANCED_SUFFIX):
                continue
            if p.is_file():
                yield p


def _glob_base(pattern: str) -> Path:
    """The leading folders of ``pattern`` that contain no wildcard."""
    parts = Path(pattern).parts
    base: list[str] = []
    for part in parts[:-1]:
        if has_magic(part):
            break
        base.append(part)
    return Path(*base) if base else Path(".")


def discover(args: Iterable[str | Path], exclude: Sequence[str | Path] = (), skip_enhanced: bool = False) -> Discovery:
    """Input files of command-line arguments: files, folders (recursive) and glob patterns.

    A file named directly is taken whatever its extension; folders and glob matches give
    only files with an :data:`AUDIO_EXTENSIONS` extension, hidden files (``.name``, which
    includes unfinished temporary outputs) left out. Folders under ``exclude`` (the output
    folder) are not entered; with ``skip_enhanced``, ``*_enhanced.*`` files found in folders
    are left out (they are the outputs of an earlier run). Duplicates are dropped, keeping
    the first. An argument that names nothing, or a folder/pattern with no audio, gives one
    line in ``errors``.
    """
    out = Discovery()
    seen: set[Path] = set()
    excl = [Path(e).resolve() for e in exclude]

    def add(p: Path, rel: Path, root: Path, explicit: bool = False) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            out.files.append(InputFile(p, rel, explicit, root))

    for arg in args:
        text = os.path.expanduser(str(arg))
        p = Path(text)
        if p.is_dir():
            found = list(_walk(p, excl, skip_enhanced))
            if not found:
                out.errors.append(f"{arg}: folder has no audio files ({', '.join(AUDIO_EXTENSIONS[:6])}, ...)")
            for f in found:
                add(f, f.relative_to(p), p)
        elif p.exists():
            if p.is_file():
                add(p, Path(p.name), p.parent, explicit=True)
            else:
                out.errors.append(f"{arg}: not a regular file")
        elif has_magic(text):
            base = _glob_base(text)
            n0 = len(out.files)
            matched = False
            for m in sorted(glob.glob(text, recursive=True)):
                mp = Path(m)
                if mp.is_dir():
                    for f in _walk(mp, excl, skip_enhanced):
                        matched = True
                        add(f, _relative(f, base), base)
                elif mp.is_file() and is_audio_name(mp) and not _hidden(mp.name):
                    if any(_is_under(mp, e) for e in excl):
                        continue
                    matched = True
                    add(mp, _relative(mp, base), base)
            if not matched and len(out.files) == n0:
                out.errors.append(f"{arg}: pattern matches no audio files")
        else:
            out.errors.append(f"{arg}: no such file or folder")
    return out


def _is_under(p: Path, folder: Path) -> bool:
    try:
        p.resolve().relative_to(folder)
        return True
    except ValueError:
        return False


def _relative(p: Path, base: Path) -> Path:
    try:
        return p.relative_to(base)
    except ValueError:
        return Path(p.name)


# --------------------------------------------------------------------------- output paths
def output_is_file(out: str | Path | None, files: Sequence[InputFile]) -> bool:
    """True when ``-o out`` names an output file: one input, named directly, and an audio extension."""
    if out is None or Path(out).is_dir():
        return False
    return len(files) == 1 and files[0].explicit and is_audio_name(out)


def plan_outputs(files: Sequence[InputFile], out: str | Path | None) -> list[tuple[InputFile, Path]]:
    """Pair every input with its output path.

    Without ``out``: ``<stem>_enhanced<suffix>`` next to the input. With ``out``: the
    output file itself when :func:`output_is_file`, else ``out / rel`` (the tree below each
    input folder or glob base is kept). When inputs from different folders share a ``rel``
    (``d1/x.wav`` and ``d2/x.wav``), every file of those folders goes under the folder's name
    (``out/d1/x.wav``, ``out/d2/x.wav``; more of its path when the names are equal too).
    Raises :class:`AudioFileError` when ``out`` has an audio extension but there is more than
    one input.
    """
    if out is None:
        return [(f, f.path.with_name(f.path.stem + ENHANCED_SUFFIX + f.path.suffix)) for f in files]
    out = Path(os.path.expanduser(str(out)))
    if output_is_file(out, files):
        return [(files[0], out)]
    if is_audio_name(out) and not out.is_dir() and len(files) > 1:
        raise AudioFileError(f"-o {out} looks like a file name but there are {len(files)} inputs; give a folder")
    labels = _clash_labels(files)
    return [(f, out / labels[f.root] / f.rel if f.root in labels else out / f.rel) for f in files]


def _clash_labels(files: Sequence[InputFile]) -> dict[Path | None, Path]:
    """For the roots of inputs whose ``rel`` clashes: the shortest tails of their paths that tell
    them apart (``d1``, ``d2``; ``a/noisy``, ``b/noisy``)."""
    roots_of: dict[Path, set[Path | None]] = {}
    for f in files:
        roots_of.setdefault(f.rel, set()).add(f.root)
    roots = sorted({r for rs in roots_of.values() if len(rs) > 1 for r in rs}, key=str)
    if not roots:
        return {}
    full = {r: Path(os.path.abspath(r if r is not None else ".")).parts[1:] or ("root",) for r in roots}
    for k in range(1, max(len(parts) for parts in full.values()) + 1):
        tails = {r: Path(*parts[-k:]) for r, parts in full.items()}
        if len(set(tails.values())) == len(tails):
            break
    logger.info("inputs of %s share names: each goes under its folder's name in the output", ", ".join(map(str, roots)))
    return tails


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when ``a`` and ``b`` are the same file (resolved paths; inode when both exist)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


# --------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class AudioInfo:
    """Header of an audio file."""

    path: Path
    samplerate: int
    channels: int
    frames: int
    format: str
    subtype: str
    endian: str = "FILE"

    @property
    def seconds(self) -> float:
        return self.frames / self.samplerate if self.samplerate else 0.0


def probe(path: str | Path) -> AudioInfo:
    """Read the header of ``path``; one-line :class:`AudioFileError` when it is no usable audio."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise AudioFileError(f"{path}: no such file") from None
    except OSError as e:
        raise AudioFileError(f"{path}: cannot read ({one_line(e.strerror or e)})") from None
    if not path.is_file():
        raise AudioFileError(f"{path}: not a regular file")
    if size == 0:
        raise AudioFileError(f"{path}: empty file (0 bytes)")
    try:
        with sf.SoundFile(str(path)) as f:
            info = AudioInfo(path, int(f.samplerate), int(f.channels), int(f.frames), f.format, f.subtype, f.endian)
    except PermissionError as e:
        raise AudioFileError(f"{path}: cannot read ({one_line(e.strerror or e)})") from None
    except (RuntimeError, OSError, ValueError, TypeError, EOFError) as e:  # LibsndfileError is a RuntimeError
        raise AudioFileError(f"{path}: not a readable audio file ({_sf_reason(e)})") from None
    if info.channels < 1 or info.samplerate < 1:
        raise AudioFileError(f"{path}: invalid header ({info.channels} channels at {info.samplerate} Hz)")
    if info.frames <= 0:
        raise AudioFileError(f"{path}: no samples")
    return info


def _sf_reason(e: BaseException) -> str:
    msg = one_line(getattr(e, "error_string", "") or e)
    # soundfile prefixes the path ("Error opening '...': ..."); keep the reason only.
    if msg.startswith("Error opening") and ": " in msg:
        msg = msg.split(": ", 1)[1]
    return msg or type(e).__name__


class BlockReader:
    """Float32 ``(frames, channels)`` blocks of a file, NaN/Inf rejected; use as a context manager."""

    def __init__(self, path: str | Path, block_frames: int) -> None:
        self.path = Path(path)
        self.block_frames = max(1, int(block_frames))
        self._f: sf.SoundFile | None = None
        self.frames_read = 0

    def __enter__(self) -> "BlockReader":
        try:
            self._f = sf.SoundFile(str(self.path))
        except (RuntimeError, OSError, ValueError, TypeError, EOFError) as e:
            raise AudioFileError(f"{self.path}: not a readable audio file ({_sf_reason(e)})") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    @property
    def samplerate(self) -> int:
        assert self._f is not None
        return int(self._f.samplerate)

    def __iter__(self) -> Iterator[np.ndarray]:
        assert self._f is not None, "use BlockReader as a context manager"
        while True:
            try:
                block = self._f.read(self.block_frames, dtype="float32", always_2d=True)
            except (RuntimeError, OSError, ValueError) as e:
                raise AudioFileError(
                    f"{self.path}: read error after {self.frames_read} samples ({_sf_reason(e)})"
                ) from None
            if block.shape[0] == 0:
                return
            if not np.isfinite(block).all():
                bad = self.frames_read + int(np.argmax(~np.isfinite(block).all(axis=1)))
                raise AudioFileError(
                    f"{self.path}: contains NaN or Inf samples (first at {bad / self.samplerate:.3f} s)"
                )
            self.frames_read += block.shape[0]
            yield block


def read_head(path: str | Path, seconds: float, channel: int = 0) -> tuple[np.ndarray, int]:
    """The first ``seconds`` of one channel as float32 (bounded memory), and the rate."""
    with sf.SoundFile(str(path)) as f:
        n = int(seconds * f.samplerate)
        data = f.read(n, dtype="float32", always_2d=True)
        return np.ascontiguousarray(data[:, min(channel, data.shape[1] - 1)]), int(f.samplerate)


# --------------------------------------------------------------------------- writing
@dataclass(frozen=True)
class OutputFormat:
    """What to write: the path (its suffix may change on fallback), container and subtype."""

    path: Path
    format: str
    subtype: str
    endian: str = "FILE"
    warning: str | None = None

    @property
    def clips(self) -> bool:
        """True unless the subtype stores floats: samples are then clipped to [-1, 1]."""
        return self.subtype not in ("FLOAT", "DOUBLE")


def _can_write(fmt: str, subtype: str, samplerate: int, channels: int) -> bool:
    try:
        if not sf.check_format(fmt, subtype):
            return False
    except (ValueError, TypeError):
        return False
    if subtype == "OPUS" and samplerate not in _OPUS_RATES:
        return False
    if fmt == "FLAC" and channels > 8:
        return False
    return True


def flac_fallback(info: AudioInfo, dst: Path, reason: str) -> OutputFormat:
    """FLAC (24-bit for high-resolution inputs, else 16-bit) at ``dst`` with a ``.flac`` suffix."""
    subtype = "PCM_24" if info.subtype in _HIGH_RES else "PCM_16"
    path = dst.with_suffix(".flac")
    return OutputFormat(path, "FLAC", subtype, warning=f"{info.path}: {reason}; writing FLAC instead: {path}")


def choose_output(info: AudioInfo, dst: str | Path) -> OutputFormat:
    """The input's container and subtype, unless ``dst``'s extension asks for another container.

    When libsndfile cannot write the chosen format (e.g. mp3 on an old libsndfile, Opus at
    44.1 kHz), falls back to FLAC with ``.flac`` as the suffix and a warning.
    """
    dst = Path(dst)
    fmt, subtype = info.format, info.subtype
    ext = dst.suffix.lower()
    if ext != info.path.suffix.lower() and ext in EXTENSION_FORMATS and EXTENSION_FORMATS[ext] != fmt:
        fmt = EXTENSION_FORMATS[ext]
        if ext == ".opus":
            subtype = "OPUS"
        elif not _can_write(fmt, subtype, info.samplerate, info.channels):
            subtype = sf.default_subtype(fmt) or subtype
    if _can_write(fmt, subtype, info.samplerate, info.channels):
        return OutputFormat(dst, fmt, subtype, info.endian if fmt == info.format else "FILE")
    if info.channels > 8:
        raise AudioFileError(f"{info.path}: cannot write {fmt}/{subtype} with {info.channels} channels")
    return flac_fallback(info, dst, f"cannot write {fmt}/{subtype} at {info.samplerate} Hz")


def temp_path(dst: str | Path) -> Path:
    """A fresh hidden temporary name beside ``dst`` with the same suffix: ``.<name>.part<hex><suffix>``."""
    dst = Path(dst)
    return dst.with_name(f".{dst.stem}{_TEMP_MARK}{secrets.token_hex(4)}{dst.suffix}")


def is_temp_path(path: str | Path) -> bool:
    name = Path(path).name
    return name.startswith(".") and _TEMP_MARK in name


def read_tags(path: str | Path) -> dict[str, str]:
    """The text tags of an audio file (title, artist, comment, date, ...; libsndfile's names),
    ``{}`` when it has none or cannot be read."""
    try:
        with sf.SoundFile(str(path)) as f:
            return {k: v for k, v in f.copy_metadata().items() if v}
    except Exception:
        return {}


class AtomicAudioWriter:
    """Write audio to a temporary file and rename it onto ``out.path`` only on success.

    Use as a context manager; :meth:`write` takes float ``(frames, channels)`` blocks
    (clipped to [-1, 1] unless the subtype is FLOAT or DOUBLE). Any exception, ``KeyboardInterrupt``
    included, removes the temporary file and leaves the destination as it was. ``tags``
    (``title``, ``artist``, ... as :func:`read_tags` gives them) go into the file where its
    format keeps them.
    """

    def __init__(self, out: OutputFormat, samplerate: int, channels: int, tags: dict[str, str] | None = None) -> None:
        self.out = out
        self.tags = dict(tags or {})
        self.samplerate = int(samplerate)
        self.channels = int(channels)
        self.tmp: Path | None = None
        self._f: sf.SoundFile | None = None
        self.frames_written = 0

    def __enter__(self) -> "AtomicAudioWriter":
        dst = self.out.path
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise AudioFileError(f"{dst}: cannot create output folder {dst.parent} (a file is in the way)") from None
        except OSError as e:
            reason = one_line(e.strerror or e)
            raise AudioFileError(f"{dst}: cannot create output folder {dst.parent} ({reason})") from None
        if dst.is_dir():
            raise AudioFileError(f"{dst}: output is a folder")
        for _ in range(100):
            tmp = temp_path(dst)
            try:  # reserve the name, so that permission problems show as such
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                break
            except FileExistsError:
                continue
            except OSError as e:
                raise AudioFileError(f"{dst}: cannot write to {dst.parent} ({one_line(e.strerror or e)})") from None
        else:  # pragma: no cover
            raise AudioFileError(f"{dst}: cannot find a free temporary name")
        self.tmp = tmp
        try:
            self._f = sf.SoundFile(
                str(tmp), "w", samplerate=self.samplerate, channels=self.channels,
                format=self.out.format, subtype=self.out.subtype, endian=self.out.endian,
            )
        except BaseException as e:
            self._discard()
            if isinstance(e, (RuntimeError, ValueError, TypeError, OSError)):
                raise AudioFileError(
                    f"{dst}: cannot write {self.out.format}/{self.out.subtype} ({_sf_reason(e)})"
                ) from None
            raise
        for key, value in self.tags.items():  # before the first sample, as libsndfile asks
            try:
                setattr(self._f, key, value)
            except Exception:  # a tag the format does not keep: the audio matters, not the tag
                logger.debug("%s: cannot keep the %s tag", dst, key)
        return self

    def write(self, block: np.ndarray) -> None:
        assert self._f is not None, "use AtomicAudioWriter as a context manager"
        if block.shape[0] == 0:
            return
        if self.out.clips:
            block = np.clip(block, -1.0, 1.0)
        try:
            self._f.write(block)
        except (RuntimeError, OSError) as e:
            raise AudioFileError(f"{self.out.path}: write failed ({_sf_reason(e)})") from None
        self.frames_written += block.shape[0]

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self._discard()
            return
        try:
            assert self._f is not None and self.tmp is not None
            self._f.close()
            self._f = None
            os.replace(self.tmp, self.out.path)
            self.tmp = None
        except BaseException as e:
            self._discard()
            if isinstance(e, (RuntimeError, OSError)):
                raise AudioFileError(f"{self.out.path}: cannot finish writing ({_sf_reason(e)})") from None
            raise

    def _discard(self) -> None:
        if self._f is not None:
            try:
                self._f.close()
            except Exception:
                pass
            self._f = None
        if self.tmp is not None:
            try:
                self.tmp.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:  # pragma: no cover
                warnings.warn(f"could not remove temporary file {self.tmp}: {one_line(e)}", stacklevel=2)
            self.tmp = None
