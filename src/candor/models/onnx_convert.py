"""dlib's networks rebuilt as ONNX graphs, converted at first use and cached in the data dir.

The graphs compute exactly what dlib computes (same weights, same input normalisation, same
padding and pooling arithmetic); only the arithmetic order inside the kernels differs, so
results agree to float32 rounding. Nothing is downloaded: the source is the ``.dat`` file
installed by ``face_recognition_models``.

Cache: ``<data dir>/models/<name>-<sha256(source)[:16]>.onnx`` plus a sidecar
``.onnx.sha256`` holding the SHA-256 of the ``.onnx`` itself and the converter version. A
file whose hash does not match (corrupt, truncated, half written) or that an older converter
wrote is rebuilt, never used.

``onnx`` itself (about 0.3 s to import) is imported only to build a graph, not to find or
check a cached one: a command that starts with the cache in place never loads it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from candor.models import dlib_dnn
from candor.models.dlib_dnn import Layer, Network

if TYPE_CHECKING:
    import onnx

# Bump when the graphs built from the same source change. Written to the sidecar (checked
# on load, so an old cache is rebuilt rather than trusted) and to the model's metadata.
CONVERTER_VERSION = "1"
_VERSION_TAG = f"candor-converter-{CONVERTER_VERSION}"
OPSET = 17

RESNET = "dlib_face_recognition_resnet_model_v1"
MMOD = "mmod_human_face_detector"
SOURCES = {RESNET: f"{RESNET}.dat", MMOD: f"{MMOD}.dat"}

_lock = threading.Lock()


class _Graph:
    """Small helper that accumulates ONNX nodes and initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, stem: str) -> str:
        self._n += 1
        return f"{stem}_{self._n}"

    def const(self, stem: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(stem)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], stem: str | None = None, **attrs) -> str:
        from onnx import helper

        out = self.name(stem or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def _conv_out(size: int, k: int, stride: int, pad: int) -> int:
    """dlib's (and ONNX's) output size: 1 + (in + 2*pad - k) / stride, rounded down."""
    return 1 + (size + 2 * pad - k) // stride


def _chain(g: _Graph, x: str, shape: tuple[int, int, int], layers: list[Layer]):
    """Emit ``layers`` (forward order) on top of tensor ``x`` of shape (C, H, W)."""
    tags: dict[int, tuple[str, tuple[int, int, int]]] = {}
    i = 0
    while i < len(layers):
        layer = layers[i]
        a = layer.attrs
        if layer.kind == "con":
            w, b = layer.weights["weight"], layer.weights["bias"]
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if nxt is not None and nxt.kind == "affine" and nxt.attrs.get("mode") == "conv":
                # Fold the per-channel affine into the convolution (dlib computes
                # (conv(x) + b) * gamma + beta; this is the same up to float rounding).
                gamma, beta = nxt.weights["gamma"], nxt.weights["beta"]
                w = w * gamma.reshape(-1, 1, 1, 1)
                b = b * gamma + beta
                i += 1
            (py, px), (sy, sx) = a["padding"], a["stride"]
            wname = g.const("W", w.astype(np.float32))
            x = g.op("Conv", [x, wname, g.const("B", b.astype(np.float32))],
                     kernel_shape=[a["nr"], a["nc"]],
                     strides=[sy, sx], pads=[py, px, py, px])
            shape = (a["num_filters"], _conv_out(shape[1], a["nr"], sy, py),
                     _conv_out(shape[2], a["nc"], sx, px))
        elif layer.kind == "affine":
            gamma, beta = layer.weights["gamma"], layer.weights["beta"]
            if a.get("mode") == "conv":
                gamma, beta = gamma.reshape(1, -1, 1, 1), beta.reshape(1, -1, 1, 1)
            else:
                gamma, beta = gamma.reshape(1, *shape), beta.reshape(1, *shape)
            x = g.op("Mul", [x, g.const("gamma", gamma)])
            x = g.op("Add", [x, g.const("beta", beta)])
        elif layer.kind == "relu":
            x = g.op("Relu", [x])
        elif layer.kind in ("max_pool", "avg_pool"):
            if a["nr"] == 0 and a["nc"] == 0:
                x = g.op("GlobalMaxPool" if layer.kind == "max_pool" else "GlobalAveragePool", [x])
                shape = (shape[0], 1, 1)
            else:
                (py, px), (sy, sx) = a["padding"], a["stride"]
                extra = {} if layer.kind == "max_pool" else {"count_include_pad": 0}
                x = g.op("MaxPool" if layer.kind == "max_pool" else "AveragePool", [x],
                         kernel_shape=[a["nr"], a["nc"]], strides=[sy, sx],
                         pads=[py, px, py, px], **extra)
                shape = (shape[0], _conv_out(shape[1], a["nr"], sy, py),
                         _conv_out(shape[2], a["nc"], sx, px))
        elif layer.kind == "tag":
            tags[a["id"]] = (x, shape)
        elif layer.kind == "skip":
            x, shape = tags[a["id"]]
        elif layer.kind == "add_prev":
            y, yshape = tags[a["id"]]
            # dlib's add_prev: output has the larger of each dimension and the smaller
            # operand is zero-padded at the high end (tt::add on mismatched tensors).
            out = tuple(max(p, q) for p, q in zip(shape, yshape, strict=True))
            x = _pad_to(g, x, shape, out)
            y = _pad_to(g, y, yshape, out)
            x = g.op("Add", [x, y])
            shape = out
        elif layer.kind == "fc":
            x = g.op("Flatten", [x], axis=1)
            x = g.op("MatMul", [x, g.const("fcW", layer.weights["weight"].astype(np.float32))])
            if "bias" in layer.weights:
                x = g.op("Add", [x, g.const("fcB", layer.weights["bias"].astype(np.float32))])
            shape = (a["num_outputs"], 1, 1)
        else:
            raise ValueError(f"cannot convert layer kind {layer.kind!r}")
        i += 1
    return x, shape


def _pad_to(g: _Graph, x: str, shape, out) -> str:
    if tuple(shape) == tuple(out):
        return x
    pads = [0, 0, 0, 0, 0, out[0] - shape[0], out[1] - shape[1], out[2] - shape[2]]
    return g.op("Pad", [x, g.const("pads", np.array(pads, np.int64))], mode="constant")


def _normalise(g: _Graph, x: str, avg) -> str:
    """uint8 NHWC pixels -> dlib's input tensor: (pixel - avg colour) / 256, NCHW float."""
    from onnx import TensorProto

    x = g.op("Cast", [x], to=TensorProto.FLOAT)
    x = g.op("Sub", [x, g.const("avg", np.array(avg, np.float32).reshape(1, 1, 1, 3))])
    x = g.op("Mul", [x, g.const("inv256", np.array(1 / 256, np.float32))])
    return g.op("Transpose", [x], perm=[0, 3, 1, 2])


def _model(g: _Graph, inputs, outputs, source_sha: str, doc: str) -> onnx.ModelProto:
    import onnx
    from onnx import helper

    graph = helper.make_graph(g.nodes, "candor", inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="candor", doc_string=doc)
    model.ir_version = 8
    helper.set_model_props(model, {"candor_converter_version": CONVERTER_VERSION,
                                   "source_sha256": source_sha})
    onnx.checker.check_model(model)
    return model


def build_resnet(net: Network, source_sha: str = "") -> onnx.ModelProto:
    """The face-recognition ResNet: input ``chips`` uint8 (N, 150, 150, 3) RGB, output
    ``descriptors`` float32 (N, 128), as dlib's ``compute_face_descriptor``."""
    from onnx import TensorProto, helper

    size = (net.input["nr"], net.input["nc"])
    g = _Graph()
    x = _normalise(g, "chips", net.input["avg"])
    x, shape = _chain(g, x, (3, *size), net.layers)
    g.nodes[-1].output[0] = "descriptors"
    inp = helper.make_tensor_value_info("chips", TensorProto.UINT8, ["N", size[0], size[1], 3])
    out = helper.make_tensor_value_info("descriptors", TensorProto.FLOAT, ["N", shape[0]])
    return _model(g, [inp], [out], source_sha, "dlib face recognition ResNet v1 (converted)")


def build_mmod(net: Network, source_sha: str = "") -> onnx.ModelProto:
    """The MMOD face detector's network: input ``pyramid`` float32 (N, 3, H, W), the tiled
    and normalised image pyramid; output ``scores`` (N, windows, H', W')."""
    from onnx import TensorProto, helper

    g = _Graph()
    x, shape = _chain(g, "pyramid", (3, 0, 0), net.layers)
    g.nodes[-1].output[0] = "scores"
    inp = helper.make_tensor_value_info("pyramid", TensorProto.FLOAT, ["N", 3, "H", "W"])
    out = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", shape[0], "h", "w"])
    return _model(g, [inp], [out], source_sha, "dlib MMOD human face detector (converted)")


# ---------------------------------------------------------------- cache


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def source_path(name: str) -> Path:
    from candor.models.files import model_path

    if name not in SOURCES:
        raise ValueError(f"unknown network {name!r}; choose one of {sorted(SOURCES)}")
    return model_path(SOURCES[name])


def cache_path(name: str, data_dir: Path | None = None) -> Path:
    """Where the converted model lives: named by the SHA-256 of its source file."""
    from candor.config import data_dir as default_dir

    root = Path(data_dir) if data_dir is not None else default_dir()
    return root / "models" / f"{name}-{sha256_file(source_path(name))[:16]}.onnx"


def convert(name: str) -> onnx.ModelProto:
    """Parse the installed ``.dat`` and build its ONNX graph (no cache)."""
    src = source_path(name)
    sha = sha256_file(src)
    if name == RESNET:
        return build_resnet(dlib_dnn.load_face_recognition_resnet(src), sha)
    return build_mmod(dlib_dnn.load_mmod_detector(src), sha)


def verify(path: Path) -> bool:
    """True if ``path`` and its sidecar exist, the sidecar was written by this converter
    version, and the file's SHA-256 matches the one in the sidecar."""
    side = path.with_name(path.name + ".sha256")
    try:
        fields = side.read_text().split()
    except OSError:
        return False
    if len(fields) < 3 or fields[2] != _VERSION_TAG:
        return False  # an older converter built it: rebuild rather than trust
    return path.is_file() and sha256_file(path) == fields[0].lower()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure(name: str, data_dir: Path | None = None) -> Path:
    """Path of a verified converted model, converting (again) if missing or corrupt."""
    path = cache_path(name, data_dir)
    with _lock:
        if verify(path):
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        data = convert(name).SerializeToString()
        # Model first, then the sidecar: a crash in between leaves a mismatch -> rebuild.
        _atomic_write(path, data)
        _atomic_write(path.with_name(path.name + ".sha256"),
                      f"{hashlib.sha256(data).hexdigest()}  {path.name}  {_VERSION_TAG}\n".encode())
        return path
