"""``gagnet stream``: real-time enhancement of audio on stdin to stdout.

Reads a WAV stream (or raw PCM with ``--raw``) from stdin in blocks of 10 ms and writes the
enhanced audio to stdout in the same format: a WAV header when WAV came in, the same sample
rate, channel count and sample format::

    sox noisy.flac -t wav - | gagnet stream --model m.pt | sox -t wav - clean.wav
    arecord -f S16_LE -r 16000 -c 1 -t raw | gagnet stream --raw --model m.pt | aplay -f S16_LE -r 16000
    ffmpeg -i talk.mp4 -f wav - | gagnet stream --model m.pt --onnx > clean.wav

Each channel has its own :class:`~gagnet.streaming.StreamingEnhancer` (or, with ``--onnx`` or
a ``.onnx`` model, :class:`~gagnet.export.OnnxStreamingEnhancer`); other rates are resampled
to 16 kHz and back with ``soxr.ResampleStream``. The output lines up with the input and has
exactly its length: the network's delay is dropped at the start and its tail flushed at EOF.
In real time the output lags the input by the algorithmic latency (20 ms, one STFT window)
plus buffering: the 10 ms read block, the resamplers' filter delay when the rate is not
16 kHz, and the compute time of a hop. Only causal models stream.

A WAV written to a pipe cannot be rewound, so its header gives the length as unknown
(0xFFFFFFFF, like ffmpeg; readers stop at EOF); when stdout is a regular file the header is
corrected at the end.
"""
from __future__ import annotations

import argparse
import os
import stat
import struct
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from .attenuation import FROM_MODEL, floor_gain, parse_atten_lim
from .pipeline import ChannelPipeline

#: Sample formats: name -> (WAV format tag, bits).
_RAW_FORMATS = {"s16le": (1, 16), "s24le": (1, 24), "s32le": (1, 32), "f32le": (3, 32), "f64le": (3, 64)}
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
_MAX_U32 = 0xFFFFFFFF


class StreamFormatError(ValueError):
    """Input that is not a supported WAV stream or raw format (one line)."""


