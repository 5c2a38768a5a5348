"""The fast backend: dlib's own networks, converted to ONNX, run by ONNX Runtime.

What changes is only *how* the networks run (batched, multi-threaded, BLAS-backed kernels);
*what* they compute stays dlib's: the same weights read from the installed ``.dat`` files,
the same input normalisation, and for the CNN detector the same image pyramid, sliding-window
decoding and non-maximum suppression as dlib's ``cnn_face_detection_model_v1``. The HOG
detector, the shape predictors and chip extraction are cheap and are delegated to the dlib
reference backend, so chips are cut exactly as dlib cuts them.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from functools import cached_property

import numpy as np

from candor.errors import InvalidParameter
from candor.models.base import CHIP_SIZE, EMBEDDING_SIZE, Backend, Detection
from candor.models.dlib_dnn import Network
from candor.system import available_cores

EMBED_CHUNK = 64  # faces per ONNX Runtime call; bounds activation memory for huge batches


def _session(path, threads: int | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or available_cores()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # No busy-waiting between calls: on a shared or oversubscribed machine spinning worker
    # threads steal the cores that image decoding (and other processes) need; measured here
    # on 2 busy cores it was also faster (batch 1: ~12 ms vs ~20 ms per face).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


class OnnxBackend:
    """Same interface and results as :class:`~candor.models.dlib_backend.DlibBackend`."""

    name = "onnx"

    def __init__(self, data_dir=None, threads: int | None = None,
                 reference: Callable[[], Backend] | None = None) -> None:
        self._data_dir = data_dir
        self._threads = threads
        self._reference = reference
        self._load_lock = threading.Lock()
        self._embedders: dict[int, object] = {}

    # ---------------------------------------------------------------- lazy parts

    @cached_property
    def reference(self):
        """The dlib backend, for HOG detection, landmarks and chip extraction: the registry's
        shared instance when it made this backend, else one of our own."""
        if self._reference is not None:
            return self._reference()
        from candor.models.dlib_backend import DlibBackend

        return DlibBackend()

    @cached_property
    def embedder(self):
        return self.embedder_with(None)

    def embedder_with(self, threads: int | None):
        """The embedding session with ``threads`` intra-op threads (None: this backend's
        default, the cores available), made once per thread count. Every count computes the
        same numbers (ONNX Runtime splits a convolution's outputs between its threads, not
        one output's sum; tests/test_onnx_backend.py checks the embeddings are bit-identical)."""
        from candor.models import onnx_convert

        n = threads or self._threads or available_cores()
        with self._load_lock:
            if n not in self._embedders:
                self._embedders[n] = _session(
                    onnx_convert.ensure(onnx_convert.RESNET, self._data_dir), n)
            return self._embedders[n]

    @cached_property
    def mmod(self) -> MmodDetector:
        from candor.models import dlib_dnn, onnx_convert

        with self._load_lock:
            path = onnx_convert.ensure(onnx_convert.MMOD, self._data_dir)
            net = dlib_dnn.load_mmod_detector(onnx_convert.source_path(onnx_convert.MMOD))
            return MmodDetector(net, _session(path, self._threads))

    def warm(self, embed_threads: int | None = None) -> None:
        """Create the embedding session (native work, on its own thread; ``embed_threads``: the
        one :meth:`embed` will be asked for) while dlib's HOG detector and shape predictors load
        here: what the first image would wait for."""
        session = threading.Thread(target=self.embedder_with, args=(embed_threads,),
                                   name="candor-warm-embedder", daemon=True)
        session.start()
        self.reference.warm(embed=False)
        session.join()

    # ---------------------------------------------------------------- interface

    def detect(self, image: np.ndarray, detector: str = "hog",
               upsample: int = 1) -> list[Detection]:
        if detector in ("hog", "yunet"):
            return self.reference.detect(image, detector, upsample)
        if detector == "cnn":
            return self.mmod.detect(image, upsample)
        raise InvalidParameter(f"unknown detector {detector!r}; choose hog, cnn or yunet")

    def landmarks(self, image: np.ndarray, boxes: list[Detection], points: int) -> list[np.ndarray]:
        return self.reference.landmarks(image, boxes, points)

    def chips(self, image: np.ndarray, landmarks5: list[np.ndarray]) -> np.ndarray:
        return self.reference.chips(image, landmarks5)

    def embed(self, chips: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Descriptors of ``chips``; ``threads``: ONNX Runtime's intra-op threads for this call
        (None: the cores available). One thread costs ~15% less CPU per chip than two: the
        choice of a caller that keeps the other cores busy itself (the bulk pipeline)."""
        chips = np.asarray(chips)
        if len(chips) == 0:
            return np.zeros((0, EMBEDDING_SIZE), np.float32)
        if chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise InvalidParameter(
                f"chips must be (N, {CHIP_SIZE}, {CHIP_SIZE}, 3), got {chips.shape}")
        chips = np.ascontiguousarray(chips, dtype=np.uint8)
        session = self.embedder if threads is None else self.embedder_with(threads)
        out = [session.run(None, {"chips": chips[i:i + EMBED_CHUNK]})[0]
               for i in range(0, len(chips), EMBED_CHUNK)]
        return np.concatenate(out).astype(np.float32, copy=False)


# -------------------------------------------------------------------- the MMOD detector


def _round(v: float) -> int:
    """dlib's drectangle -> rectangle conversion as the installed dlib does it: std::round,
    halves away from zero (older sources show floor(v + 0.5); -4.5 tells them apart, and a
    box at the left edge of a photo lands exactly there)."""
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def _area(r) -> int:
    left, top, right, bottom = r
    return max(0, right - left + 1) * max(0, bottom - top + 1)


def _overlaps(a, b, iou: float, covered: float) -> bool:
    """dlib's test_box_overlap: intersection over the area of the *bounding box* of both
    rectangles (``(a+b).area()``), or the fraction of either one covered."""
    inner = _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    if inner == 0:
        return False
    outer = _area((min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])))
    return inner / outer > iou or inner / _area(a) > covered or inner / _area(b) > covered


class MmodDetector:
    """dlib's ``loss_mmod<...input_rgb_image_pyramid<pyramid_down<6>>>`` with the network
    part in ONNX Runtime and the rest (pyramid, decoding, NMS) reproduced from dlib."""

    PYRAMID_N = 6  # pyramid_down<6>: each level is 5/6 the size of the one before

    def __init__(self, net: Network, session) -> None:
        self.session = session
        self.avg = np.array(net.input["avg"], np.float32)
        self.padding = int(net.input["pyramid_padding"])
        self.outer_padding = int(net.input["pyramid_outer_padding"])
        opts = net.loss["options"]
        if opts.get("use_bounding_box_regression"):
            raise NotImplementedError("MMOD bounding-box regression is not supported")
        self.windows = [(w["width"], w["height"]) for w in opts["detector_windows"]]
        nms = opts["overlaps_nms"]
        self.nms = (nms["iou_thresh"], nms["percent_covered_thresh"])
        # output_tensor_to_input_tensor: p -> p*stride - pad + k/2, through every con layer
        # from the last to the first (relu/affine keep coordinates).
        self.convs = [(c.attrs["stride"], c.attrs["padding"], (c.attrs["nr"], c.attrs["nc"]))
                      for c in net.layers if c.kind == "con"]
        # Smallest input side for which every convolution still has a full window (dlib
        # itself fails an assertion below this; no 80-px face fits there anyway).
        side = 1
        for (stride, _), (pad, _), (k, _) in reversed(self.convs):
            side = max(1, (side - 1) * stride + k - 2 * pad)
        self.min_side = side

    # -- dlib's image pyramid (image_pyramid.h: compute_tiled_image_pyramid_details)

    def tiled_rects(self, nr: int, nc: int) -> tuple[list[tuple[int, int, int, int]], int, int]:
        """Rectangles (left, top, right, bottom) of each pyramid level in the tiled image,
        and the tiled image's rows and columns."""
        if nr * nc == 0:
            return [], 0, 0
        padding, outer = self.padding, self.outer_padding
        rate = (self.PYRAMID_N - 1.0) / self.PYRAMID_N
        sizes = [(nr, nc)]  # (height, width)
        while True:
            nr, nc = math.floor(rate * nr), math.floor(rate * nc)
            if nr * nc == 0 or nr < 5:
                break
            sizes.append((nr, nc))
        total_height = sum(h + padding for h, _ in sizes) - padding * 2
        height, prev_width = 0, 0
        h0, w0 = sizes[0]
        for h, w in sizes:
            if w <= w0 - prev_width - padding and (height - h0) * 2 >= (total_height - h0):
                break
            height += h + padding
            prev_width = w
        height -= padding
        width = w0
        out_nr, out_nc = height + outer * 2, width + outer * 2
        rects = []
        y, i = outer, 0
        while y < height + outer and i < len(sizes):
            h, w = sizes[i]
            rects.append((outer, y, outer + w - 1, y + h - 1))
            y += h + padding
            i += 1
        y -= padding
        first = rects[0]
        while i < len(sizes):
            h, w = sizes[i]
            # rectangle(p1, p2) with p1 = bottom-right, p2 = p1 - (w-1, h-1)
            x1, y1 = outer + width - 1, y - 1
            rect = (x1 - (w - 1), y1 - (h - 1), x1, y1)
            if not (rect[2] < first[0] or rect[0] > first[2] or rect[3] < first[1]
                    or rect[1] > first[3]):
                break  # would overlap the full-size image
            rects.append(rect)
            y -= h + padding
            i += 1
        return rects, out_nr, out_nc

    def pyramid(self, image: np.ndarray):
        """The network input: the tiled pyramid, normalised as dlib's to_tensor does, levels
        made by resizing the previous level's tensor with dlib's own bilinear resize."""
        import dlib

        nr, nc = image.shape[:2]
        rects, out_nr, out_nc = self.tiled_rects(nr, nc)
        data = np.zeros((3, out_nr, out_nc), np.float32)
        if not rects:
            return data, rects
        l0, t0, r0, b0 = rects[0]
        data[:, t0:b0 + 1, l0:r0 + 1] = ((image.astype(np.float32) - self.avg) / np.float32(256)
                                         ).transpose(2, 0, 1)
        for prev, cur in zip(rects, rects[1:], strict=False):
            pl, pt, pr, pb = prev
            cl, ct, cr, cb = cur
            for k in range(3):
                src = np.ascontiguousarray(data[k, pt:pb + 1, pl:pr + 1])
                data[k, ct:cb + 1, cl:cr + 1] = dlib.resize_image(src, cb - ct + 1, cr - cl + 1)
        return data, rects

    # -- decoding (loss.h: loss_mmod_::to_label / tensor_to_dets)

    def _to_input(self, x: np.ndarray, y: np.ndarray):
        for (sy, sx), (py, px), (kr, kc) in reversed(self.convs):
            x = x * sx - px + kc // 2
            y = y * sy - py + kr // 2
        return x, y

    @staticmethod
    def _nearest_rect(rects, px: float, py: float) -> int:
        best, best_dist = 0, math.inf
        for i, (left, top, right, bottom) in enumerate(rects):
            if left <= px <= right and top <= py <= bottom:
                return i
            nx, ny = min(max(px, left), right), min(max(py, top), bottom)
            dist = math.hypot(nx - px, ny - py)
            if dist < best_dist:
                best, best_dist = i, dist
        return best

    def _tensor_to_image(self, rects, rect):
        """tiled_pyramid_to_image: find the pyramid level by the box centre, then map up with
        pyramid_down<6>::point_up (p * 6/5 + 0.3) once per level."""
        left, top, right, bottom = rect
        level = self._nearest_rect(rects, (left + right) / 2, (top + bottom) / 2)
        ox, oy = rects[level][0], rects[level][1]
        pts = [left - ox, top - oy, right - ox, bottom - oy]
        ratio = self.PYRAMID_N / (self.PYRAMID_N - 1.0)
        for _ in range(level):
            pts = [v * ratio + 0.3 for v in pts]
        return pts

    def decode(self, scores: np.ndarray, rects, threshold: float = 0.0):
        """Sliding-window detections (rect, score) after dlib's non-max suppression."""
        dets = []
        for k, (ww, wh) in enumerate(self.windows):
            rows, cols = np.nonzero(scores[k] > threshold)
            if len(rows) == 0:
                continue
            xs, ys = self._to_input(cols.astype(np.float64), rows.astype(np.float64))
            for r, c, x, y in zip(rows, cols, xs, ys, strict=True):
                # centered_drect(p, w, h): half-sizes (w-1)/2, (h-1)/2
                box = (x - (ww - 1) / 2, y - (wh - 1) / 2, x + (ww - 1) / 2, y + (wh - 1) / 2)
                img = self._tensor_to_image(rects, box)
                dets.append((float(scores[k, r, c]), tuple(_round(v) for v in img)))
        dets.sort(key=lambda d: d[0], reverse=True)
        final: list[tuple[float, tuple[int, int, int, int]]] = []
        for score, rect in dets:
            if any(_overlaps(f[1], rect, *self.nms) for f in final):
                continue
            final.append((score, rect))
        return final

    # -- the python binding's upsampling (cnn_face_detector.cpp: pyramid_up with pyramid_down<2>)

    @staticmethod
    def _pyramid_up(image: np.ndarray) -> np.ndarray:
        """pyramid_up(img, pyramid_down<2>): size from rect_up of the image rect, where
        point_up(p) = (p + (1.25, 0.75)) * 2, then dlib's bilinear resize."""
        import dlib

        nr, nc = image.shape[:2]
        right = _round((nc - 1 + 1.25) * 2)
        bottom = _round((nr - 1 + 0.75) * 2)
        return dlib.resize_image(np.ascontiguousarray(image), bottom + 1, right + 1)

    @staticmethod
    def _rect_down(rect, levels: int):
        pts = [float(v) for v in rect]
        for _ in range(levels):
            pts = [pts[0] / 2 - 1.25, pts[1] / 2 - 0.75, pts[2] / 2 - 1.25, pts[3] / 2 - 0.75]
        return tuple(_round(v) for v in pts)

    def detect(self, image: np.ndarray, upsample: int = 0) -> list[Detection]:
        image = np.asarray(image)
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InvalidParameter("image must be an RGB uint8 array (H, W, 3)")
        for _ in range(max(0, int(upsample))):
            image = self._pyramid_up(image)
        rects, nr, nc = self.tiled_rects(*image.shape[:2])
        if not rects or min(nr, nc) < self.min_side or any(
                r[2] < r[0] or r[3] < r[1] or r[0] < 0 or r[1] < 0 for r in rects):
            return []
        data, rects = self.pyramid(image)
        scores = self.session.run(None, {"pyramid": data[None]})[0][0]
        out = []
        for score, rect in self.decode(scores, rects):
            left, top, right, bottom = self._rect_down(rect, max(0, int(upsample)))
            out.append(Detection(left, top, right + 1, bottom + 1, score, "cnn"))
        return out
