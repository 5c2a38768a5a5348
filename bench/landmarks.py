"""candor's C shape predictor (candor/models/_ert.c) against dlib's binding, same faces, same run.

    python bench/landmarks.py [--photos 400]

The faces HOG finds in the seeded LFW View 1 sample of bench/engine.py; for each face and each
model (5 and 68 points) dlib's predictor and candor's run one after the other, so both see the
same machine load. Prints how many faces give identical points, the CPU milliseconds per face
of each (thread time) and their ratio, and the CPU seconds each takes to load the model.
The landmarks' share of what users run is in bench/video.py and bench/engine.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from engine import DEFAULT_DATA, lfw_view1  # noqa: E402  (a bench sibling)


def main() -> int:
    import dlib

    from candor.face.engine import Engine
    from candor.face.imaging import load_image
    from candor.models import ert
    from candor.models.dlib_backend import SHAPE_MODELS, to_rect
    from candor.models.files import model_path

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--photos", type=int, default=400)
    args = ap.parse_args()
    if not ert.available():
        sys.exit("candor.models._ert was not built (pip install -e . with a C compiler)")
    engine = Engine()
    faces = []
    for path in lfw_view1(args.data / "lfw", args.photos):
        image = load_image(path)
        faces += [(image.pixels, d) for d in engine.find_faces(image)]
    for points in (5, 68):
        path = model_path(SHAPE_MODELS[points])
        data = path.read_bytes()
        t = time.process_time()
        ours = ert.ShapePredictor(data)
        ours_load = time.process_time() - t
        t = time.process_time()
        theirs = dlib.shape_predictor(str(path))
        dlib_load = time.process_time() - t
        same, t_dlib, t_ours = 0, 0.0, 0.0
        for pixels, box in faces:
            t = time.thread_time()
            shape = theirs(pixels, to_rect(box))
            ref = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
            t_dlib += time.thread_time() - t
            t = time.thread_time()
            got = ours(pixels, [box])[0]
            t_ours += time.thread_time() - t
            same += bool(np.array_equal(got, ref))
        n = len(faces)
        print(f"{points}-point, {n} faces of {args.photos} LFW photos: {same}/{n} identical to dlib; "
              f"ms per face: dlib {1000 * t_dlib / n:.2f}, candor {1000 * t_ours / n:.2f} "
              f"({t_dlib / t_ours:.1f}x); load: dlib {dlib_load:.2f} s, candor {ours_load:.2f} s of CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
