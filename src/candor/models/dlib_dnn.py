"""Reader for dlib's serialized DNN files (``net_type`` written with ``dlib::serialize``).

The format is dlib's own (``dlib/serialize.h``, ``dlib/dnn/core.h``, ``layers.h``, ``input.h``,
``loss.h``, ``tensor.h``). We read it without dlib so that the networks can be rebuilt in ONNX
from the very bytes dlib loads, with no retraining and no download. It is a little over 400
lines long because it is one format: splitting the layer readers from the stream reader
would only scatter the format's description over two files.

Stream layout, outermost object first:

* ``add_loss_layer``: int version (1), the loss details, then the subnetwork.
* ``add_layer``: int version (2), subnetwork, layer details, three bools, ``x_grad``,
  ``cached_output``, ``params_grad`` (tensors, empty in a cleaned net).
* the ``add_layer`` whose subnetwork is the input layer: int version (2 or 3), input layer,
  details, three bools, ``x_grad``, ``cached_output``, ``grad_final`` [, sample expansion].
* ``add_tag_layer`` / ``add_skip_layer``: int version (1), subnetwork -- nothing else, so a
  tag and a skip look the same in the stream and their ids are not stored at all. They come
  back as ``tag_or_skip`` and :func:`resolve` names them from the C++ type definition, as dlib
  itself needs the type to deserialize.

Layers are returned innermost (input side) first, i.e. in forward order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from candor.errors import DlibFormatError  # noqa: F401  (re-exported)


@dataclass
class Layer:
    """One layer: ``kind`` (con, affine, relu, max_pool, avg_pool, add_prev, fc, tag, skip,
    tag_or_skip), scalar attributes, and numpy weights."""

    kind: str
    attrs: dict = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    def __repr__(self) -> str:
        shapes = {k: v.shape for k, v in self.weights.items()}
        return f"Layer({self.kind}, {self.attrs}, {shapes})"


@dataclass
class Network:
    """A parsed network: input layer, layers in forward order, loss layer."""

    input: dict
    layers: list[Layer]
    loss: dict


class _Reader:
    """Cursor over the bytes with dlib's primitive decoders."""

    def __init__(self, data: bytes):
        self.buf = data
        self.pos = 0

    def _need(self, n: int) -> None:
        if self.pos + n > len(self.buf):
            raise DlibFormatError(f"unexpected end of data at byte {self.pos}")

    def int(self) -> int:
        """dlib's integer: control byte (bit 7 = negative, low 4 bits = length), then the
        absolute value in little-endian bytes."""
        self._need(1)
        ctrl = self.buf[self.pos]
        size = ctrl & 0x0F
        if size > 8:
            raise DlibFormatError(f"bad integer control byte {ctrl:#x} at byte {self.pos}")
        self._need(1 + size)
        value = int.from_bytes(self.buf[self.pos + 1:self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if ctrl & 0x80 else value

    def bool(self) -> bool:
        self._need(1)
        ch = self.buf[self.pos:self.pos + 1]
        if ch not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool {ch!r} at byte {self.pos}")
        self.pos += 1
        return ch == b"1"

    def byte(self) -> int:
        self._need(1)
        self.pos += 1
        return self.buf[self.pos - 1]

    def float(self) -> float:
        """dlib's float_details: int64 mantissa then int16 exponent, value = m * 2**e."""
        mantissa = self.int()
        exponent = self.int()
        if exponent == 32000:
            return float("inf")
        if exponent == 32001:
            return float("-inf")
        if exponent in (32002, 32003):
            return float("nan")
        return float(np.ldexp(float(mantissa), exponent))

    def string(self) -> str:
        n = self.int()
        if n < 0 or n > 1 << 20:
            raise DlibFormatError(f"bad string length {n} at byte {self.pos}")
        self._need(n)
        s = self.buf[self.pos:self.pos + n]
        self.pos += n
        return s.decode("latin-1")

    def peek_string(self) -> str | None:
        """The string at the cursor if one plausibly starts there, without moving."""
        saved = self.pos
        try:
            s = self.string()
        except DlibFormatError:
            return None
        finally:
            self.pos = saved
        return s if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_<>]*", s or "-") else None

    def tensor(self) -> np.ndarray:
        """A resizable_tensor: version, then n, k, nr, nc, then the floats. Version 2 stores
        4-byte little-endian IEEE floats; version 1 stores each as a float_details."""
        version = self.int()
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        if version == 2:
            self._need(4 * count)
            arr = np.frombuffer(self.buf, dtype="<f4", count=count, offset=self.pos)
            self.pos += 4 * count
            return arr.astype(np.float32).reshape(shape)
        if version == 1:
            arr = np.array([self.float() for _ in range(count)], dtype=np.float32)
            return arr.reshape(shape)
        raise DlibFormatError(f"unknown tensor version {version} at byte {self.pos}")

    def alias_tensor(self) -> tuple[int, int, int, int]:
        version = self.int()
        if version != 1:
            raise DlibFormatError(f"unknown alias_tensor version {version}")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]