# --------------------------------------------------------------------------- sample formats
@dataclass(frozen=True)
class SampleFormat:
    """Interleaved little-endian samples: WAV format tag (1 PCM, 3 float), bits, channels, rate."""

    tag: int
    bits: int
    channels: int
    rate: int

    def __post_init__(self) -> None:
        if (self.tag, self.bits) not in {(1, 8), (1, 16), (1, 24), (1, 32), (3, 32), (3, 64)}:
            kind = {1: "PCM", 3: "float"}.get(self.tag, f"format tag {self.tag:#x}")
            raise StreamFormatError(f"unsupported sample format: {kind} with {self.bits} bits "
                                    "(supported: PCM 8/16/24/32 bits, float 32/64 bits)")
        if not 1 <= self.channels <= 64:
            raise StreamFormatError(f"unsupported channel count {self.channels}")
        if not 1000 <= self.rate <= 768000:
            raise StreamFormatError(f"unsupported sample rate {self.rate}")

    @property
    def frame_bytes(self) -> int:
        return self.bits // 8 * self.channels

    def decode(self, data: bytes) -> np.ndarray:
        """Bytes of whole frames -> float32 (frames, channels) in [-1, 1)."""
        if self.tag == _FLOAT:
            x = np.frombuffer(data, dtype="<f4" if self.bits == 32 else "<f8").astype(np.float32)
        elif self.bits == 8:
            x = (np.frombuffer(data, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
        elif self.bits == 16:
            x = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        elif self.bits == 24:
            b = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
            v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
            x = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / float(1 << 23)
        else:
            x = (np.frombuffer(data, dtype="<i4").astype(np.float64) / 2.0**31).astype(np.float32)
        return x.reshape(-1, self.channels)

    def encode(self, x: np.ndarray) -> bytes:
        """float (frames, channels) -> bytes; integer formats are rounded and clipped."""
        x = np.asarray(x)
        if self.tag == _FLOAT:
            return x.astype("<f4" if self.bits == 32 else "<f8").tobytes()
        scale = float(1 << (self.bits - 1))
        q = np.clip(np.round(x.astype(np.float64) * scale), -scale, scale - 1)
        if self.bits == 8:
            return (q + 128).astype(np.uint8).tobytes()
        if self.bits == 16:
            return q.astype("<i2").tobytes()
        if self.bits == 24:
            v = q.astype("<i4").reshape(-1, 1).view(np.uint8)  # little-endian bytes of int32
            return np.ascontiguousarray(v.reshape(-1, 4)[:, :3]).tobytes()
        return q.astype("<i4").tobytes()


# --------------------------------------------------------------------------- WAV over a pipe
def _read_exact(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if data is None or len(data) != n:
        raise StreamFormatError("the WAV stream ended inside its header")
    return data


def read_wav_header(f: BinaryIO) -> tuple[SampleFormat, int | None]:
    """Read a WAV header up to the start of the sample data, without seeking.

    Returns the format and the data length in bytes, or None when the header does not give
    it (0 or 0xFFFFFFFF, as written by tools streaming to a pipe, or RF64): read to EOF.
    """
    head = f.read(12)
    if not head:
        raise StreamFormatError("no input on stdin")
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        raise StreamFormatError("stdin is not a WAV stream; for raw PCM give --raw --rate R --channels C --format F")
    rf64 = head[:4] == b"RF64"
    fmt: SampleFormat | None = None
    while True:
        cid, size = struct.unpack("<4sI", _read_exact(f, 8))
        if cid == b"data":
            if fmt is None:
                raise StreamFormatError("WAV stream without a 'fmt ' chunk before its data")
            return fmt, (None if rf64 or size in (0, _MAX_U32) else size)
        body = _read_exact(f, size + (size & 1))
        if cid == b"fmt ":
            if size < 16:
                raise StreamFormatError("WAV 'fmt ' chunk too short")
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == _EXTENSIBLE and size >= 40:
                tag = struct.unpack("<H", body[24:26])[0]  # first two bytes of the sub-format GUID
            fmt = SampleFormat(tag, bits, channels, rate)


def wav_header(fmt: SampleFormat, data_bytes: int | None) -> bytes:
    """A canonical 44-byte WAV header.

    ``None`` (length unknown, streaming) or a length beyond 4 GiB writes 0xFFFFFFFF for the
    RIFF and data sizes, as ffmpeg does on a pipe: readers take it as "until EOF".
    """
    block = fmt.frame_bytes
    unknown = data_bytes is None or data_bytes > _MAX_U32 - 36
    riff, data = (_MAX_U32, _MAX_U32) if unknown else (36 + data_bytes, data_bytes)
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI", b"RIFF", riff, b"WAVE", b"fmt ", 16, fmt.tag, fmt.channels, fmt.rate,
        fmt.rate * block, block, fmt.bits, b"data", data,
    )


# --------------------------------------------------------------------------- processing
def make_processor_factory(model_arg: str | None, config: str | None, onnx: bool, threads: int | None,
                           tmpdir: str, backend: str = "auto",
                           precision: str = "auto") -> tuple[Any, int, float | None]:
    """A per-channel processor factory, the model's sample rate and the attenuation limit the
    model file (or exported graph) names (None: none; always None for ``--config``).

    ``backend`` ``auto`` streams with the ONNX fast step where onnxruntime is installed and the
    model's config allows it (exported once and cached), else in PyTorch (said in the log);
    ``onnx`` (or ``onnx=True``) always in ONNX Runtime, ``torch`` always in PyTorch.
    ``precision``: ``auto``, ``fp32`` or ``int8``, as :class:`~gagnet.streaming.StreamingEnhancer`'s.
    """
    from .streaming import (DelayCompensated, NotCausalError, StreamingEnhancer, _fast_streamer, _streaming_backend,
                            resolve_precision)

    if model_arg is not None and model_arg.lower().endswith(".onnx"):
        if config is not None:
            raise ValueError("give either --model or --config, not both")
        from .export import OnnxStreamingEnhancer, make_session

        session = make_session(os.path.expanduser(model_arg), threads)
        probe = OnnxStreamingEnhancer(session)  # validates the graph (streaming, gagnet metadata)
        return (lambda: DelayCompensated(OnnxStreamingEnhancer(session))), probe.cfg.sample_rate, probe.atten_lim_db

    from .export import load_for_cli

    if threads:
        import torch

        torch.set_num_threads(threads)
    model = load_for_cli(model_arg, config, "stream")
    if config is None:
        from .pretrained import recommended_atten_lim

        limit = recommended_atten_lim(model_arg)
    else:
        limit = None
    if not model.cfg.causal:
        raise NotCausalError(f"model config {model.cfg.name!r} (norm={model.cfg.norm!r}) is not causal and cannot "
                             "stream; use `gagnet enhance` for it")
    import torch

    from .fast_step import fast_step_supported

    chosen = _streaming_backend("onnx" if onnx else backend, model.net, torch.device("cpu"))
    precision = resolve_precision(precision, chosen, model.cfg)
    if chosen == "onnx":
        from .export import OnnxStreamingEnhancer, export_streaming, make_session

        if fast_step_supported(model.cfg):  # the quickest correct back end wherever it applies
            net, n = model.net, threads or 1
            first = [_fast_streamer(net, n, precision)]  # exports (or compiles) once; fails here if it cannot

            def make() -> Any:
                return DelayCompensated(first.pop() if first else _fast_streamer(net, n, precision))

            return make, model.cfg.sample_rate, limit
        if precision == "int8":
            raise ValueError(f"--precision int8 needs the fast step, which config {model.cfg.name!r} does not support")
        session = make_session(export_streaming(model, os.path.join(tmpdir, "step.onnx"), frames_per_step=1), threads)
        return (lambda: DelayCompensated(OnnxStreamingEnhancer(session))), model.cfg.sample_rate, limit
    StreamingEnhancer(model)  # raises NotCausalError early
    return (lambda: DelayCompensated(StreamingEnhancer(model))), model.cfg.sample_rate, limit


def _err(msg: object) -> None:
    print(f"gagnet stream: {' '.join(str(msg).split())}", file=sys.stderr)


def _seekable_file(f: BinaryIO) -> bool:
    try:
        fd = f.fileno()
        try:
            import fcntl

            appending = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND  # `>>`: writes go to the end
        except ImportError:  # no fcntl (Windows)
            appending = 0
        return stat.S_ISREG(os.fstat(fd).st_mode) and not appending and f.seekable()
    except (OSError, ValueError, AttributeError):
        return False


def run_stream(args: argparse.Namespace, stdin: BinaryIO, stdout: BinaryIO) -> int:
    """The body of ``gagnet stream`` on binary streams; returns the exit status."""
    from .streaming import NotCausalError

    if args.threads is not None and args.threads < 1:
        _err(f"--threads must be positive, got {args.threads}")
        return 2
    try:
        if args.raw:
            tag, bits = _RAW_FORMATS[args.format or "s16le"]
            rate = 16000 if args.rate is None else args.rate
            fmt, data_left = SampleFormat(tag, bits, 1 if args.channels is None else args.channels, rate), None
        else:
            if any(a is not None for a in (args.rate, args.channels, args.format)):
                raise StreamFormatError("--rate, --channels and --format describe raw input; add --raw")
            fmt, data_left = read_wav_header(stdin)
    except StreamFormatError as e:
        _err(e)
        return 2

    with tempfile.TemporaryDirectory(prefix="gagnet-stream-") as tmp:
        try:
            limit = parse_atten_lim(args.atten_lim)  # a bad value fails before the model loads
            factory, model_rate, named = make_processor_factory(args.model, args.config, args.onnx, args.threads, tmp,
                                                                args.backend, args.precision)
            floor = floor_gain(named if limit == FROM_MODEL else limit)
            pipe = ChannelPipeline(factory, fmt.rate, fmt.channels, model_rate, floor)
        except (NotCausalError, ValueError, OSError, RuntimeError) as e:
            _err(e)
            return 2

        seekable = not args.raw and _seekable_file(stdout)
        start = stdout.tell() if seekable else 0
        block_bytes = max(1, fmt.rate // 100) * fmt.frame_bytes  # 10 ms
        carry = b""
        written = 0
        status = 0
        try:
            if not args.raw:
                stdout.write(wav_header(fmt, None))
            while True:
                want = block_bytes if data_left is None else min(block_bytes, data_left)
                data = stdin.read(want) if want else b""
                if not data:
                    break
                if data_left is not None:
                    data_left -= len(data)
                data = carry + data
                whole = len(data) // fmt.frame_bytes * fmt.frame_bytes
                data, carry = data[:whole], data[whole:]
                if not whole:
                    continue
                seen = pipe.nonfinite
                out = fmt.encode(pipe.push(fmt.decode(data)))
                if pipe.nonfinite and not seen:
                    _err("warning: NaN/Inf samples in the input are taken as 0 (the count follows at the end)")
                stdout.write(out)
                stdout.flush()
                written += len(out)
        except KeyboardInterrupt:  # Ctrl-C on a live source: finish the stream cleanly
            status = 130
        except BrokenPipeError:
            _close_quietly(stdout)
            _err("the output was closed before the end of the stream")
            return 1
        try:
            if carry:
                _err(f"ignored {len(carry)} trailing byte(s) that do not make a whole frame")
            if pipe.nonfinite:
                _err(f"{pipe.nonfinite} NaN/Inf input sample(s) were taken as 0")
            out = fmt.encode(pipe.push(np.zeros((0, fmt.channels), np.float32), last=True))
            stdout.write(out)
            written += len(out)
            if seekable:
                end = stdout.tell()
                stdout.seek(start)
                stdout.write(wav_header(fmt, written))
                stdout.seek(end)
            stdout.flush()
        except BrokenPipeError:
            _close_quietly(stdout)
            _err("the output was closed before the end of the stream")
            return 1
    return status


def _close_quietly(stdout: BinaryIO) -> None:
    """After a broken pipe, point stdout at /dev/null so that Python's exit flush stays silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def cmd_stream(args: argparse.Namespace) -> int:
    """``gagnet stream``: 0 on success, 2 on usage/model/format errors, 1 if the output closes early."""
    if sys.stdin.isatty():
        _err("stdin is a terminal; pipe audio in (e.g. sox in.wav -t wav - | gagnet stream ... > out.wav)")
        return 2
    return run_stream(args, sys.stdin.buffer, sys.stdout.buffer)


def register(sub: Any) -> None:
    """Add ``stream`` to the ``gagnet`` subcommands."""
    p = sub.add_parser(
        "stream", help="enhance a live stream: WAV or raw PCM on stdin -> same format on stdout",
        description="Enhance audio from stdin to stdout in real time (10 ms blocks), same format, same length. "
        "Latency: 20 ms algorithmic plus the 10 ms block, resampling filters (rates other than 16 kHz) and "
        "compute. Example: sox in.flac -t wav - | gagnet stream --model m.pt | sox -t wav - out.wav",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="NAME|PATH", default=None,
                     help="shipped model name, a model.pt / .ckpt from `gagnet train`, or a streaming .onnx "
                     "from `gagnet export --streaming`")
    src.add_argument("--config", metavar="NAME", default=None,
                     help="causal preset with RANDOM weights, for testing and timing")
    p.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                   help="auto (default): ONNX Runtime's fast step (gagnet.fast_step, exported once and cached) where "
                   "onnxruntime is installed and the model allows it, else PyTorch; torch or onnx to force one")
    p.add_argument("--onnx", action="store_true", help="same as --backend onnx")
    p.add_argument("--precision", choices=("auto", "fp32", "int8"), default="auto",
                   help="weights of the fast step: auto (default: int8 where the native int8 stages build, for "
                   "batch-norm models, else float32), fp32 (equal to offline), or int8 (see gagnet.native)")
    p.add_argument("--atten-lim", default=FROM_MODEL, metavar="DB|off",
                   help="lower the noise by at most DB decibels (the input mixed back in at -DB dB); off: the "
                   "network's output alone. Default: the limit the model file or exported graph names (none for --config)")
    p.add_argument("--raw", action="store_true", help="raw interleaved PCM instead of WAV, in and out")
    p.add_argument("--rate", type=int, default=None, help="raw input sample rate (default 16000)")
    p.add_argument("--channels", type=int, default=None, help="raw input channels (default 1)")
    p.add_argument("--format", choices=sorted(_RAW_FORMATS), default=None, help="raw sample format (default s16le)")
    p.add_argument("--threads", type=int, default=1,
                   help="compute threads for torch / ONNX Runtime (default 1: per 10 ms hop, more threads do not "
                   "help and cost more CPU)")
    p.set_defaults(func=cmd_stream)


def run_cli(argv: list[str]) -> int:
    """Run ``gagnet stream ...`` from an argument list (for tests: python -m gagnet.stream_cli stream ...)."""
    parser = argparse.ArgumentParser(prog="gagnet")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(run_cli(sys.argv[1:]))
