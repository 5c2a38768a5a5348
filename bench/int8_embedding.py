"""int8 quantisation of the embedding ResNet: speed and agreement with fp32 (issue 17; not
shipped, see docs/engine.md, "candor index: where the CPU goes, and levers measured").

    python bench/int8_embedding.py [--keep 3] [--method Entropy] [--out /tmp/int8.onnx]

Static quantisation with ONNX Runtime (QDQ, int8 weights per channel, uint8 activations),
calibrated on the chips (and their mirrors) of 400 FairFace validation photos, never LFW;
``--keep N`` leaves the first and last N of the 29 convolutions, the residual Adds and the final
MatMul in float32 (0: everything quantised). Reports ms per chip for both models and the
distribution of the cosine between the fp32 and int8 embeddings (chip + mirror, unit length,
as candor stores them) of the 400 seeded LFW View 1 photos' centre faces.

LFW accuracy with the int8 model: copy a data dir's ``models/``, put ``--out`` in place of the
``dlib_face_recognition_resnet_model_v1-*.onnx`` there, write its SHA-256 in the sidecar
(``<sha256>  <file name>  candor-converter-1``), and run ``bench/lfw_accuracy.py`` with
``CANDOR_DATA_DIR`` set to it, beside a copy holding the fp32 model.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def chips_of(engine, paths: list[Path]) -> np.ndarray:
    from candor.face.pipeline import analyse_many, central_face

    out = [engine.chips(item.image, item.faces)
           for item in analyse_many(engine, paths, select=central_face, embed=False) if item.faces]
    return np.concatenate(out)


def main() -> int:
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    sys.path.insert(0, str(Path(__file__).parent))
    from engine import DEFAULT_DATA, lfw_view1  # a bench sibling

    from candor.face.engine import Engine
    from candor.models import onnx_convert

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--keep", type=int, default=3)
    ap.add_argument("--method", default="Entropy", choices=["MinMax", "Percentile", "Entropy"])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    engine = Engine(backend="onnx")
    fairface = sorted((DEFAULT_DATA / "fairface-val").glob("*.jpg"))
    random.Random(1).shuffle(fairface)
    calibration = chips_of(engine, fairface[:400])
    calibration = np.concatenate([calibration, calibration[:, :, ::-1]])
    lfw = chips_of(engine, lfw_view1(DEFAULT_DATA / "lfw", 400))
    source = onnx_convert.ensure(onnx_convert.RESNET, None)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.at = 0

        def get_next(self):
            batch = calibration[self.at:self.at + 32]
            self.at += 32
            return {"chips": np.ascontiguousarray(batch)} if len(batch) == 32 else None

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(source), str(pre), skip_symbolic_shape=True)
        nodes = onnx.load(str(pre)).graph.node
        convs = [n.name for n in nodes if n.op_type == "Conv"]
        exclude = ((convs[:args.keep] + convs[-args.keep:]
                    + [n.name for n in nodes if n.op_type in ("Add", "MatMul")])
                   if args.keep else [])
        out = args.out or Path(tmp) / "int8.onnx"
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8,
                        calibrate_method=getattr(CalibrationMethod, args.method),
                        nodes_to_exclude=exclude)

        def session(path: Path):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

        both = np.concatenate([lfw, lfw[:, :, ::-1]])
        vectors = {}
        for name, path in (("fp32", source), ("int8", out)):
            s = session(path)
            t = time.thread_time()
            v = np.concatenate([s.run(None, {"chips": both[i:i + 32]})[0]
                                for i in range(0, len(both), 32)])
            print(f"{name}: {1000 * (time.thread_time() - t) / len(both):.2f} ms per chip")
            v = v[:len(lfw)] + v[len(lfw):]
            vectors[name] = v / np.linalg.norm(v, axis=1, keepdims=True)
    cos = (vectors["fp32"] * vectors["int8"]).sum(axis=1)
    p1, p5, p50 = np.percentile(cos, [1, 5, 50])
    print(f"{args.method}, {args.keep} convolutions at each end in float32: cosine fp32/int8 "
          f"on {len(cos)} LFW chips: min {cos.min():.5f}, 1st pct {p1:.5f}, 5th {p5:.5f}, "
          f"median {p50:.5f}; below 0.998: {int((cos < 0.998).sum())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