# ---------------------------------------------------------------- layer details


def _con(r: _Reader, name: str) -> Layer:
    if name != "con_4":
        raise DlibFormatError(f"unsupported con version {name!r}")
    params = r.tensor()
    num_filters, nr, nc = r.int(), r.int(), r.int()
    stride_y, stride_x = r.int(), r.int()
    pad_y, pad_x = r.int(), r.int()
    filters = r.alias_tensor()
    biases = r.alias_tensor()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        r.float()
    flat = params.reshape(-1)
    n_f = int(np.prod(filters))
    n_b = int(np.prod(biases))
    if n_f + n_b != flat.size or filters[0] != num_filters:
        raise DlibFormatError("con_ parameter sizes do not add up")
    weight = flat[:n_f].reshape(filters)  # (out, in, nr, nc), NCHW like ONNX
    bias = flat[n_f:].copy()
    return Layer("con", dict(num_filters=num_filters, nr=nr, nc=nc, stride=(stride_y, stride_x),
                             padding=(pad_y, pad_x)), dict(weight=weight, bias=bias))


def _affine_from_bn(r: _Reader, name: str) -> Layer:
    """bn_con2 deserialized into an affine_ layer: dlib folds the running statistics into
    gamma' = gamma / sqrt(var + eps) and beta' = beta - gamma' * mean, in float32."""
    params = r.tensor()
    gamma_shape = r.alias_tensor()
    r.alias_tensor()  # beta
    r.tensor()  # means (training batch)
    r.tensor()  # invstds (training batch)
    running_means = r.tensor().reshape(-1)
    running_vars = r.tensor().reshape(-1)
    r.int()  # num_updates
    r.int()  # running_stats_window_size
    for _ in range(4):
        r.float()
    eps = r.float() if name == "bn_con2" else 1e-5
    n = int(np.prod(gamma_shape))
    flat = params.reshape(-1)
    gamma, beta = flat[:n], flat[n:2 * n]
    g = (gamma / np.sqrt(running_vars + np.float32(eps))).astype(np.float32)
    b = (beta - g * running_means).astype(np.float32)
    return Layer("affine", dict(mode="conv", from_bn=True), dict(gamma=g, beta=b))


def _affine(r: _Reader, name: str) -> Layer:
    if name in ("bn_con2", "bn_con"):
        return _affine_from_bn(r, name)
    if name != "affine_":
        raise DlibFormatError(f"unsupported affine version {name!r}")
    params = r.tensor().reshape(-1)
    gamma_shape = r.alias_tensor()
    r.alias_tensor()
    mode = r.int()  # dlib's layer_mode: CONV_MODE = 0 (per channel), FC_MODE = 1 (per element)
    n = int(np.prod(gamma_shape))
    return Layer("affine", dict(mode="conv" if mode == 0 else "fc", shape=gamma_shape),
                 dict(gamma=params[:n].copy(), beta=params[n:2 * n].copy()))


def _pool(kind: str):
    def read(r: _Reader, name: str) -> Layer:
        if not name.endswith("_2"):
            raise DlibFormatError(f"unsupported pooling version {name!r}")
        nr, nc, sy, sx, py, px = (r.int() for _ in range(6))
        return Layer(kind, dict(nr=nr, nc=nc, stride=(sy, sx), padding=(py, px)))
    return read


