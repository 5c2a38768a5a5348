"""dlib's shape predictor (a cascade of regression forests, Kazemi & Sullivan 2014) in numpy:
an experiment for issue 17 that lost (see docs/engine.md, "candor index: levers measured").
The same algorithm in C, ``candor/models/_ert.c``, is what candor uses (docs/engine.md,
"Landmarks"); this file stays as its readable reference.

    python bench/shape_forest.py [--photos 60]

It gives dlib's points exactly (109 of 109 LFW faces, both models), and its saved arrays load
in 0.03 s (5 points) and 0.23 s (68 points) where dlib takes ~0.85 s for both, but a face costs
2.5-3x dlib's time (68 points: 12.2 against 4.9 ms; 5 points: 8.7 against 3.0 ms, measured at
load ~10): each of the 15 cascade levels is a dozen numpy calls over 500 trees, ~50 us each,
where dlib walks the same trees in C++ in ~0.3 ms a level. Batching the faces of many photos
would share the calls' overhead, but not the reads of the leaf vectors (65 MB for the 68-point
model, 500 rows of 136 floats per level read at random), where dlib already spends its time.
Converting the 68-point ``.dat`` once takes ~17 s of CPU.

Why it was tried: dlib reads ``shape_predictor_68_face_landmarks.dat`` (99 MB of portable
floats, one at a time) in about 1 s of CPU with the GIL held, at every start of every command,
and then takes ~5 ms per face for the 68 points; the same model saved as plain arrays (here in
a cache directory with its SHA-256 beside it, as the ONNX conversions) loads in milliseconds.

What it computes is dlib's ``shape_predictor::operator()`` step by step: the similarity
transform from the mean shape to the current shape (Umeyama, in double, as dlib), the feature
pixels (dlib's ``get_pixel_intensity``: the mean of R, G and B, truncated; 0 outside the image),
each tree's split ``value[idx1] - value[idx2] > thresh`` (float32), the leaf vectors added tree
after tree in float32 (a running sum, as dlib's ``+=``), and the points mapped back into the box
and rounded. main() compares the points with dlib's on LFW and sample photos.

The ``.dat`` is dlib's serialisation: a stream of dlib integers (a control byte whose low
nibble is the number of little-endian bytes that follow, bit 7 the sign); a float is two of
them (mantissa, exponent). The stream is scanned for token boundaries by many walkers at once
(:func:`token_starts`), not byte by byte in Python, so converting takes seconds, not minutes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from candor.errors import DlibFormatError

#: bumped when the saved arrays change meaning (a different version is converted again)
FORMAT_VERSION = "1"
_CHUNK = 4096  # bytes per walker in token_starts
_OVERLAP = 512  # bytes a walker runs into the next chunk, for the next walker to meet it


# ------------------------------------------------------------------ the .dat token stream


def _walk_sequential(data: np.ndarray, start: int, stop: int) -> list[int]:
    out, p, raw = [], start, data
    while p < stop:
        out.append(p)
        p += 1 + (int(raw[p]) & 15)
    return out


def token_starts(data: np.ndarray) -> np.ndarray:
    """Offsets of every dlib integer in ``data`` (uint8), which must be a stream of them.

    One walker per chunk starts at the chunk's first byte (maybe mid-token) and follows the
    lengths into the next chunk; a walker that lands on a position the previous walker
    visited is on the true path from there (the stream is deterministic). Where a walker
    never meets its predecessor, that chunk is scanned one token at a time."""
    n = len(data)
    lengths = 1 + (data & 15).astype(np.int64)
    starts = np.arange(0, n, _CHUNK, dtype=np.int64)
    ends = np.minimum(starts + _CHUNK + _OVERLAP, n)
    pos = starts.copy()
    steps: list[np.ndarray] = []
    while True:
        live = pos < ends
        if not live.any():
            break
        steps.append(np.where(live, pos, -1))
        pos = np.where(live, pos + lengths[np.minimum(pos, n - 1)], pos)
    visited = np.stack(steps, axis=1)  # (walkers, steps), -1 once a walker stopped
    k = len(starts)
    tail = np.zeros(n + 1, bool)  # positions walker i visited in chunk i + 1
    chunk_of = np.where(visited >= 0, visited // _CHUNK, -1)
    own = np.arange(k)[:, None]
    tail[visited[(chunk_of == own + 1)]] = True
    meets = np.full(k, -1, np.int64)
    meets[0] = 0
    for i in range(1, k):
        row = visited[i]
        hit = np.flatnonzero((row >= 0) & (row // _CHUNK == i) & tail[np.maximum(row, 0)])
        if len(hit) == 0:  # not met within the overlap: the slow, certain way
            return np.array(_walk_sequential(data, 0, n), np.int64)
        meets[i] = row[hit[0]]
    # walker i is on the true path from where it met walker i - 1 to where walker i + 1 met it
    bounds = np.append(meets, n)
    offsets = np.concatenate([visited[i][(visited[i] >= bounds[i]) & (visited[i] < bounds[i + 1])]
                              for i in range(k)])
    if len(offsets) and offsets[-1] + lengths[offsets[-1]] != n:
        raise DlibFormatError("shape predictor stream does not end on a token boundary")
    return offsets


def decode_ints(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The dlib integers at ``offsets`` (int64)."""
    if len(offsets) and int((data[offsets] & 15).max()) > 8:
        raise DlibFormatError("bad integer control byte in the shape predictor")
    padded = np.concatenate([data, np.zeros(9, np.uint8)])
    out = np.empty(len(offsets), np.int64)
    for at in range(0, len(offsets), 1 << 22):
        pos = offsets[at:at + (1 << 22)]
        ctrl = padded[pos]
        size = (ctrl & 15).astype(np.int64)
        raw = padded[pos[:, None] + 1 + np.arange(8)].astype(np.int64)
        raw *= np.arange(8) < size[:, None]
        value = (raw << (8 * np.arange(8, dtype=np.int64))).sum(axis=1)
        out[at:at + len(pos)] = np.where(ctrl & 0x80, -value, value)
    return out


