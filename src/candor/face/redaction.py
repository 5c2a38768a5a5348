"""Redaction: blur or pixelate faces in photos and videos (the privacy feature Rekognition lacks).

Photos: every face DetectFaces finds is covered. Videos: faces are found at the sampled frames
with the tracking of the video jobs (:mod:`candor.face.tracking`), but thoroughly: every sampled
frame is scanned whole with HOG and the CNN (which finds profiles and dark faces HOG misses); every
frame of the output is covered with the boxes of the two sampled frames on either side of it
(so a face moving between two samples, or found in one sample and not the next, stays
covered), each box enlarged by
:data:`MARGIN` of its size. With ``keep``, the faces of tracks whose segment embedding
``keep(vector)`` accepts (a collection's members) are left visible. The video is re-encoded
with H.264 (yuv420p, quality CRF 18) in MP4 or the input's container; the audio streams are
copied packet for packet, untouched.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from candor.errors import InvalidParameter, InvalidVideo
from candor.face.video import DEFAULT_SAMPLE_FPS, probe, sample_frames

MARGIN = 0.25
STYLES = ("blur", "pixelate")
Box = tuple[int, int, int, int]


def cover(pixels: np.ndarray, boxes: list[Box], style: str = "blur") -> np.ndarray:
    """``pixels`` (H, W, 3) with each box blurred or pixelated beyond recognition, in place."""
    if style not in STYLES:
        raise InvalidParameter(f"the redaction style must be one of {', '.join(STYLES)}")
    h, w = pixels.shape[:2]
    for left, top, right, bottom in boxes:
        x0, y0, x1, y1 = max(0, left), max(0, top), min(w, right), min(h, bottom)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        region = pixels[y0:y1, x0:x1]
        if style == "pixelate":
            cells = (max(1, (x1 - x0) // 12), max(1, (y1 - y0) // 12))
            small = cv2.resize(region, (min(cells[0], 8), min(cells[1], 8)),
                               interpolation=cv2.INTER_AREA)
            region[:] = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        else:
            k = max(3, (max(x1 - x0, y1 - y0) // 2) | 1)
            region[:] = cv2.GaussianBlur(region, (k, k), 0)
            region[:] = cv2.GaussianBlur(region, (k, k), 0)
    return pixels


def _grow(left: float, top: float, right: float, bottom: float, scale: float = 1.0) -> Box:
    mw, mh = (right - left) * MARGIN, (bottom - top) * MARGIN
    return (int((left - mw) * scale), int((top - mh * 1.4) * scale), int((right + mw) * scale),
            int((bottom + mh) * scale))


def redact_photo(detect: Callable[[bytes], list[dict]], source: str | os.PathLike,
                 out: str | os.PathLike, style: str = "blur") -> int:
    """Write ``source`` with every face covered to ``out``; returns how many were covered.
    ``detect(image bytes)`` returns Rekognition BoundingBoxes (the CLI passes a governed
    DetectFaces, so the photo's faces are found as any DetectFaces call is: decided and
    audited)."""
    from PIL import Image as PILImage

    from candor.face.imaging import read_image

    image = read_image(source)
    boxes = detect(Path(source).read_bytes())
    pixels = image.pixels.copy()
    w, h = image.width, image.height
    cover(pixels, [_grow(b["Left"] * w, b["Top"] * h, (b["Left"] + b["Width"]) * w,
                         (b["Top"] + b["Height"]) * h) for b in boxes], style)
    PILImage.fromarray(pixels).save(out)
    return len(boxes)


def face_boxes(engine, source: str | os.PathLike, fps: float = DEFAULT_SAMPLE_FPS,
               keep: Callable[[np.ndarray], bool] | None = None,
               progress: Callable[[float], None] | None = None) -> tuple[list, dict]:
    """Per sampled frame (in time order): (timestamp ms, boxes to cover in the video's
    pixels); and counts of faces covered and kept."""
    from candor.face.tracking import track_faces

    info = probe(source)
    kept: dict[int, bool] = {}
    samples: list[tuple[int, list[Box]]] = []
    counts = {"faces": 0, "kept": 0}
    for ff in track_faces(engine, sample_frames(source, fps), ["DEFAULT"], embed=keep is not None,
                          fps=fps, thorough=True):
        boxes = []
        for tf in ff.faces:
            if keep is not None and (tf.new_segment or tf.index not in kept):
                kept[tf.index] = bool(keep(tf.embedding))
            if keep is not None and kept[tf.index]:
                counts["kept"] += 1
                continue
            counts["faces"] += 1
            b = tf.face.box
            boxes.append(_grow(b.left, b.top, b.right, b.bottom))
        samples.append((ff.frame.timestamp_ms, boxes))
        if progress is not None:
            progress(50.0 * ff.frame.timestamp_ms / max(info.duration_ms, 1))
    return samples, counts


def redact_video(engine, source: str | os.PathLike, out: str | os.PathLike,
                 style: str = "blur", keep: Callable[[np.ndarray], bool] | None = None,
                 fps: float = DEFAULT_SAMPLE_FPS,
                 progress: Callable[[float], None] | None = None) -> dict:
    """Write ``source`` with faces covered to ``out`` (see the module docstring)."""
    import av

    if style not in STYLES:
        raise InvalidParameter(f"the redaction style must be one of {', '.join(STYLES)}")
    samples, counts = face_boxes(engine, source, fps, keep, progress)
    times = [t for t, _ in samples]
    info = probe(source)
    frames = 0
    with av.open(str(source)) as inp, av.open(str(out), "w") as dst:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        rate = vin.average_rate or vin.guessed_rate or 25
        vout = dst.add_stream("libx264", rate=rate)
        vout.width, vout.height, vout.pix_fmt = info.width, info.height, "yuv420p"
        vout.options = {"crf": "18", "preset": "veryfast"}
        audio = {s.index: dst.add_stream_from_template(s) for s in inp.streams.audio}
        start = vin.start_time or 0
        base = float(vin.time_base or 0) or 1 / 1000
        for packet in inp.demux(vin, *inp.streams.audio):
            if packet.stream.index in audio:
                if packet.dts is None:
                    continue
                packet.stream = audio[packet.stream.index]
                dst.mux(packet)
                continue
            try:
                decoded = packet.decode()
            except av.FFmpegError as exc:
                raise InvalidVideo("TRUNCATED", f"decoding stopped ({exc})") from None
            for frame in decoded:
                ms = int(round(((frame.pts or 0) - start) * base * 1000))
                pixels = frame.to_ndarray(format="rgb24")
                i = bisect.bisect_right(times, ms)
                boxes = [b for j in range(i - 2, i + 2) if 0 <= j < len(samples)
                         for b in samples[j][1]]
                cover(pixels, boxes, style)
                new = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                new.pts, new.time_base = frame.pts, frame.time_base
                for p in vout.encode(new):
                    dst.mux(p)
                frames += 1
                if progress is not None and frames % 10 == 0:
                    progress(50.0 + 50.0 * ms / max(info.duration_ms, 1))
        for p in vout.encode():
            dst.mux(p)
    return {"frames": frames, **counts, "samples": len(samples), "output": str(Path(out))}
