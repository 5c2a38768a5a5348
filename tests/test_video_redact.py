"""Redaction: no face is detectable in the redacted output at the sampled frames, ``--keep``
leaves the kept person detectable, audio is passed through, photos too."""

from __future__ import annotations

import subprocess
import sys

import av
import pytest
from conftest import DATA

from candor.face.engine import Engine
from candor.face.imaging import Image
from candor.face.redaction import redact_video
from candor.face.video import sample_frames

CLIP = DATA / "video" / "short_hamilton_clip.mp4"
pytestmark = pytest.mark.skipif(not CLIP.is_file(), reason="sample videos not found")


def faces_per_frame(engine: Engine, path) -> dict[int, list]:
    """Every face the full image engine (HOG, then the CNN where HOG finds none) finds at the
    sampled frames: a stronger search than the one that redacted them."""
    out = {}
    for frame in sample_frames(path):
        _, faces = engine.analyse(Image(frame.pixels, "video", ""), landmarks=False)
        out[frame.timestamp_ms] = faces
    return out


@pytest.fixture(scope="module")
def engine():
    return Engine()


def test_no_face_is_detectable_after_redaction_and_audio_is_kept(engine, tmp_path):
    before = faces_per_frame(engine, CLIP)
    assert sum(len(f) for f in before.values()) >= 15
    out = tmp_path / "redacted.mp4"
    stats = redact_video(engine, CLIP, out, style="blur")
    assert stats["frames"] >= 270 and stats["faces"] > 0
    after = faces_per_frame(engine, out)
    assert set(after) == set(before) or len(after) >= len(before) - 1
    assert {ts: len(f) for ts, f in after.items() if f} == {}
    with av.open(str(CLIP)) as a, av.open(str(out)) as b:
        assert len(b.streams.audio) == len(a.streams.audio) == 1
        assert b.streams.audio[0].codec_context.name == a.streams.audio[0].codec_context.name


def test_keep_leaves_the_kept_person_detectable(engine, tmp_path):
    ref = DATA / "samples" / "identities" / "lin_manuel_miranda" / "reference.png"
    _, lin = engine.analyse(str(ref), embed=True)
    target = lin[0].embedding

    def keep(vector) -> bool:
        return float(engine.scoring.similarity(target, vector[None, :])[0][0]) >= 85

    out = tmp_path / "kept.mp4"
    stats = redact_video(engine, CLIP, out, style="pixelate", keep=keep)
    assert stats["kept"] > 0
    after = faces_per_frame(engine, out)
    close_up = [ts for ts in after if 3600 <= ts <= 7000]
    seen = [ts for ts in close_up if after[ts]]
    assert len(seen) >= 0.7 * len(close_up)
    frames = {f.timestamp_ms: f for f in sample_frames(out)}
    sims = []
    for ts in seen:  # the face left visible is Lin-Manuel Miranda's
        engine.embed(Image(frames[ts].pixels, "video", ""), after[ts][:1])
        sims.append(float(engine.scoring.similarity(target, after[ts][0].embedding[None, :])[0][0]))
    sims.sort()
    assert sims[len(sims) // 2] >= 85 and sims[0] >= 60, sims


def test_redact_photo_cli(tmp_path, engine):
    photo = sorted((DATA / "samples" / "identities" / "obama").iterdir())[0]
    out = tmp_path / "out.png"
    done = subprocess.run([sys.executable, "-m", "candor.cli", "redact", str(photo), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "1 face(s) redacted" in " ".join(done.stdout.split())
    _, before = engine.analyse(str(photo))
    _, after = engine.analyse(str(out))
    assert before and not after
