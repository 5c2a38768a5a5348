"""LFW View 1 accuracy: threshold chosen on pairsDevTrain.txt, measured on pairsDevTest.txt.

    python bench/lfw_accuracy.py [--data ../shared/data/faces] [--detector hog+cnn]

A thin wrapper over ``candor eval verification`` (:mod:`candor.eval.verification`), which
does the work and caches the embeddings in the data dir; use that command for the full
report (AUC, EER, TAR@FAR, FMR/FNMR at Similarity thresholds, plots). Each image's face is the
detected face nearest the centre (LFW images are centred on the labelled person). Images
where no face is detected are counted and reported; a pair with such an image is scored as a
non-match (the pessimistic choice), never dropped.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from candor.eval import verification

DEFAULT_DATA = Path(os.environ.get("CANDOR_TEST_DATA", Path(__file__).parents[1] / ".." / "shared"
                                   / "data" / "faces"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--detector", default="hog+cnn", help="hog, cnn or hog+cnn")
    args = ap.parse_args()
    lfw = args.data / "lfw"
    r = verification.run(lfw / "pairsDevTest.txt", lfw, train_pairs=lfw / "pairsDevTrain.txt",
                         detector=args.detector, workers=args.workers, all_pairs=False)
    acc = r["accuracy"]
    missing = r["photos_without_face_list"]
    print(f"images: {r['photos']}, no face detected: {r['photos_without_face']} "
          f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''})")
    print(f"embedding time: {r['embedding']['seconds']:.1f} s "
          f"({r['embedding']['cached_photos']} photos from the cache)")
    print(f"threshold chosen on pairsDevTrain: similarity {acc['train_test']['threshold']:.2f} "
          f"(train accuracy {acc['train_test']['train_accuracy']:.4f})")
    print(f"LFW View 1 accuracy on pairsDevTest: {acc['train_test']['accuracy']:.4f} "
          f"({r['pairs']} pairs)")
    print(f"accuracy on pairsDevTest at the default threshold 80: "
          f"{acc['at_default_threshold']['accuracy']:.4f}")
    listed = r["listed_pairs"]
    print(f"AUC {listed['auc']:.4f}, EER {listed['eer']['eer']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
