"""Faces through a video: detect on sampled frames, follow them, embed each once per segment.

Per sampled frame (:func:`candor.face.video.sample_frames`):

- **Detection** (:mod:`candor.face.video_detect`) scans the whole frame every ``scan_every``
  samples (and right after a scene cut); in between it looks only around the faces it follows
  (a crop of three times the face's size), which costs a few percent of a full scan. A face
  that enters between two full scans is found at the next one (within ``scan_every / fps``
  seconds). The detector is YuNet at a working resolution (HOG where it is not installed; see
  docs/video.md for the measurements, and for why not the CNN).
- **Tracking** matches each face to the track whose last box overlaps it most (IoU at least
  :data:`MIN_IOU`), or else to a track of its size whose box is near (:func:`closeness`);
  a scene cut (the frame's thumbnail changes by more than
  :data:`CUT_DIFFERENCE`) ends every track.
- **Embedding**: a track is embedded when it starts and again every ``segment_s`` seconds (a
  new segment), or sooner when the face turns :data:`FRONTAL_GAIN` degrees more towards the
  camera than the view it was embedded from; if a segment's embedding no longer looks like
  the track's (cosine below :data:`SAME_FACE_COSINE`), the face gets a new track: boxes
  overlapped but the person changed. The chips of one frame go to the network in one batched call.

Each face of each sampled frame comes back as a :class:`TrackedFace` with its track's Index and
the embedding of its current segment.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np

from candor.face.engine import Engine, Face
from candor.face.imaging import Image
from candor.face.video import Frame
from candor.face.video_detect import FrameEngine, iou
from candor.models import Detection

MIN_IOU = 0.3
#: ... or, for a face that moved further in the 1/fps s between samples (a walker in 1080p
#: moves most of a face width in 200 ms), whose centre is within this many box sides of the track's
#: and whose size is within NEAR_SIZE_RATIO of it
NEAR_CENTRE = 0.75
NEAR_SIZE_RATIO = 1.5
SAME_FACE_COSINE = 0.5
#: a followed face turned this many degrees (yaw) more towards the camera than the view its
#: segment was embedded from is embedded again: the embedding of a face turned 45 degrees
#: can miss (Lin-Manuel Miranda: 80 against his photos at 45 degrees, 95 at 27)
FRONTAL_GAIN = 15.0
CUT_DIFFERENCE = 25.0
DEFAULT_SCAN_EVERY = 5
DEFAULT_SEGMENT_S = 2.0
#: a track not seen for this many samples ends
MAX_MISSED = 2
#: ONNX Runtime threads of a video job's embedding calls: the job's other threads (decoding,
#: detection, landmarks) keep the other core busy
EMBED_THREADS = 1
#: frames found and tracked whose embeddings may still be running (they are settled, in order,
#: as their embeddings arrive, and at the latest when this many wait)
SETTLE_DEPTH = 8
#: Python's GIL switch interval while a video job runs (see :class:`_SwitchInterval`)
SWITCH_INTERVAL_S = 0.0005


@dataclass
class Track:
    #: the Index of GetFaceSearch's Person; None until the frame that starts it is settled
    index: int | None
    box: Detection
    last_seen: int
    embedding: np.ndarray | None = None
    segment_start_ms: int = -1
    embeddings: int = 0
    #: |yaw| of the view the segment's embedding is of (None: unknown)
    yaw: float | None = None


@dataclass
class TrackedFace:
    """One face of one sampled frame, with its track's Index and current segment embedding."""

    timestamp_ms: int
    frame: int
    index: int
    face: Face
    width: int
    height: int
    embedding: np.ndarray | None = None
    new_segment: bool = False


@dataclass
class FrameFaces:
    frame: Frame
    faces: list[TrackedFace] = field(default_factory=list)
    #: the frame's thumbnail, which the next frame is compared with for a scene cut
    thumb: np.ndarray | None = None


def closeness(track: Detection, face: Detection) -> float:
    """How well ``face`` continues ``track``: the boxes' IoU when at least MIN_IOU; else, for a
    face near the track's box and of its size (NEAR_CENTRE, NEAR_SIZE_RATIO), a score under
    MIN_IOU that falls with the distance (IoU matches are preferred); else 0."""
    overlap = iou(track, face)
    if overlap >= MIN_IOU:
        return overlap
    side_t, side_f = max(track.width, track.height), max(face.width, face.height)
    if side_t <= 0 or side_f <= 0 or max(side_t, side_f) > NEAR_SIZE_RATIO * min(side_t, side_f):
        return 0.0
    dx = (track.left + track.right - face.left - face.right) / 2
    dy = (track.top + track.bottom - face.top - face.bottom) / 2
    distance = (dx * dx + dy * dy) ** 0.5 / ((side_t + side_f) / 2)
    return MIN_IOU * (1 - distance / NEAR_CENTRE) if distance < NEAR_CENTRE else 0.0


