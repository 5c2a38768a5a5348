"""Photos with the faces candor identified drawn on them (``candor identify --annotate``)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image as PILImage
from PIL import ImageDraw

KNOWN, UNKNOWN_COLOUR, UNSEARCHED = (46, 204, 64), (255, 65, 54), (170, 170, 170)


def draw(image, response: dict, out: Path) -> Path:
    """Write ``image`` (a decoded candor Image) to ``out`` with each searched face's box and
    name (green when known, red when unknown) and unsearched faces' boxes in grey."""
    from candor.cli.identify import UNKNOWN, label

    canvas = PILImage.fromarray(image.pixels)
    pen = ImageDraw.Draw(canvas)
    width = max(2, round(max(canvas.size) / 400))
    boxes = [(f["FaceDetail"]["BoundingBox"], *label(f)) for f in response["SearchedFaces"]]
    boxes += [(f["FaceDetails"]["BoundingBox"], None, None) for f in response["UnsearchedFaces"]]
    for box, name, sim in boxes:
        x0, y0 = box["Left"] * canvas.width, box["Top"] * canvas.height
        x1, y1 = x0 + box["Width"] * canvas.width, y0 + box["Height"] * canvas.height
        colour = UNSEARCHED if name is None else UNKNOWN_COLOUR if name == UNKNOWN else KNOWN
        pen.rectangle([x0, y0, x1, y1], outline=colour, width=width)
        if name is not None:
            text = name if sim is None else f"{name} {sim:.0f}"
            left, top, right, bottom = pen.textbbox((x0, y1 + 2), text)
            pen.rectangle([left - 2, top - 2, right + 2, bottom + 2], fill=colour)
            pen.text((x0, y1 + 2), text, fill=(0, 0, 0))
    canvas.save(out)
    return out
