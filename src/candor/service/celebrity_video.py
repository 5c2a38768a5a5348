"""Stored video: StartCelebrityRecognition / GetCelebrityRecognition over the operator's gallery.

The job machinery is StartFaceSearch's (:mod:`candor.service.video`: the video from a local
bucket or S3, a durable job row, ClientRequestToken idempotency per organisation, JobTag,
NotificationChannel, results only for the organisation that started it); the faces are
StartFaceSearch's too (:mod:`candor.face.tracking`: sampled frames, tracks, one embedding per
track segment). Each segment is recognised once, by the code RecognizeCelebrities runs
(:func:`candor.service.celebrities.recognise`: every photo of a person counts, the open-set
score, the threshold for the gallery's size), and every sampled frame of a named segment
becomes one ``Celebrities`` entry in Rekognition's shape (``Timestamp``, ``Celebrity`` with
``Name``, ``Id``, ``Urls``, ``Confidence``, ``BoundingBox``, ``Face`` and, when the operator
published it, ``KnownGender``). As in Rekognition, faces of no one in the gallery are not listed.

The gallery version and the threshold the job ran with are kept in the job's parameters
(``CandorGallery``), so that the ledger record of the finished job names them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from candor.errors import ResourceNotFound
from candor.service import Service, operation
from candor.service.celebrities import calibrated_threshold, celebrity_info, recognise
from candor.service.common import store_of
from candor.service.jobs import WORK
from candor.service.video import _frames, _start, get_results
from candor.store.jobs import JobRow

START = "StartCelebrityRecognition"
#: the job parameter holding the gallery version and threshold the job ran with
GALLERY_KEY = "CandorGallery"


@operation("StartCelebrityRecognition")
def start_celebrity_recognition(service: Service, params: dict) -> dict:
    if len(store_of(service).gallery()) == 0:
        raise ResourceNotFound("The celebrity gallery is empty: the operator builds one with "
                               "candor celebrities import (candor ships none)")
    return _start(service, START, params)


def _celebrity_work(service: Service, job: JobRow, progress) -> dict:
    store = store_of(service)
    gallery = store.gallery()
    threshold = calibrated_threshold(gallery, service.scoring)
    info, sha, frames, counts = _frames(service, job, progress)
    rows: dict[int, Any] = {}
    found: list[dict[str, Any]] = []
    segment: dict[int, tuple[int, float] | None] = {}
    for ff in frames:
        for tf in ff.faces:
            if tf.new_segment or tf.index not in segment:  # one recognition per track segment
                segment[tf.index] = None
                if tf.embedding is not None and len(gallery):
                    segment[tf.index] = recognise(gallery, np.asarray(tf.embedding)[None],
                                                  service.scoring, threshold)[0]
            match = segment[tf.index]
            if match is None:
                continue
            key = int(gallery.keys[match[0]])
            if key not in rows:
                rows.update(store.celebrities_by_key([key]))
            row = rows.get(key)
            if row is None:  # removed from the gallery while the job ran
                continue
            detail = tf.face.detail.to_dict()
            published = celebrity_info(row)
            celebrity = {"Urls": published["Urls"], "Name": row.name, "Id": row.celebrity_id,
                         "Confidence": round(match[1], 4),
                         "BoundingBox": detail["BoundingBox"], "Face": detail}
            if "KnownGender" in published:
                celebrity["KnownGender"] = published["KnownGender"]
            found.append({"Timestamp": tf.timestamp_ms, "Celebrity": celebrity})
    params = {**job.params, GALLERY_KEY: {"version": gallery.version, "people": len(gallery),
                                          "threshold": threshold}}
    return {"results": found, "frames": counts["frames"], "faces": counts["faces"],
            "matches": len(found), "video_sha256": sha, "video_metadata": info.metadata(),
            "params": params}


WORK[START] = _celebrity_work


@operation("GetCelebrityRecognition")
def get_celebrity_recognition(service: Service, params: dict) -> dict:
    return get_results(service, params, START, "Celebrities", "cr",
                       {"ID": lambda c: (c["Celebrity"]["Id"], c["Timestamp"])})