class _Ints:
    """Cursor over the decoded integers of a shape predictor."""

    def __init__(self, values: np.ndarray) -> None:
        self.v, self.i = values, 0

    def int(self) -> int:
        if self.i >= len(self.v):
            raise DlibFormatError("shape predictor ends early")
        self.i += 1
        return int(self.v[self.i - 1])

    def take(self, count: int) -> np.ndarray:
        if self.i + count > len(self.v):
            raise DlibFormatError("shape predictor ends early")
        self.i += count
        return self.v[self.i - count:self.i]

    def floats(self, count: int) -> np.ndarray:
        pairs = self.take(2 * count).reshape(-1, 2)
        if (np.abs(pairs[:, 1]) >= 32000).any():
            raise DlibFormatError("shape predictor holds an infinite or NaN value")
        return np.ldexp(pairs[:, 0].astype(np.float64), pairs[:, 1]).astype(np.float32)

    def column(self) -> np.ndarray:
        """A dlib ``matrix<float,0,1>``: -rows, -1, then the values."""
        rows, cols = -self.int(), -self.int()
        if cols != 1 or rows < 0:
            raise DlibFormatError(f"expected a column vector, got {rows}x{cols}")
        return self.floats(rows)


def parse(data: bytes) -> dict[str, np.ndarray]:
    """The arrays of a dlib ``shape_predictor`` serialisation (version 1): ``initial``
    (2P,), per cascade level ``splits`` (levels, trees, S, 2) feature pairs and ``thresh``
    (levels, trees, S), ``leaves`` (levels, trees, S + 1, 2P), ``anchor`` (levels, F) and
    ``deltas`` (levels, F, 2)."""
    raw = np.frombuffer(data, np.uint8)
    ints = _Ints(decode_ints(raw, token_starts(raw)))
    if ints.int() != 1:
        raise DlibFormatError("unknown shape predictor version")
    initial = ints.column()
    dims = len(initial)
    levels = ints.int()
    splits, thresh, leaves = [], [], []
    for _ in range(levels):
        trees = ints.int()
        lv_splits, lv_thresh, lv_leaves = [], [], []
        for _ in range(trees):
            n_splits = ints.int()
            block = ints.take(4 * n_splits).reshape(n_splits, 4)
            lv_splits.append(block[:, :2])
            lv_thresh.append(np.ldexp(block[:, 2].astype(np.float64), block[:, 3]).astype(np.float32))
            n_leaves = ints.int()
            if n_leaves != n_splits + 1:
                raise DlibFormatError("a regression tree must have one more leaf than splits")
            body = ints.take(n_leaves * (2 + 2 * dims)).reshape(n_leaves, 2 + 2 * dims)
            if (body[:, 0] != -dims).any() or (body[:, 1] != -1).any():
                raise DlibFormatError("leaf values of the wrong size")
            pairs = body[:, 2:].reshape(n_leaves, dims, 2)
            lv_leaves.append(np.ldexp(pairs[..., 0].astype(np.float64), pairs[..., 1])
                             .astype(np.float32))
        splits.append(np.stack(lv_splits))
        thresh.append(np.stack(lv_thresh))
        leaves.append(np.stack(lv_leaves))
    if ints.int() != levels:
        raise DlibFormatError("anchor indices do not match the cascade")
    anchor = np.stack([ints.take(ints.int()).copy() for _ in range(levels)])
    if ints.int() != levels:
        raise DlibFormatError("pixel deltas do not match the cascade")
    deltas = np.stack([ints.floats(2 * ints.int()).reshape(-1, 2) for _ in range(levels)])
    if ints.i != len(ints.v):
        raise DlibFormatError("trailing data after the shape predictor")
    return {"initial": initial, "splits": np.stack(splits).astype(np.int32),
            "thresh": np.stack(thresh), "leaves": np.stack(leaves), "anchor": anchor.astype(np.int32),
            "deltas": deltas}


