"""A second recognition model fused with dlib's (issue 16; evaluation only, nothing ships).

The model: ``models/faceres.json`` + ``faceres.bin`` from the npm package ``@vladmandic/human``
3.3.6 (MIT for the package; the json says ``generatedBy`` HSE-asavchenko/HSE_FaceRec_tf: a
MobileNet v1 trained for identity, age and gender). Only the identity feature is used, the graph
is cut at ``global_pooling/Mean`` (1024-d): candor has no demographic attribute model and the
age / gender heads are never built. The TF.js graph is translated here into ONNX (NHWC -> NCHW,
float16 weights dequantised) and run with ONNX Runtime; the weights are read from an unpacked
``npm pack @vladmandic/human@3.3.6`` (``--human-package``) and never committed.

Input as human feeds it (dist/human.node.js, ``face.description``): the face crop (the
detector's box enlarged 1.4x, square, no rotation by default) resized bilinearly to 224x224,
RGB 0..255. Here the box is candor's own (the eval's detector and face choice: the face nearest
the centre), so the crops are of the same faces the dlib embeddings in the eval cache are of.

Fusion: ``w * cos_dlib / sd_dlib + (1 - w) * cos_faceres / sd_faceres`` (each cosine scaled by
its spread over the fit data's impostors), written as one concatenated, weighted vector so that
``bench/fairness_methods.py``'s functions score it unchanged; ``w`` is chosen on LFW
pairsDevTrain only (never FairFace), then evaluated with that script's cross-dataset protocol.

    nice -n 10 python bench/second_model.py --data-dir /work/wt/fairness-cache \\
        --human-package /tmp/npmh/package --json bench/second-model.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import fairness_methods as fm  # noqa: E402

CUT = "global_pooling/Mean"
SIZE = 224


# -- the model: TF.js graph -> ONNX ---------------------------------------------------------
def load_weights(pkg: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The graph json and its weights, dequantised to float32."""
    j = json.loads((pkg / "models/faceres.json").read_text())
    out: dict[str, np.ndarray] = {}
    for group in j["weightsManifest"]:
        blob = b"".join((pkg / "models" / p).read_bytes() for p in group["paths"])
        pos = 0
        for w in group["weights"]:
            n = int(np.prod(w["shape"])) if w["shape"] else 1
            q = (w.get("quantization") or {}).get("dtype")
            dt = {"float16": np.float16, "uint8": np.uint8, "uint16": np.uint16}.get(q) or \
                {"float32": np.float32, "int32": np.int32}[w["dtype"]]
            size = n * np.dtype(dt).itemsize
            a = np.frombuffer(blob, dt, n, pos).reshape(w["shape"])
            pos += size
            if q in ("uint8", "uint16"):
                a = a * w["quantization"]["scale"] + w["quantization"]["min"]
            out[w["name"]] = a.astype(np.float32 if w["dtype"] == "float32" else w["dtype"])
    return j, out


