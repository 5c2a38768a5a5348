"""Shared by the human-review tests: a `candor serve` under the shipped eu-ai-act policy with
a law-enforcement organisation's collection, and boto3 clients that read candor's SDK model
extension (AWS_DATA_PATH), as docs/console.md tells users to run them."""

from __future__ import annotations

import os
from pathlib import Path

from postgres_helper import store_url
from serve_helper import photo

from candor.service.model import SDK_DATA_DIR

ORG, REF = "metro-pd", "AG-2026-117"


def extended_client(url: str, data: Path, org: str, category: str):
    """A boto3 client for a new key of ``org``, built by a session that reads the model
    extension from AWS_DATA_PATH (GetReviewResult, ReviewId) and signs the authorisation
    reference header."""
    import boto3
    from botocore.config import Config

    from candor.api.keys import KeyStore

    key, secret = KeyStore.open(data, store_url()).create(org, category)
    old = os.environ.get("AWS_DATA_PATH")
    os.environ["AWS_DATA_PATH"] = str(SDK_DATA_DIR)
    try:
        session = boto3.session.Session()
        c = session.client("rekognition", endpoint_url=url, region_name="us-east-1",
                           aws_access_key_id=key.access_key_id, aws_secret_access_key=secret,
                           config=Config(retries={"max_attempts": 1}, read_timeout=120))
    finally:
        if old is None:
            os.environ.pop("AWS_DATA_PATH", None)
        else:
            os.environ["AWS_DATA_PATH"] = old

    def add_reference(request, **_):
        request.headers["X-Candor-Authorization-Reference"] = REF

    c.meta.events.register("before-sign.rekognition.*", add_reference)
    return key.access_key_id, c


def populate(police) -> None:
    """The wanted collection: the same Obama photo twice (two candidates at 100), another
    Obama photo, and Biden."""
    police.create_collection(CollectionId="wanted")
    for i, rel in enumerate(("obama/obama.jpg", "obama/obama.jpg", "obama/obama2.jpg",
                             "biden/biden.jpg")):
        police.index_faces(CollectionId="wanted", ExternalImageId=f"p{i}",
                           Image={"Bytes": photo(rel)})


def held_search(police) -> dict:
    return police.search_faces_by_image(CollectionId="wanted", FaceMatchThreshold=99,
                                        Image={"Bytes": photo("obama/obama.jpg")})