# ------------------------------------------------------------------ evaluation


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """dlib's ``find_similarity_transform`` (Umeyama), its 2x2 part, in double. In two
    dimensions Umeyama's rotation and scale have a closed form: ``c R = [[a, -b], [b, a]]``
    with ``a = trace(cov) / var(src)`` and ``b = (cov10 - cov01) / var(src)`` (a reflection is
    never chosen unless the points are reflected, which a face's shapes are not)."""
    a_, b_ = src - src.mean(axis=0), dst - dst.mean(axis=0)
    var = float((a_ * a_).sum())
    if var == 0:
        return np.eye(2)
    cov = b_.T @ a_
    a = (cov[0, 0] + cov[1, 1]) / var
    b = (cov[1, 0] - cov[0, 1]) / var
    return np.array([[a, -b], [b, a]])


class ShapeForest:
    """One shape predictor, evaluated as dlib evaluates it (see the module doc)."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.initial = np.asarray(arrays["initial"], np.float32).reshape(-1, 2)
        self._initial64 = self.initial.astype(np.float64)
        splits = np.asarray(arrays["splits"], np.intp)
        self.thresh = np.asarray(arrays["thresh"], np.float32)
        self.leaves = np.asarray(arrays["leaves"], np.float32)
        self.anchor = np.asarray(arrays["anchor"], np.intp)
        self.deltas = np.asarray(arrays["deltas"], np.float32)
        levels, trees, n_splits, _ = splits.shape
        self.depth = int(np.log2(n_splits + 1))
        if 2 ** self.depth - 1 != n_splits or self.depth > 5:
            raise DlibFormatError("regression trees must be complete binary trees")
        self.idx1, self.idx2 = splits[..., 0], splits[..., 1]
        # which leaf the split outcomes of one tree lead to, by the outcomes as a bit pattern
        # (bit j: split j went left), so that a tree is one table look-up, not a walk
        self._bits = (1 << np.arange(n_splits)).astype(np.int64)
        codes = np.arange(1 << n_splits)
        node = np.zeros(len(codes), np.int64)
        for _ in range(self.depth):
            went_left = (codes >> node) & 1
            node = 2 * node + 2 - went_left
        self._leaf_of = (node - n_splits).astype(np.intp)
        self._rows = np.arange(trees)[:, None] * (n_splits + 1)
        self._flat_leaves = self.leaves.reshape(levels, trees * (n_splits + 1), -1)
        self.points = len(self.initial)

    def __call__(self, intensity: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
        """The (points, 2) landmarks (float32 of integers, as dlib's rounded points) in the
        box ``rect`` = (left, top, right, bottom), inclusive, as a ``dlib.rectangle``, of
        ``intensity``: the image as dlib's pixel intensities (:func:`intensity`)."""
        left, top, right, bottom = rect
        h, w = intensity.shape
        flat = np.append(intensity.reshape(-1), np.float32(0))  # the last: outside the image
        scale = np.array([right - left, bottom - top], np.float64)
        origin = np.array([left, top], np.float64)
        shape = self.initial.copy()
        rows = self._rows[:, 0]
        for level in range(len(self.thresh)):
            m = _similarity(self._initial64, shape.astype(np.float64)).astype(np.float32)
            moved = self.deltas[level] @ m.T + shape[self.anchor[level]]
            px = np.floor(moved.astype(np.float64) * scale + origin + 0.5).astype(np.intp)
            x, y = px[:, 0], px[:, 1]
            at = np.where((x >= 0) & (x < w) & (y >= 0) & (y < h), y * w + x, h * w)
            values = flat[at]
            went_left = values[self.idx1[level]] - values[self.idx2[level]] > self.thresh[level]
            leaf = self._leaf_of[went_left @ self._bits]
            chosen = self._flat_leaves[level][rows + leaf]
            # dlib adds the leaves tree after tree: a running float32 sum in that order
            shape = np.add.reduce(np.vstack([shape.reshape(1, -1), chosen]), axis=0
                                  ).reshape(-1, 2)
        return np.floor(shape.astype(np.float64) * scale + origin + 0.5).astype(np.float32)


def intensity(pixels: np.ndarray) -> np.ndarray:
    """dlib's ``get_pixel_intensity`` of every pixel: grey as is, RGB as (R + G + B) / 3
    truncated, as float32."""
    if pixels.ndim == 2:
        return pixels.astype(np.float32)
    return (pixels.astype(np.uint16).sum(axis=2) // 3).astype(np.float32)


# ------------------------------------------------------------------ the cache


def load(source: Path, cache_dir: Path | None) -> ShapeForest:
    """The shape predictor of ``source`` (a dlib ``.dat``): from ``cache_dir``'s saved arrays
    when their digest matches, else parsed from the ``.dat`` and saved there (a cache that
    cannot be written is skipped)."""
    if cache_dir is None:
        return ShapeForest(parse(source.read_bytes()))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    path = cache_dir / f"{source.stem}-{digest[:16]}-v{FORMAT_VERSION}.npz"
    side = path.with_name(path.name + ".sha256")
    try:
        saved = path.read_bytes()
        if hashlib.sha256(saved).hexdigest() == side.read_text().split()[0]:
            import io

            with np.load(io.BytesIO(saved)) as arrays:
                return ShapeForest(dict(arrays))
    except (OSError, IndexError, ValueError, KeyError):
        pass  # absent, partly written or unreadable: parse the .dat and save it again
    arrays = parse(source.read_bytes())
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        digest_npz = hashlib.sha256(tmp.read_bytes()).hexdigest()
        os.replace(tmp, path)  # the arrays first, then their digest: a crash between -> redone
        side_tmp = side.with_name(f"{side.name}.{os.getpid()}.tmp")
        side_tmp.write_text(f"{digest_npz}  {path.name}\n")
        os.replace(side_tmp, side)
    except OSError:
        pass
    return ShapeForest(arrays)


def main() -> int:
    import argparse
    import sys
    import tempfile
    import time

    sys.path.insert(0, str(Path(__file__).parent))
    from engine import DEFAULT_DATA, lfw_view1  # a bench sibling

    from candor.face.engine import Engine
    from candor.face.imaging import load_image
    from candor.models.dlib_backend import to_rect
    from candor.models.files import model_path

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--photos", type=int, default=60)
    args = ap.parse_args()
    engine = Engine()
    reference = getattr(engine.backend, "reference", engine.backend)
    faces = []
    for path in lfw_view1(DEFAULT_DATA / "lfw", args.photos):
        image = load_image(path)
        faces += [(image.pixels, to_rect(d)) for d in engine.find_faces(image)]
    with tempfile.TemporaryDirectory() as cache:
        for points in (5, 68):
            source = model_path(f"shape_predictor_{points}_face_landmarks.dat")
            t = time.process_time()
            load(source, Path(cache))
            converted = time.process_time() - t
            t = time.process_time()
            forest = load(source, Path(cache))
            loaded = time.process_time() - t
            t = time.process_time()
            dlib_predictor = reference.shape_predictors[points]
            dlib_loaded = time.process_time() - t if points == 5 else float("nan")
            same, worst, t_dlib, t_numpy = 0, 0.0, 0.0, 0.0
            for pixels, rect in faces:
                t = time.thread_time()
                shape = dlib_predictor(pixels, rect)
                ref = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
                t_dlib += time.thread_time() - t
                t = time.thread_time()
                got = forest(intensity(pixels), (rect.left(), rect.top(), rect.right(), rect.bottom()))
                t_numpy += time.thread_time() - t
                diff = float(np.abs(got - ref).max())
                same += diff == 0
                worst = max(worst, diff)
            print(f"{points}-point: {same}/{len(faces)} faces identical to dlib (worst {worst} px); "
                  f"ms per face: dlib {1000 * t_dlib / len(faces):.2f}, numpy "
                  f"{1000 * t_numpy / len(faces):.2f}; load: converted {converted:.1f} s once, "
                  f"then {loaded:.2f} s (dlib loads both models in ~1 s; {dlib_loaded:.2f} s here)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