def build_onnx(pkg: Path):
    """ONNX model of the graph up to the identity feature, input NHWC 0..255."""
    import onnx
    from onnx import helper, numpy_helper

    j, w = load_weights(pkg)
    nodes = {n["name"]: n for n in j["modelTopology"]["node"]}
    needed, stack = [], [CUT]
    seen: set[str] = set()
    while stack:                                   # the ops CUT depends on, nothing else
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        needed.append(name)
        stack.extend(i.split(":")[0] for i in nodes[name].get("input", []))
    inits, out_nodes = [], [helper.make_node("Transpose", ["input_1"], ["x_nchw"], perm=[0, 3, 1, 2])]
    rename = {"input_1": "x_nchw"}
    order = [n["name"] for n in j["modelTopology"]["node"] if n["name"] in seen]
    for name in order:
        n = nodes[name]
        op, ins = n["op"], [rename.get(i, i) for i in n.get("input", [])]
        if op == "Placeholder":
            continue
        if op == "Const":
            a = w[name]
            if a.ndim == 1 and name != "global_pooling/Mean/reduction_indices":
                a = a.reshape(1, -1, 1, 1)         # per-channel constants, NCHW
            inits.append((name, a))
            continue
        attrs = n.get("attr", {})
        if op in ("Conv2D", "DepthwiseConv2dNative"):
            k = w[n["input"][1]]
            strides = [int(s) for s in attrs["strides"]["list"]["i"]][1:3]
            if op == "Conv2D":
                kern, group = k.transpose(3, 2, 0, 1), 1           # HWIO -> OIHW
            else:
                kern, group = k.transpose(2, 3, 0, 1).reshape(-1, 1, *k.shape[:2]), k.shape[2]
            inits = [(a, b) for a, b in inits if a != n["input"][1]]
            inits.append((n["input"][1], kern))
            out_nodes.append(helper.make_node("Conv", ins[:2], [name], strides=strides,
                                              auto_pad="SAME_UPPER", group=group))
        elif op in ("Add", "Mul", "Minimum", "Maximum", "Relu"):
            onnx_op = {"Minimum": "Min", "Maximum": "Max"}.get(op, op)
            out_nodes.append(helper.make_node(onnx_op, ins, [name]))
        elif op == "Mean":
            out_nodes.append(helper.make_node("ReduceMean", [ins[0]], [name], axes=[2, 3],
                                              keepdims=0))
        else:
            raise ValueError(f"unexpected op {op} before {CUT}")
    inits = [(a, b) for a, b in inits if a != "global_pooling/Mean/reduction_indices"]
    graph = helper.make_graph(
        out_nodes, "faceres_identity",
        [helper.make_tensor_value_info("input_1", onnx.TensorProto.FLOAT, ["n", SIZE, SIZE, 3])],
        [helper.make_tensor_value_info(CUT, onnx.TensorProto.FLOAT, ["n", 1024])],
        [numpy_helper.from_array(np.ascontiguousarray(b, np.float32), a) for a, b in inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model


def session(pkg: Path, threads: int = 2):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(build_onnx(pkg).SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


# -- faces: candor's detection, human's crop -------------------------------------------------
def crop(pixels: np.ndarray, box: np.ndarray, scale: float) -> np.ndarray:
    """Square crop ``scale`` x the box's larger side around its centre, 224x224 RGB float."""
    from PIL import Image as PILImage

    left, top, right, bottom = box
    cx, cy, half = (left + right) / 2, (top + bottom) / 2, scale * max(right - left, bottom - top) / 2
    im = PILImage.fromarray(pixels).crop((round(cx - half), round(cy - half),
                                          round(cx + half), round(cy + half)))
    return np.asarray(im.resize((SIZE, SIZE), PILImage.BILINEAR), np.float32)


def features(paths: list, work: Path, sess, scale: float, tag: str) -> np.ndarray:
    """faceres features (n, 1024) of each photo's central face (NaN rows: no face); the boxes
    and features are cached under ``work`` (keyed by the photo list and scale)."""
    from candor.face.engine import Engine
    from candor.face.imaging import MAX_S3_IMAGE_BYTES, read_image
    from candor.face.pipeline import FACE_SELECTORS, analyse_many

    key = hashlib.sha1("\n".join(map(str, paths)).encode()).hexdigest()[:12]
    fpath = work / f"{tag}-{key}-x{scale:g}.npy"
    if fpath.exists():
        return np.load(fpath)
    bpath = work / f"{tag}-{key}-boxes.npy"
    boxes = np.load(bpath) if bpath.exists() else None
    out = np.full((len(paths), 1024), np.nan, np.float32)
    batch: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        if batch:
            x = np.stack([b for _, b in batch])
            out[[i for i, _ in batch]] = sess.run(None, {"input_1": x})[0]
            batch.clear()

    t0 = time.perf_counter()

    def load(p):
        return read_image(p, max_bytes=MAX_S3_IMAGE_BYTES)

    if boxes is None:
        boxes = np.full((len(paths), 4), np.nan)
        items = analyse_many(Engine(), paths, attributes=None, embed=False, landmarks=False,
                             select=FACE_SELECTORS["centre"], load=load)
        for i, item in enumerate(items):
            if item.error is None and item.faces:
                b = item.faces[0].box
                boxes[i] = (b.left, b.top, b.right, b.bottom)
                batch.append((i, crop(item.image.pixels, boxes[i], scale)))
            if len(batch) >= 32:
                flush()
            if i % 1000 == 999:
                print(f"  {tag}: {i + 1}/{len(paths)} ({time.perf_counter() - t0:.0f} s)", flush=True)
        np.save(bpath, boxes)
    else:
        for i, p in enumerate(paths):
            if not np.isnan(boxes[i, 0]):
                batch.append((i, crop(load(p).pixels, boxes[i], scale)))
            if len(batch) >= 32:
                flush()
    flush()
    np.save(fpath, out)
    print(f"  {tag}: {len(paths)} photos in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def unit(x: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
    """Rows centred (on the fit data's mean, if given) and scaled to unit length; NaN -> 0."""
    x = np.nan_to_num(x, nan=0.0)
    found = np.abs(x).sum(1) > 0
    if centre is not None:
        x = np.where(found[:, None], x - centre, 0)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(n > 0, x / np.where(n > 0, n, 1), 0).astype(np.float32)


def fused(d: np.ndarray, f: np.ndarray, w: float, sd_d: float, sd_f: float) -> np.ndarray:
    """Vectors whose dot products are ``w cos_d / sd_d + (1 - w) cos_f / sd_f`` (rescaled)."""
    a, b = w / sd_d, (1 - w) / sd_f
    return (np.hstack([np.sqrt(a) * d, np.sqrt(b) * f]) / np.sqrt(a + b)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--human-package", type=Path, default=Path("/tmp/npmh/package"))
    ap.add_argument("--data-dir", default=None, help="the eval cache of dlib embeddings")
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/second-model"))
    ap.add_argument("--scales", default="1.4", help="crop scales to try (chosen on pairsDevTrain)")
    ap.add_argument("--part", default="all", choices=["all", "1", "2"])
    ap.add_argument("--bootstrap", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from candor.eval.metrics import accuracy, best_threshold
    from candor.eval.pairs import read_pairs

    args.work_dir.mkdir(parents=True, exist_ok=True)
    sess = session(args.human_package)
    data = fm.DATA
    train_set, train = fm.embed(data / "lfw/pairsDevTrain.txt", args.data_dir)
    lfw_set, lfw = fm.embed(data / "lfw", args.data_dir)
    ff_set, ff = fm.embed(data / "fairface-val/labels.csv", args.data_dir)
    index = {f: i for i, f in enumerate(lfw_set.files)}
    ptrain, ptest = read_pairs(data / "lfw/pairsDevTrain.txt"), read_pairs(data / "lfw/pairsDevTest.txt")
    tr_rows = np.array([index[f] for f in train_set.files])   # the fit photos within LFW
    ref_ids = np.asarray(train_set.identities)

    def pair_acc(e: np.ndarray) -> tuple[float, float]:
        def sc(pl):
            ia = np.array([index[p.a] for p in pl.pairs])
            ib = np.array([index[p.b] for p in pl.pairs])
            return np.einsum("ij,ij->i", e[ia], e[ib]), np.array([p.same for p in pl.pairs])
        s, same = sc(ptrain)
        t = best_threshold(s, same)
        s2, same2 = sc(ptest)
        return accuracy(s, same, t), accuracy(s2, same2, t)

    # 1. the crop scale and centring, chosen on pairsDevTrain
    report: dict = {"model": "faceres (@vladmandic/human 3.3.6)", "choices": []}
    best = None
    for scale in [float(s) for s in args.scales.split(",")]:
        raw = features(list(lfw_set.paths), args.work_dir, sess, scale, "lfw")
        found = ~np.isnan(raw[:, 0])
        mean = np.nan_to_num(raw[tr_rows]).sum(0) / max(1, found[tr_rows].sum())
        for centred in (False, True):
            e = unit(raw, mean if centred else None)
            tr, te = pair_acc(e)
            report["choices"].append({"scale": scale, "centred": centred, "train_accuracy": tr,
                                      "test_accuracy": te, "lfw_no_face": int((~found).sum())})
            print(f"faceres alone, crop {scale}x, centred={centred}: pairsDevTrain {tr:.4f}, "
                  f"pairsDevTest {te:.4f}", flush=True)
            if best is None or tr > best[0]:
                best = (tr, scale, centred, mean)
    _, scale, centred, mean = best
    report["chosen"] = {"scale": scale, "centred": centred}
    lfw_f = unit(features(list(lfw_set.paths), args.work_dir, sess, scale, "lfw"),
                 mean if centred else None)
    ff_f = unit(features(list(ff_set.paths), args.work_dir, sess, scale, "fairface"),
                mean if centred else None)

    # 2. the weight, chosen on pairsDevTrain; scores scaled by the fit impostors' spread
    lfw_d = lfw.embeddings
    keep_tr = train.found & (np.abs(lfw_f[tr_rows]).sum(1) > 0)
    sd_d = float(np.std(fm.all_impostors(lfw_d[tr_rows][keep_tr], np.zeros(keep_tr.sum()), ref_ids[keep_tr])))
    sd_f = float(np.std(fm.all_impostors(lfw_f[tr_rows][keep_tr], np.zeros(keep_tr.sum()), ref_ids[keep_tr])))
    weights = {}
    for w in np.round(np.arange(0, 1.0001, 0.05), 2):
        weights[float(w)] = pair_acc(fused(lfw_d, lfw_f, w, sd_d, sd_f))
    w_best = max(weights, key=lambda k: (weights[k][0], k))
    report.update(sd_dlib=sd_d, sd_faceres=sd_f, weights=weights, chosen_weight=w_best)
    print("weight (dlib): pairsDevTrain / pairsDevTest accuracy")
    for w, (tr, te) in weights.items():
        print(f"  w={w:.2f}: {tr:.4f} / {te:.4f}{'  <- chosen' if w == w_best else ''}")

    # 3. the cross-dataset protocol (fairness_methods' functions) on each embedding
    keep = ff.found & (np.abs(ff_f).sum(1) > 0)
    if args.part != "all":
        keep &= np.array([zlib.crc32(f.encode()) % 2 == int(args.part) - 1 for f in ff_set.identities])
    race = np.asarray(ff_set.groups["race"])[keep]
    gender = np.asarray(ff_set.groups["gender"])[keep]
    print(f"fit: {keep_tr.sum()} LFW training faces; evaluate: {keep.sum()} FairFace faces "
          f"(dlib found {ff.found.sum()}, faceres crops {(np.abs(ff_f).sum(1) > 0).sum()})")
    variants = {"dlib (raw cosine)": 1.0, "faceres alone": 0.0, f"fused w={w_best:g}": w_best}
    for w in (0.5, 0.7):
        variants.setdefault(f"fused w={w:g}", w)
    report["methods"] = []
    for label, w in variants.items():
        for method in (fm.Raw(), fm.Cohort(10, own=True)):
            lfw_e = fused(lfw_d, lfw_f, w, sd_d, sd_f)
            ref = lfw_e[tr_rows][keep_tr]
            fe = fused(ff.embeddings, ff_f, w, sd_d, sd_f)[keep]
            method.fit(ref, ref_ids[keep_tr])
            own = getattr(method, "own", False)
            ref_imp = fm.all_impostors(ref, method.offsets(ref, own_set=ref) if own else method.offsets(ref),
                                       ref_ids[keep_tr])
            off = method.offsets(fe, own_set=fe) if own else method.offsets(fe)
            by_race = fm.within_group_impostors(fe, off, race)
            by_gender = fm.within_group_impostors(fe, off, gender)
            acc, _ = fm.lfw_accuracy(method, lfw_e, index, ptrain, ptest, own)
            row = {"method": f"{label}, {method.name}", "weight": w, "lfw_accuracy": acc, "points": {}}
            for s, f in fm.FMRS.items():
                t = fm.threshold_at(ref_imp, f)
                rr, rmax = fm.ratios(by_race, t)
                _, gmax = fm.ratios(by_gender, t)
                p = {"race_max_over_min": rmax, "gender_max_over_min": gmax,
                     "worst_race": max(rr, key=rr.get), "worst_over_promised": max(rr.values()) / f}
                if args.bootstrap:
                    p["race_interval"] = fm.bootstrap_ratio(fe, off, race, t, args.bootstrap)
                    p["gender_interval"] = fm.bootstrap_ratio(fe, off, gender, t, args.bootstrap)
                row["points"][s] = p
            report["methods"].append(row)
            print(f"{row['method'][:70]:70s} LFW {acc:.4f} | " + " | ".join(
                f"{k}: race {v['race_max_over_min']:.1f} gender {v['gender_max_over_min']:.2f} "
                f"worst/promised {v['worst_over_promised']:.0f}" for k, v in row["points"].items()),
                flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