def _fc(r: _Reader, name: str) -> Layer:
    if name != "fc_2":
        raise DlibFormatError(f"unsupported fc version {name!r}")
    num_outputs, num_inputs = r.int(), r.int()
    params = r.tensor().reshape(-1)
    weights = r.alias_tensor()
    r.alias_tensor()  # biases
    bias_mode = r.int()  # 0 = FC_HAS_BIAS, 1 = FC_NO_BIAS
    for _ in range(4):
        r.float()
    n_w = int(np.prod(weights))
    if n_w != num_inputs * num_outputs:
        raise DlibFormatError("fc_ weight size does not match num_inputs * num_outputs")
    # dlib computes output = input (N x num_inputs) * W (num_inputs x num_outputs).
    w = params[:n_w].reshape(num_inputs, num_outputs)
    out = dict(weight=w.copy())
    if bias_mode == 0:
        out["bias"] = params[n_w:n_w + num_outputs].copy()
    return Layer("fc", dict(num_outputs=num_outputs, num_inputs=num_inputs), out)


def _simple(kind: str):
    def read(r: _Reader, name: str) -> Layer:
        return Layer(kind)
    return read


_DETAILS = {
    "con_4": _con,
    "affine_": _affine,
    "bn_con2": _affine,
    "bn_con": _affine,
    "max_pool_2": _pool("max_pool"),
    "avg_pool_2": _pool("avg_pool"),
    "fc_2": _fc,
    "relu_": _simple("relu"),
    "add_prev_": _simple("add_prev"),
}


def _details(r: _Reader) -> Layer:
    name = r.string()
    reader = _DETAILS.get(name)
    if reader is None:
        raise DlibFormatError(f"unsupported layer {name!r} at byte {r.pos}")
    return reader(r, name)


# ---------------------------------------------------------------- input and loss layers


def _input(r: _Reader) -> dict:
    name = r.string()
    if name == "input_rgb_image_sized":
        avg = (r.float(), r.float(), r.float())
        nr, nc = r.int(), r.int()
        return dict(kind="input_rgb_image_sized", avg=avg, nr=nr, nc=nc)
    if name in ("input_rgb_image_pyramid", "input_rgb_image_pyramid2"):
        avg = (r.float(), r.float(), r.float())
        padding, outer = 10, 11  # dlib's defaults when the old version did not store them
        if name.endswith("2"):
            padding, outer = r.int(), r.int()
        return dict(kind="input_rgb_image_pyramid", avg=avg, pyramid_padding=padding,
                    pyramid_outer_padding=outer)
    raise DlibFormatError(f"unsupported input layer {name!r}")


def _box_overlap(r: _Reader) -> dict:
    return dict(iou_thresh=r.float(), percent_covered_thresh=r.float())


def _mmod_options(r: _Reader) -> dict:
    version = r.int()
    if not 1 <= version <= 4:
        raise DlibFormatError(f"unsupported mmod_options version {version}")
    if version == 1:
        windows = [dict(width=r.int(), height=r.int(), label="")]
    else:
        windows = []
        for _ in range(r.int()):
            width, height = r.int(), r.int()
            label = r.string() if version >= 2 else ""
            windows.append(dict(width=width, height=height, label=label))
    opts = dict(detector_windows=windows, loss_per_false_alarm=r.float(),
                loss_per_missed_target=r.float(), truth_match_iou_threshold=r.float(),
                overlaps_nms=_box_overlap(r), overlaps_ignore=_box_overlap(r),
                assume_image_pyramid=True, use_bounding_box_regression=False)
    if version >= 3:
        opts["assume_image_pyramid"] = r.byte() != 0
    if version >= 4:
        opts["use_bounding_box_regression"] = r.bool()
        opts["bbr_lambda"] = r.float()
    return opts


def _loss(r: _Reader) -> dict:
    name = r.string()
    if name == "loss_metric_2":
        return dict(kind="loss_metric", margin=r.float(), dist_thresh=r.float())
    if name == "loss_metric_":
        return dict(kind="loss_metric", margin=0.1, dist_thresh=0.75)
    if name == "loss_mmod_":
        return dict(kind="loss_mmod", options=_mmod_options(r))
    raise DlibFormatError(f"unsupported loss layer {name!r}")


# ---------------------------------------------------------------- whole network


