"""Image.S3Object for the HTTP API: images read from an S3-compatible store the operator names.

candor never reaches out to AWS on its own: without ``--s3-endpoint-url`` an S3Object request is
refused. The object is fetched (at most 15 MB, Rekognition's S3 limit), decoded here, and handed
to the service layer as an already decoded image, so the audit ledger records the SHA-256 of
the actual pixels' source bytes rather than just the object's name.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from candor.errors import ImageTooLarge, InvalidS3Object, VideoTooLarge
from candor.face.imaging import MAX_S3_IMAGE_BYTES, Image, decode_image
from candor.face.video import LIMITS, bucket_path
from candor.service import operations


class S3Images:
    """Fetches S3Object images from one endpoint; the botocore client is made on first use.
    ``buckets`` (``candor serve --bucket NAME=DIR``) are local folders served read-only as
    buckets: an S3Object naming one is read from the folder, no endpoint needed."""

    def __init__(self, endpoint_url: str | None = None, region: str = "us-east-1",
                 buckets: dict[str, Path] | None = None) -> None:
        self.endpoint_url = endpoint_url or None
        self.region = region
        self.buckets = dict(buckets or {})
        self._client = None
        self._lock = threading.Lock()

    def client(self):
        with self._lock:
            if self._client is None:
                import botocore.session
                from botocore.config import Config

                session = botocore.session.get_session()
                self._client = session.create_client(
                    "s3", endpoint_url=self.endpoint_url,
                    region_name=self.region,
                    config=Config(s3={"addressing_style": "path"}, connect_timeout=5,
                                  read_timeout=30, retries={"max_attempts": 2}))
            return self._client

    def fetch(self, spec: dict[str, Any]) -> Image:
        """The decoded image at ``{"Bucket", "Name", "Version"?}``."""
        local = bucket_path(self.buckets, spec.get("Bucket") or "", spec.get("Name") or "")
        if local is not None:
            size = local.stat().st_size
            if size > MAX_S3_IMAGE_BYTES:
                raise ImageTooLarge(f"S3 object {local.name} is {size} bytes; the limit for "
                                    f"images in S3 is {MAX_S3_IMAGE_BYTES} (15 MB)")
            return decode_image(local.read_bytes(), max_bytes=MAX_S3_IMAGE_BYTES,
                                source=f"s3://{spec['Bucket']}/{spec['Name']}")
        if not self.endpoint_url:
            raise InvalidS3Object(
                "S3Object images need an S3-compatible endpoint: start candor serve with "
                "--s3-endpoint-url (candor does not contact AWS on its own)")
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, name = spec.get("Bucket"), spec.get("Name")
        if not bucket or not name:
            raise InvalidS3Object("S3Object needs Bucket and Name")
        kwargs = {"Bucket": bucket, "Key": name}
        if spec.get("Version"):
            kwargs["VersionId"] = spec["Version"]
        try:
            obj = self.client().get_object(**kwargs)
            size = obj.get("ContentLength")
            if size is not None and size > MAX_S3_IMAGE_BYTES:
                obj["Body"].close()
                raise ImageTooLarge(f"S3 object s3://{bucket}/{name} is {size} bytes; the "
                                    f"limit for images in S3 is {MAX_S3_IMAGE_BYTES} (15 MB)")
            data = obj["Body"].read(MAX_S3_IMAGE_BYTES + 1)
        except (ClientError, BotoCoreError, ValueError) as exc:  # ValueError: a key botocore
            # cannot encode (a lone surrogate)
            raise InvalidS3Object(
                "Unable to get object metadata from S3. Check object key, region and/or "
                f"access permissions. ({exc})") from None
        return decode_image(data, max_bytes=MAX_S3_IMAGE_BYTES, source=f"s3://{bucket}/{name}")

    def download(self, spec: dict[str, Any], dest: Path) -> None:
        """Copy the object at ``spec`` (a video) from the endpoint into ``dest``."""
        from botocore.exceptions import BotoCoreError, ClientError

        kwargs = {"Bucket": spec.get("Bucket"), "Key": spec.get("Name")}
        if spec.get("Version"):
            kwargs["VersionId"] = spec["Version"]
        try:
            obj = self.client().get_object(**kwargs)
            if (obj.get("ContentLength") or 0) > LIMITS.max_bytes:
                obj["Body"].close()
                raise VideoTooLarge(f"the video is {obj['ContentLength']} bytes; the limit is "
                                    f"{LIMITS.max_bytes}")
            with open(dest, "wb") as out:
                for chunk in obj["Body"].iter_chunks(1 << 20):
                    out.write(chunk)
        except (ClientError, BotoCoreError, ValueError) as exc:
            raise InvalidS3Object(
                "Unable to get object metadata from S3. Check object key, region and/or "
                f"access permissions. ({exc})") from None

    def resolve(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` with every S3Object image (the members the operation table names as
        images) replaced by its decoded bytes."""
        descriptor = operations.spec(operation)
        for member in descriptor.images if descriptor is not None else ():
            spec = params.get(member)
            if isinstance(spec, dict) and "S3Object" in spec and "Bytes" not in spec:
                params[member] = {"Bytes": self.fetch(spec["S3Object"])}
        return params
