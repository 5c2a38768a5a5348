"""candor's operations through the AWS SDK against a real ``candor serve``: boto3 with the
shipped model extension (AWS_DATA_PATH=$(candor sdk-path)) calls SearchFacesInImage; boto3
unmodified calls RecognizeCelebrities and GetCelebrityInfo; a raw JSON 1.1 request with
X-Amz-Target reaches SearchFacesInImage too (what SDKs without botocore can do)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

CANDOR = [sys.executable, "-m", "candor.cli"]
GROUP = "groups/obama_and_biden.jpg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, samples, store_backend):
    tmp = tmp_path_factory.mktemp("candor-sdk")
    data = tmp / "data"
    env = {**os.environ, "CANDOR_DATA_DIR": str(data)}
    obama = sorted((samples / "identities" / "obama").glob("*.jp*g"))
    biden = sorted((samples / "identities" / "biden").glob("*.jp*g"))
    subprocess.run([*CANDOR, "index", "people", *map(str, obama + biden), "--create"], env=env,
                   check=True, capture_output=True, timeout=300)
    gallery = tmp / "gallery"
    for name, files in (("Barack_Obama", obama), ("Joe_Biden", biden)):
        (gallery / name).mkdir(parents=True)
        for f in files:
            (gallery / name / f.name).symlink_to(f)
    subprocess.run([*CANDOR, "celebrities", "import", str(gallery)], env=env, check=True,
                   capture_output=True, timeout=300)
    port = free_port()
    out = tmp / "serve.out"
    proc = subprocess.Popen([*CANDOR, "serve", "--port", str(port), "--workers", "1"], env=env,
                            stdout=out.open("w"), stderr=(tmp / "serve.err").open("w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while "AWS_SECRET_ACCESS_KEY=" not in out.read_text():
        assert proc.poll() is None and time.time() < deadline, (tmp / "serve.err").read_text()
        time.sleep(0.3)
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.time() < deadline
            time.sleep(0.3)
    keys = dict(line.split("=", 1) for line in out.read_text().splitlines()
                if line.startswith("AWS_"))
    yield {"url": url, "key": keys["AWS_ACCESS_KEY_ID"], "secret": keys["AWS_SECRET_ACCESS_KEY"]}
    proc.terminate()
    proc.wait(timeout=30)


def client(server, session=None):
    session = session or boto3.session.Session()
    return session.client("rekognition", endpoint_url=server["url"], region_name="us-east-1",
                          aws_access_key_id=server["key"],
                          aws_secret_access_key=server["secret"],
                          config=Config(retries={"max_attempts": 1}))


def test_boto3_with_the_extension_calls_search_faces_in_image(server, samples, monkeypatch):
    plain = client(server)
    assert not hasattr(plain, "search_faces_in_image")  # Rekognition's model is untouched
    path = subprocess.run([*CANDOR, "sdk-path"], capture_output=True, text=True,
                          check=True).stdout.strip()
    monkeypatch.setenv("AWS_DATA_PATH", path)
    rek = client(server, boto3.session.Session())
    out = rek.search_faces_in_image(CollectionId="people",
                                    Image={"Bytes": (samples / GROUP).read_bytes()})
    best = [f["FaceMatches"][0]["Face"]["ExternalImageId"] if f["FaceMatches"] else None
            for f in out["SearchedFaces"]]
    assert sorted(best[:2]) == ["biden", "obama"] and best[2] is None
    with pytest.raises(ClientError) as err:
        rek.search_faces_in_image(CollectionId="nope",
                                  Image={"Bytes": (samples / GROUP).read_bytes()})
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    # Rekognition's own operations keep their exact shapes
    ext_model = rek.meta.service_model
    plain_model = plain.meta.service_model
    for name in plain_model.operation_names:
        assert ext_model.operation_model(name).input_shape.members.keys() == \
            plain_model.operation_model(name).input_shape.members.keys()


def test_raw_json_with_x_amz_target_reaches_it(server, samples):
    import base64
    import json
    import urllib.request

    body = json.dumps({"CollectionId": "people", "MaxFaces": 1, "Image": {
        "Bytes": base64.b64encode((samples / GROUP).read_bytes()).decode()}}).encode()
    req = AWSRequest("POST", server["url"] + "/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "RekognitionService.SearchFacesInImage"})
    SigV4Auth(Credentials(server["key"], server["secret"]), "rekognition",
              "us-east-1").add_auth(req)
    with urllib.request.urlopen(urllib.request.Request(
            req.url, data=body, headers=dict(req.headers), method="POST"), timeout=60) as resp:
        out = json.loads(resp.read())
    assert len(out["SearchedFaces"]) == 1 and out["UnsearchedFaces"]


def test_unmodified_boto3_calls_recognize_celebrities_and_get_celebrity_info(server, samples):
    rek = client(server)
    out = rek.recognize_celebrities(Image={"Bytes": (samples / GROUP).read_bytes()})
    names = {c["Name"] for c in out["CelebrityFaces"]}
    assert names == {"Barack Obama", "Joe Biden"} and out["UnrecognizedFaces"]
    first = out["CelebrityFaces"][0]
    info = rek.get_celebrity_info(Id=first["Id"])
    assert info["Name"] == first["Name"] and info["Urls"] == []
    with pytest.raises(ClientError) as err:
        rek.get_celebrity_info(Id="NoSuchId1")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_aws_cli_with_the_extension(server, samples):
    import json
    import shutil

    if shutil.which("aws") is None:
        pytest.skip("the aws CLI is not installed")
    path = subprocess.run([*CANDOR, "sdk-path"], capture_output=True, text=True,
                          check=True).stdout.strip()
    env = {**os.environ, "AWS_DATA_PATH": path, "AWS_ACCESS_KEY_ID": server["key"],
           "AWS_SECRET_ACCESS_KEY": server["secret"], "AWS_DEFAULT_REGION": "us-east-1"}
    proc = subprocess.run(["aws", "rekognition", "search-faces-in-image", "--collection-id",
                           "people", "--image-bytes", f"fileb://{samples / GROUP}",
                           "--endpoint-url", server["url"]], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    faces = json.loads(proc.stdout)["SearchedFaces"]
    assert len(faces) == 3 and not faces[2]["FaceMatches"]
