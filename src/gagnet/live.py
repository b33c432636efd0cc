"""``gagnet live``: real-time enhancement from an input device to an output device.

The audio callback (:class:`LiveCallback`) is plain Python on numpy blocks, so it runs the
same with PortAudio (through ``sounddevice``, imported only when a device is opened) as with
a fake stream in a test: each block of input goes through a
:class:`~gagnet.streaming.StreamingEnhancer` (the fastest back end installed, with the model's
attenuation limit) and the same number of samples comes out, delayed by the model's latency.
Blocks the device reports as dropped (input overflow, output underflow) and blocks whose
processing took longer than their duration are counted.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Samples per device block: one 10 ms hop at 16 kHz.
BLOCK = 160


class LiveCallback:
    """A duplex audio callback ``(indata, outdata, frames, time, status)`` around ``stream``.

    ``indata`` ``(frames, channels)``: the first channel is enhanced and written to every
    channel of ``outdata``. ``dropouts`` counts blocks the device flagged (overflow or
    underflow), ``late`` the blocks that took longer to process than they last.
    """

    def __init__(self, stream: Any, sample_rate: int) -> None:
        self.stream, self.sample_rate = stream, sample_rate
        self.dropouts = 0
        self.late = 0
        self.blocks = 0
        self.worst_ms = 0.0

    def __call__(self, indata: np.ndarray, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        t = time.perf_counter()
        if status and (getattr(status, "input_overflow", False) or getattr(status, "output_underflow", False)
                       or getattr(status, "input_underflow", False) or getattr(status, "output_overflow", False)):
            self.dropouts += 1
        out = self.stream.process(np.ascontiguousarray(indata[:, 0], dtype=np.float32))
        outdata[:] = out[:, None]
        self.blocks += 1
        took = time.perf_counter() - t
        self.worst_ms = max(self.worst_ms, 1e3 * took)
        if took > frames / self.sample_rate:
            self.late += 1


def _sounddevice() -> Any:
    try:
        import sounddevice
    except (ImportError, OSError) as e:  # OSError: the PortAudio library is missing
        raise RuntimeError(f"gagnet live needs sounddevice and PortAudio (pip install sounddevice; "
                           f"apt install libportaudio2): {e}") from None
    return sounddevice


def run(model: str | None, input_device: Any, output_device: Any, seconds: float | None, atten_lim_db: Any,
        precision: str = "auto") -> int:
    """Enhance from ``input_device`` to ``output_device`` until Ctrl-C (or ``seconds``)."""
    from .streaming import StreamingEnhancer

    sd = _sounddevice()
    stream = StreamingEnhancer.from_pretrained(model, atten_lim_db=atten_lim_db, precision=precision)
    rate = stream.cfg.sample_rate
    callback = LiveCallback(stream, rate)
    try:
        dev = sd.Stream(samplerate=rate, blocksize=BLOCK, channels=1, dtype="float32",
                        device=(input_device, output_device), callback=callback, latency="low")
    except sd.PortAudioError as e:
        raise RuntimeError(f"cannot open the audio devices at {rate} Hz ({e}); see gagnet live --list-devices") from None
    with dev:
        in_lat, out_lat = dev.latency if isinstance(dev.latency, tuple) else (dev.latency, dev.latency)
        model_ms = 1e3 * stream.latency_samples / rate
        print(f"gagnet live: {stream.engine} back end, {stream.precision} weights, limit {stream.limit_db} dB; "
              f"latency: model {model_ms:.0f} ms + block {1e3 * BLOCK / rate:.0f} ms + devices "
              f"{1e3 * (in_lat + out_lat):.0f} ms. Ctrl-C stops.",
              file=sys.stderr)
        start = time.monotonic()
        try:
            while seconds is None or time.monotonic() - start < seconds:
                time.sleep(1.0)
                print(f"\r{callback.blocks} blocks, {callback.dropouts} dropouts, {callback.late} late, "
                      f"worst {callback.worst_ms:.1f} ms", end="", file=sys.stderr)
        except KeyboardInterrupt:
            pass
    print(file=sys.stderr)
    return 0


def cmd_live(args: argparse.Namespace) -> int:
    from .attenuation import parse_atten_lim

    try:
        if args.list_devices:
            devices = _sounddevice().query_devices()
            print(devices if len(devices) else "no audio devices found")
            return 0
        limit = parse_atten_lim(args.atten_lim)
        dev = lambda d: int(d) if d is not None and d.isdigit() else d  # noqa: E731 (index or name)
        return run(args.model, dev(args.input), dev(args.output), args.seconds, limit, args.precision)
    except (RuntimeError, ValueError, OSError) as e:
        print(f"gagnet live: {e}", file=sys.stderr)
        return 2


def register(sub: Any) -> None:
    p = sub.add_parser("live", help="enhance from an input device to an output device in real time")
    p.add_argument("--model", default=None, help="shipped name or model file (default: the default model)")
    p.add_argument("--input", default=None, help="input device (number or name; default: the system's)")
    p.add_argument("--output", default=None, help="output device (number or name; default: the system's)")
    p.add_argument("--atten-lim", default="model", metavar="DB|off|model", help="attenuation limit (default: the model's)")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long (default: until Ctrl-C)")
    p.add_argument("--list-devices", action="store_true", help="list the audio devices and exit")
    p.add_argument("--precision", choices=("auto", "fp32", "int8"), default="auto",
                   help="weights: auto (default: int8 where the native int8 stages build, else float32), fp32 or int8")
    p.set_defaults(func=cmd_live)
