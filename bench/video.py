"""Stored-video face search: candor's job against face_recognition's way, in the same run.

    python bench/video.py [--videos DIR] [--baseline-seconds 1] [--out bench/video.json]

For each sample video (``short_hamilton_clip.mp4``, 640x360; ``street_1080p.mp4``, 1920x1080)
a StartFaceSearch job runs in-process through the governed service, as ``candor video search``
runs it, at the default sampling (``CANDOR_VIDEO_FPS``, 5 a second) against a collection of
the ``samples/identities`` people. Speed is the video's duration over the job's wall time
(``5x`` = five seconds of video per second of work), measured after the models are loaded.

The detector is the default (``auto``: YuNet where candor[yunet] is installed); the same job
with ``CANDOR_VIDEO_DETECTOR=hog`` (HOG upsampled once, the design before YuNet) runs beside it.
Each row names its detector in the JSON.

The baseline is face_recognition's way, as its example scripts process video: read every frame
with OpenCV, detect with HOG upsampled once (``face_locations``' default), and encode every
face (``face_encodings``: the 5-point alignment and dlib's ResNet, one jitter).
face_recognition itself is not installed (its ``dlib`` dependency compiles for longer than
10 minutes here), so its way is emulated with candor's ``dlib`` backend, which runs the same
dlib models; on the first ``--baseline-seconds`` of each video, its per-second cost is
extrapolated to the whole video. The search against the collection is left out of the
baseline (it would only add to it).

The machine is shared: wall times move with the load, so read the ratios, which are measured
in the same run. Each row also has the process's CPU time during the job (``cpu_s``, all its
threads) and ``video_s_per_cpu_s``: seconds of video per CPU second, the work per second of
video, which moves less with other processes' load than wall time does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = Path(os.environ.get("CANDOR_TEST_DATA", ROOT / ".." / "shared" / "data" / "faces"))


def candor_search(videos: Path, name: str, identities: Path, detector: str = "auto") -> dict:
    from candor.config import Settings
    from candor.face.video import probe
    from candor.governance.gate import governed
    from candor.service import Service
    from candor.service.common import store_of
    from candor.service.jobs import runner_of

    tmp = tempfile.mkdtemp(prefix="candor-bench-video-")
    service = Service(settings=Settings.load(data_dir=Path(tmp), video_detector=detector))
    service.__dict__["local_buckets"] = {"videos": videos}
    gate = governed(service)
    gate.call("CreateCollection", {"CollectionId": "people"})
    for person in sorted(p for p in identities.iterdir() if p.is_dir()):
        for photo in sorted(person.iterdir())[:2]:
            try:
                gate.call("IndexFaces", {"CollectionId": "people", "ExternalImageId": person.name,
                                         "Image": {"Bytes": photo.read_bytes()}, "MaxFaces": 1})
            except Exception:  # a photo over the limits or without a face: not this bench's
                pass
    from candor.face import tracking

    tracking.warm(service.engine)  # the models the job uses, loaded as `candor serve` loads them
    duration = probe(videos / name).duration_ms / 1000
    started, cpu = time.perf_counter(), time.process_time()
    job = gate.call("StartFaceSearch", {"CollectionId": "people", "Video": {
        "S3Object": {"Bucket": "videos", "Name": name}}})["JobId"]
    runner_of(service).wait(job)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    row = store_of(service).job(job)
    assert row.status == "SUCCEEDED", row.status_message
    from candor.face.video_detect import video_detector

    return {"detector": video_detector(detector, service.engine.detector),
            "video_s": duration, "wall_s": round(wall, 3), "x_real_time": round(duration / wall, 2),
            "cpu_s": round(cpu, 3), "video_s_per_cpu_s": round(duration / cpu, 2),
            "frames_analysed": row.frames, "faces": row.faces, "matches": row.matches}


def face_recognition_way(path: Path, seconds: float) -> dict:
    """Every frame: OpenCV read, HOG (upsample 1), 5-point landmarks, one ResNet pass per face."""
    import cv2

    from candor.models import get_backend

    backend = get_backend("dlib")
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    limit = int(round(seconds * fps))
    frames = faces = 0
    started, cpu = time.perf_counter(), time.process_time()
    while frames < limit:
        ok, bgr = cap.read()
        if not ok:
            break
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        found = backend.detect(rgb, "hog", 1)
        if found:
            points = backend.landmarks(rgb, found, 5)
            backend.embed(backend.chips(rgb, points))
        frames += 1
        faces += len(found)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    done = frames / fps
    return {"video_s_measured": round(done, 3), "wall_s": round(wall, 3),
            "x_real_time": round(done / wall, 3), "cpu_s": round(cpu, 3),
            "video_s_per_cpu_s": round(done / cpu, 3), "frames": frames, "faces": faces}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=Path, default=DATA / "video")
    parser.add_argument("--identities", type=Path, default=DATA / "samples" / "identities")
    parser.add_argument("--baseline-seconds", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from candor.face.engine import Engine

    Engine().analyse(str(next(args.identities.glob("*/*"))), embed=True)  # models loaded
    results = {"load_1min": os.getloadavg()[0], "videos": {}}
    for name, target in (("short_hamilton_clip.mp4", 5.0), ("street_1080p.mp4", 2.0)):
        ours = candor_search(args.videos, name, args.identities)
        hog = candor_search(args.videos, name, args.identities, detector="hog")
        base = face_recognition_way(args.videos / name, args.baseline_seconds)
        row = {"candor": ours, "candor_hog": hog,
               "face_recognition_way_emulated_with_dlib_backend": base,
               "target_x_real_time": target,
               "speedup_vs_face_recognition_way": round(ours["x_real_time"] / base["x_real_time"], 1),
               "cpu_ratio_vs_face_recognition_way": round(ours["video_s_per_cpu_s"]
                                                          / base["video_s_per_cpu_s"], 1)}
        row["speedup_vs_hog"] = round(ours["x_real_time"] / hog["x_real_time"], 2)
        row["cpu_ratio_vs_hog"] = round(ours["video_s_per_cpu_s"] / hog["video_s_per_cpu_s"], 2)
        results["videos"][name] = row
        print(f"{name}: candor {ours['x_real_time']}x real time ({ours['frames_analysed']} frames,"
              f" {ours['faces']} faces, {ours['matches']} matches; target {target}x); "
              f"with HOG (the detector before YuNet): {hog['x_real_time']}x "
              f"({hog['faces']} faces); face_recognition's way (every frame, "
              f"emulated with candor's dlib backend): {base['x_real_time']}x; "
              f"candor / baseline = {row['speedup_vs_face_recognition_way']}x; per CPU second: "
              f"candor {ours['video_s_per_cpu_s']} s of video"
              f"{', HOG ' + str(row['candor_hog']['video_s_per_cpu_s']) if 'candor_hog' in row else ''}"
              f", baseline {base['video_s_per_cpu_s']}, candor / baseline = "
              f"{row['cpu_ratio_vs_face_recognition_way']}x", flush=True)
    results["load_1min_after"] = os.getloadavg()[0]
    print(f"load average (1 min) before/after: {results['load_1min']:.1f} / "
          f"{results['load_1min_after']:.1f} on {os.cpu_count()} cores")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