def parse(data: bytes) -> Network:
    """Parse a serialized ``add_loss_layer<...>`` network into numpy weights and layers."""
    r = _Reader(data)
    if r.int() != 1:
        raise DlibFormatError("not a dlib add_loss_layer (version != 1)")
    loss = _loss(r)
    # Walk down the nesting: each wrapper writes its version before its subnetwork.
    stack: list[tuple[str, int]] = []
    while True:
        version = r.int()
        name = r.peek_string()
        if name is not None and name.startswith("input"):
            if version not in (2, 3):
                raise DlibFormatError(f"unsupported input add_layer version {version}")
            inp = _input(r)
            first = _details(r)
            r.bool(), r.bool(), r.bool()
            r.tensor(), r.tensor(), r.tensor()  # x_grad, cached_output, grad_final
            if version >= 3:
                r.int()  # sample expansion factor
            layers = [first]
            break
        if version == 1:
            stack.append(("tag_or_skip", version))
        elif version == 2:
            stack.append(("layer", version))
        else:
            raise DlibFormatError(f"unexpected version {version} at byte {r.pos}")
        if len(stack) > 10000:
            raise DlibFormatError("network nesting too deep")
    for what, _version in reversed(stack):
        if what == "tag_or_skip":
            layers.append(Layer("tag_or_skip"))
            continue
        layer = _details(r)
        r.bool(), r.bool(), r.bool()
        r.tensor(), r.tensor(), r.tensor()  # x_grad, cached_output, params_grad
        layers.append(layer)
    if r.pos != len(data):
        raise DlibFormatError(f"{len(data) - r.pos} trailing bytes after the network")
    return Network(input=inp, layers=layers, loss=loss)


def load(path: str | Path) -> Network:
    return parse(Path(path).read_bytes())


def resolve(net: Network, expected: list[str]) -> Network:
    """Name the tags, skips and add_prevs from the C++ type, given as forward-order tokens
    (``con``, ``tag1``, ``skip1``, ``add_prev2`` ...). Raises if the file does not match."""
    if len(expected) != len(net.layers):
        raise DlibFormatError(f"expected {len(expected)} layers, file has {len(net.layers)}")
    out = []
    for token, layer in zip(expected, net.layers, strict=True):
        m = re.fullmatch(r"(tag|skip|add_prev)(\d+)", token)
        kind, ident = (m.group(1), int(m.group(2))) if m else (token, None)
        ok = layer.kind == kind or (layer.kind == "tag_or_skip" and kind in ("tag", "skip"))
        if not ok:
            raise DlibFormatError(f"layer {len(out)}: file has {layer.kind}, type says {token}")
        attrs = dict(layer.attrs)
        if ident is not None:
            attrs["id"] = ident
        out.append(Layer(kind, attrs, layer.weights))
    return Network(net.input, out, net.loss)


# ---------------------------------------------------------------- the two networks we ship


def _resnet_tokens() -> list[str]:
    """dlib's ``anet_type`` from dnn_face_recognition_ex.cpp, in forward order."""
    block = ["con", "affine", "relu", "con", "affine"]
    ares = ["tag1", *block, "add_prev1", "relu"]
    ares_down = ["tag1", *block, "tag2", "skip1", "avg_pool", "add_prev2", "relu"]
    tokens = ["con", "affine", "relu", "max_pool"]
    tokens += ares * 3  # alevel4: 32 filters
    for repeats in (3, 2, 2, 0):  # alevel3 (64), alevel2 (128), alevel1 (256), alevel0 (256)
        tokens += ares_down + ares * repeats
    tokens += ["avg_pool", "fc"]
    return tokens


RESNET_TOKENS = _resnet_tokens()


def load_face_recognition_resnet(path: str | Path) -> Network:
    """``dlib_face_recognition_resnet_model_v1.dat`` with its tags and skips named."""
    net = resolve(load(path), RESNET_TOKENS)
    if net.input["kind"] != "input_rgb_image_sized" or net.loss["kind"] != "loss_metric":
        raise DlibFormatError("not dlib's face recognition ResNet")
    return net


def load_mmod_detector(path: str | Path) -> Network:
    """``mmod_human_face_detector.dat``: a plain chain of con/affine/relu, loss_mmod."""
    net = load(path)
    if net.input["kind"] != "input_rgb_image_pyramid" or net.loss["kind"] != "loss_mmod":
        raise DlibFormatError("not dlib's MMOD detector")
    if any(layer.kind not in ("con", "affine", "relu") for layer in net.layers):
        raise DlibFormatError("MMOD detector has unexpected layer kinds")
    return net