def _thumb(pixels: np.ndarray) -> np.ndarray:
    """32x18 grey thumbnail, for scene cuts (of every few pixels: a 1080p frame is read whole
    only once, by the detector)."""
    step = max(1, min(pixels.shape[:2]) // 144)
    small = cv2.resize(pixels[::step, ::step], (32, 18), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)


class Tracker:
    """Greedy IoU association of faces to tracks, with the embedding check per segment."""

    def __init__(self) -> None:
        self.tracks: list[Track] = []
        self.next_index = 0

    def new(self, box: Detection, frame: int, numbered: bool = True) -> Track:
        track = Track(None, box, frame)
        if numbered:
            self.number(track)
        self.tracks.append(track)
        return track

    def number(self, track: Track) -> None:
        """Give ``track`` the next Index (a new track, or a track whose person changed)."""
        track.index = self.next_index
        self.next_index += 1

    def cut(self) -> None:
        self.tracks = []

    def assign(self, frame: int, faces: list[Face]) -> list[Track]:
        self.tracks = [t for t in self.tracks if frame - t.last_seen <= MAX_MISSED]
        pairs = sorted(((closeness(t.box, f.box), ti, fi) for ti, t in enumerate(self.tracks)
                        for fi, f in enumerate(faces)), reverse=True)
        chosen: dict[int, Track] = {}
        used: set[int] = set()
        for score, ti, fi in pairs:
            if score <= 0 or ti in used or fi in chosen:
                continue
            used.add(ti)
            chosen[fi] = self.tracks[ti]
        out = []
        for fi, face in enumerate(faces):
            track = chosen.get(fi) or self.new(face.box, frame, numbered=False)
            track.box, track.last_seen = face.box, frame
            out.append(track)
        return out


def warm(engine: Engine, requests: bool = False) -> None:
    """Load what a video job's first frames would otherwise wait for: the shape predictors
    and the embedding session of :data:`EMBED_THREADS` threads (its own ONNX Runtime session,
    ~0.2 s of CPU to create: a tenth of a 4 s 1080p job at 2x real time); ``requests``: the
    session that requests' embeddings use too (``candor serve``)."""
    backend = engine.backend
    if getattr(backend, "name", None) == "onnx":
        if requests:
            backend.warm()
        backend.warm(embed_threads=EMBED_THREADS)
    elif callable(getattr(backend, "warm", None)):
        backend.warm()


def track_faces(engine: Engine, frames: Iterable[Frame], attributes=("DEFAULT",), *,
                embed: bool = True, fps: float = 5.0, scan_every: int = DEFAULT_SCAN_EVERY,
                segment_s: float = DEFAULT_SEGMENT_S, min_face: int = 0, thorough: bool = False,
                detector: str | None = None,
                on_frame: Callable[[FrameFaces], None] | None = None) -> Iterator[FrameFaces]:
    """The faces of every sampled frame, tracked (see the module docstring). ``thorough``
    (redaction) scans every sampled frame whole, with the CNN as well as HOG.

    The work overlaps on threads (docs/video.md, "Threads"): frames are decoded ahead
    (:func:`candor.face.video.sample_frames`); full scans of every ``scan_every``-th frame,
    which do not depend on tracking, run ahead on a thread of their own; and embeddings run on
    another while this thread finds, tracks and describes the faces of the next frames. The
    decisions (which faces start a segment) are made here, frame by frame; frames are settled
    in order as their embeddings arrive (Indexes given, tracks whose person changed renumbered),
    so the result is the same as one frame after the other."""
    fe = FrameEngine(engine, min_face, thorough, detector)
    scan_every = 1 if thorough else scan_every
    tracker = Tracker()
    previous: np.ndarray | None = None
    landmarks = "DEFAULT" in attributes or "ALL" in attributes
    ahead: deque[tuple[Frame, Future | None]] = deque()
    source = iter(frames)
    pool = ThreadPoolExecutor(1, thread_name_prefix="candor-scan")
    embedder = ThreadPoolExecutor(1, thread_name_prefix="candor-embed")
    pending: deque[Pending] = deque()

    def fill() -> None:
        while len(ahead) < scan_every + 1:
            try:
                f = next(source)
            except StopIteration:
                return
            planned = f.number % scan_every == 0
            ahead.append((f, pool.submit(fe._scan, f.pixels, 0, 0) if planned else None))

    switching = _SwitchInterval()
    try:
        fill()
        while ahead:
            frame, scan = ahead.popleft()
            fill()
            thumb, cut, image, faces = _look(fe, tracker, frame, scan, previous, attributes,
                                             landmarks)
            previous = thumb
            if cut:
                tracker.cut()
            pending.append(_follow(fe, embedder, tracker, frame, image, faces, thumb, embed,
                                   segment_s))
            while pending and (len(pending) > SETTLE_DEPTH or pending[0].ready()):
                yield _settle(pending.popleft(), tracker, on_frame)
        while pending:
            yield _settle(pending.popleft(), tracker, on_frame)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        embedder.shutdown(wait=True, cancel_futures=True)
        switching.restore()


class _SwitchInterval:
    """Python's GIL switch interval at :data:`SWITCH_INTERVAL_S` while video jobs run (the
    process's own value again when the last one ends). A thread coming back from a call that
    released the GIL waits for the interval when another holds it: the decoding thread comes
    back once per decoded frame (275 for the 9 s Hamilton clip), and the job's thread held
    the GIL through dlib's landmarks, so at the default 5 ms decoding fell behind and the job
    used one core (CPU time = wall time); at 0.5 ms, 1.5-1.65 cores (docs/video.md). The
    landmarks now release the GIL (candor.models.ert); the interval was not measured again."""

    lock = threading.Lock()
    active = 0
    saved = 0.005

    def __init__(self) -> None:
        with self.lock:
            if _SwitchInterval.active == 0:
                _SwitchInterval.saved = sys.getswitchinterval()
                sys.setswitchinterval(min(_SwitchInterval.saved, SWITCH_INTERVAL_S))
            _SwitchInterval.active += 1
        self.done = False

    def restore(self) -> None:
        with self.lock:
            if self.done:
                return
            self.done = True
            _SwitchInterval.active -= 1
            if _SwitchInterval.active == 0:
                sys.setswitchinterval(_SwitchInterval.saved)


@dataclass
class Pending:
    """A frame whose faces joined tracks, waiting for the embeddings of the segments it starts."""

    out: FrameFaces
    tracks: list[Track]
    due: list[int]
    vectors: Future | None

    def ready(self) -> bool:
        return self.vectors is None or self.vectors.done()


def _look(fe: FrameEngine, tracker: Tracker, frame: Frame, scan: Future | None,
          previous: np.ndarray | None, attributes, landmarks: bool):
    """Find and describe the faces of one sampled frame: the ready full scan, a scan after a
    cut, or around the followed faces. -> (thumbnail, cut, image, faces)"""
    thumb = _thumb(frame.pixels)
    cut = previous is not None and float(np.abs(thumb - previous).mean()) > CUT_DIFFERENCE
    live = [t for t in tracker.tracks if frame.number - t.last_seen <= MAX_MISSED]
    fe.regions = None if scan is not None or cut else [t.box for t in live]
    fe.ready = scan
    image = Image(frame.pixels, "video", "", f"frame {frame.number}")
    image, faces = fe.analyse(image, attributes, embed=False, landmarks=landmarks)
    return thumb, cut, image, faces


def _follow(engine: Engine, embedder: ThreadPoolExecutor, tracker: Tracker, frame: Frame,
            image: Image, faces: list[Face], thumb: np.ndarray, embed: bool,
            segment_s: float) -> Pending:
    """Join the faces to tracks and start embedding those whose track starts a segment here
    (one batched call, on the embedding thread)."""
    tracks = tracker.assign(frame.number, faces)
    h, w = frame.pixels.shape[:2]
    out = FrameFaces(frame, [TrackedFace(frame.timestamp_ms, frame.number, t.index, f, w, h)
                             for f, t in zip(faces, tracks)], thumb)
    due = [i for i, (tf, t) in enumerate(zip(out.faces, tracks))
           if t.segment_start_ms < 0 or tf.timestamp_ms - t.segment_start_ms >= segment_s * 1000
           or _more_frontal(tf, t)] if embed else []
    for i in due:  # the segment starts here, whenever its embedding arrives
        tracks[i].segment_start_ms = out.faces[i].timestamp_ms
        tracks[i].yaw = _yaw(out.faces[i])
    vectors = None
    if due:
        chips = engine.chips(image, [out.faces[i].face for i in due])
        vectors = embedder.submit(engine.embed_chips, chips, EMBED_THREADS)
    return Pending(out, tracks, due, vectors)


def _settle(p: Pending, tracker: Tracker, on_frame) -> FrameFaces:
    """Give every face of a pending frame its segment's embedding, splitting tracks whose
    person changed (cosine under SAME_FACE_COSINE)."""
    out, tracks = p.out, p.tracks
    for track in tracks:  # Indexes in the order of the frames, as one frame after the other
        if track.index is None:
            tracker.number(track)
    for i, vector in zip(p.due, p.vectors.result() if p.vectors is not None else []):
        track = tracks[i]
        if track.embedding is not None and float(track.embedding @ vector) < SAME_FACE_COSINE:
            tracker.number(track)  # the person changed: a new Index from here on
            track.embeddings = 0
        track.embedding = vector
        track.embeddings += 1
        out.faces[i].new_segment = True
    for tf, track in zip(out.faces, tracks):
        tf.index = track.index
        tf.embedding = track.embedding
    if on_frame is not None:
        on_frame(out)
    return out


def _yaw(tf: TrackedFace) -> float | None:
    pose = tf.face.detail.pose
    return abs(float(pose.yaw)) if pose is not None and pose.yaw is not None else None


def _more_frontal(tf: TrackedFace, track: Track) -> bool:
    """Whether this view of the face is FRONTAL_GAIN degrees more frontal than the one its
    segment was embedded from (a new segment then starts here)."""
    yaw = _yaw(tf)
    return yaw is not None and track.yaw is not None and track.yaw - yaw >= FRONTAL_GAIN
