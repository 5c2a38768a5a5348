"""Stored video: probe, limits, and frames sampled at a documented rate.

Decoding uses PyAV (FFmpeg's libraries in its wheels), chosen over OpenCV's ``VideoCapture``
by measurement (docs/video.md, "Decoder"): on the 1080p H.264 sample PyAV decodes every frame
in 1.9-3.1 s against OpenCV's 4.7 s, and, unlike OpenCV, it can skip the frames no other frame
refers to (``skip_frame=NONREF``: 53 of 105 frames decoded, 1.3 s) when the sampling rate is
well below the frame rate, decode straight to the analysis size in swscale, and read and write
audio (redaction passes it through). Whatever FFmpeg reads (MP4, MOV, MKV, WebM, AVI with
H.264, H.265, VP9, AV1 ...) candor reads.

Sampling: one frame every ``1 / fps`` seconds of presentation time (default
:data:`DEFAULT_SAMPLE_FPS`, 5 a second: Rekognition reports faces several times a second);
the frame sampled for a tick is the first decoded frame at or after it, and its Timestamp is
its own presentation time in milliseconds from the start of the stream.

A file that is not a video, is truncated, or exceeds :data:`LIMITS` raises
:class:`candor.errors.InvalidVideo` (or VideoTooLarge) with a reason; a job turns it into its
FAILED StatusMessage.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from candor.errors import InvalidS3Object, InvalidVideo, VideoTooLarge

#: faces are reported this many times a second of video (see the module docstring)
DEFAULT_SAMPLE_FPS = 5.0
MAX_SAMPLE_FPS = 30.0


@dataclass(frozen=True)
class Limits:
    """What a stored video may be (Rekognition: 10 GB, 6 hours; candor also bounds pixels)."""

    max_bytes: int = 10 * 1024**3
    max_duration_s: float = 6 * 3600
    max_width: int = 4096
    max_height: int = 4096
    min_side: int = 64


LIMITS = Limits()


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about its first video stream."""

    codec: str
    format: str
    duration_ms: int
    frame_rate: float
    width: int
    height: int
    color_range: str = "LIMITED"
    has_audio: bool = False

    def metadata(self) -> dict:
        """Rekognition's VideoMetadata shape."""
        return {"Codec": self.codec, "DurationMillis": self.duration_ms, "Format": self.format,
                "FrameRate": round(self.frame_rate, 3), "FrameHeight": self.height,
                "FrameWidth": self.width, "ColorRange": self.color_range}


@dataclass
class Frame:
    """One sampled frame: its sample number, presentation time (ms) and RGB pixels."""

    number: int
    timestamp_ms: int
    pixels: np.ndarray


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def bucket_path(buckets: dict[str, Path], bucket: str, name: str) -> Path | None:
    """The file ``name`` of local bucket ``bucket`` (``candor serve --bucket NAME=DIR``), or
    None when no local bucket has that name. A name that leaves the folder (``..``, absolute,
    a symlink out of it) or a missing file is InvalidS3Object, as for a missing S3 key."""
    root = buckets.get(bucket)
    if root is None:
        return None
    root = Path(root).resolve()
    try:  # a NUL, a lone surrogate, an over-long part or a symlink loop: a name no file has
        path = (root / name).resolve()
        is_file = path.is_file()
    except (OSError, ValueError, RuntimeError):
        raise InvalidS3Object(f"s3://{bucket}/{name!r}: not a valid object name") from None
    if not name or name.startswith("/") or root not in path.parents:
        raise InvalidS3Object(f"s3://{bucket}/{name}: not an object of this bucket")
    if not is_file:
        raise InvalidS3Object(f"Unable to get object metadata from S3: s3://{bucket}/{name} "
                              "does not exist")
    return path


def parse_buckets(specs: tuple[str, ...] | list[str]) -> dict[str, Path]:
    """``["NAME=DIR", ...]`` as a dict; a bad spec or a missing folder is InvalidParameter."""
    from candor.errors import InvalidParameter

    out: dict[str, Path] = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder or not Path(folder).expanduser().is_dir():
            raise InvalidParameter(f"--bucket {spec!r}: expected NAME=DIR with an existing DIR")
        out[name] = Path(folder).expanduser().resolve()
    return out


def _open(path: str | os.PathLike):
    import av

    size = os.path.getsize(path)
    if size > LIMITS.max_bytes:
        raise VideoTooLarge(f"the video is {size} bytes; the limit is {LIMITS.max_bytes}")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise InvalidVideo("NOT_A_VIDEO", f"the file is not a video candor can read ({exc})") \
            from None
    if not container.streams.video:
        container.close()
        raise InvalidVideo("NO_VIDEO_STREAM", "the file has no video stream")
    return container


def probe(path: str | os.PathLike) -> VideoInfo:
    """Facts about the video at ``path``, checked against :data:`LIMITS`."""
    with _open(path) as container:
        return _info(container)


def _info(container) -> VideoInfo:
    stream = container.streams.video[0]
    ctx = stream.codec_context
    rate = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000
    else:
        duration = (stream.frames or 0) / rate
    width, height = int(ctx.width or 0), int(ctx.height or 0)
    if width <= 0 or height <= 0:
        raise InvalidVideo("NOT_A_VIDEO", "the video stream has no picture size")
    if width > LIMITS.max_width or height > LIMITS.max_height:
        raise VideoTooLarge(f"the video is {width}x{height}; the limit is "
                            f"{LIMITS.max_width}x{LIMITS.max_height}")
    if min(width, height) < LIMITS.min_side:
        raise InvalidVideo("TOO_SMALL", f"the video is {width}x{height}; frames must be at "
                           f"least {LIMITS.min_side} pixels on each side")
    if duration > LIMITS.max_duration_s:
        raise VideoTooLarge(f"the video lasts {duration:.0f} s; the limit is "
                            f"{LIMITS.max_duration_s:.0f} s")
    fmt = (container.format.name or "").split(",")[0]
    color = "FULL" if str(getattr(ctx, "color_range", "")).endswith(("2", "JPEG")) else "LIMITED"
    return VideoInfo(codec=ctx.name, format=fmt, duration_ms=int(round(duration * 1000)),
                     frame_rate=rate, width=width, height=height, color_range=color,
                     has_audio=bool(container.streams.audio))


def analysis_size(info: VideoInfo, max_side: int | None) -> tuple[int, int]:
    """The frame size analysis runs at: the video's, shrunk so the long side is at most
    ``max_side`` (even numbers, for swscale)."""
    w, h = info.width, info.height
    if max_side and max(w, h) > max_side:
        s = max_side / max(w, h)
        w, h = int(w * s) // 2 * 2, int(h * s) // 2 * 2
    return w, h


def sample_frames(path: str | os.PathLike, fps: float = DEFAULT_SAMPLE_FPS,
                  max_side: int | None = None, ahead: int = 8) -> Iterator[Frame]:
    """Frames of the video at ``path``, one per ``1 / fps`` s, decoded on a background thread
    (at most ``ahead`` waiting), as RGB arrays at :func:`analysis_size`. A decoding error
    after the first frame, or a stream that ends well before its stated duration, raises
    InvalidVideo("TRUNCATED")."""
    if not 0 < fps <= MAX_SAMPLE_FPS:
        raise InvalidVideo("BAD_SAMPLE_RATE", f"the sampling rate must be in (0, {MAX_SAMPLE_FPS}]")
    out: queue.Queue = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for frame in _decode(path, fps, max_side):
                if not put(frame):
                    return
            put(None)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    thread = threading.Thread(target=produce, name="candor-video-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = out.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def _decode(path: str | os.PathLike, fps: float, max_side: int | None) -> Iterator[Frame]:
    import av

    with _open(path) as container:
        info = _info(container)
        stream = container.streams.video[0]
        stream.thread_type = "NONE"  # one thread: the job's other threads keep the cores busy
        if info.frame_rate >= 2.5 * fps:  # frames nothing refers to are never sampled twice
            stream.codec_context.skip_frame = "NONREF"
        width, height = analysis_size(info, max_side)
        start = stream.start_time or 0
        base = float(stream.time_base or 0) or 1 / 1000
        step = 1000.0 / fps
        next_tick = 0.0
        number = 0
        last_ms = -1
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                ms = int(round((frame.pts - start) * base * 1000))
                last_ms = max(last_ms, ms)
                if ms + 0.5 < next_tick:
                    continue
                # contiguous: a width whose rows FFmpeg pads (970, 854...) gives a strided
                # view, which dlib's face chips refuse (every search job of it FAILED)
                pixels = np.ascontiguousarray(
                    frame.to_ndarray(format="rgb24", width=width, height=height))
                yield Frame(number, max(ms, 0), pixels)
                number += 1
                while next_tick <= ms:
                    next_tick += step
        except av.FFmpegError as exc:
            if number == 0:
                raise InvalidVideo("NOT_A_VIDEO", f"no frame could be decoded ({exc})") from None
            raise InvalidVideo("TRUNCATED", f"decoding stopped at {last_ms} ms of "
                               f"{info.duration_ms} ms ({exc})") from None
        if number == 0:
            raise InvalidVideo("NOT_A_VIDEO", "the video stream has no decodable frame")
        if info.duration_ms - last_ms > max(2000, 0.1 * info.duration_ms):
            raise InvalidVideo("TRUNCATED", f"the stream ends at {last_ms} ms of the "
                               f"{info.duration_ms} ms its container states")
