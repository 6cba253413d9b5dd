"""A synthetic photo set in the Yelp Open Dataset layout, so the demo and the tests need no download.

Each class has its own visual structure (plates for food, glasses for drink, text lines for menu, a room
for inside, sky over ground for outside), drawn at random positions, sizes and colours, with noise, so a
CNN has something real to learn and cannot memorise a template. `--include-broken` adds every kind of bad
file the loader must survive.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from model import LABELS

SIZES = ((500, 375), (375, 500), (640, 480), (400, 400), (600, 338), (320, 240))


def _jitter(rng: np.random.Generator, rgb: tuple[int, int, int], amount: int = 40) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)  # type: ignore[return-value]


def _food(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator) -> None:
    draw.rectangle((0, 0, w, h), fill=_jitter(rng, (120, 80, 50)))  # table
    for _ in range(rng.integers(1, 3)):
        r = int(min(w, h) * rng.uniform(0.25, 0.42))
        cx, cy = rng.integers(r, max(r + 1, w - r)), rng.integers(r, max(r + 1, h - r))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_jitter(rng, (235, 235, 230), 15))  # plate
        for _ in range(rng.integers(3, 8)):
            fr = int(r * rng.uniform(0.12, 0.3))
            fx, fy = cx + rng.integers(-r // 2, r // 2 + 1), cy + rng.integers(-r // 2, r // 2 + 1)
            draw.ellipse((fx - fr, fy - fr, fx + fr, fy + fr), fill=_jitter(rng, (200, 90, 40), 60))


def _drink(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator) -> None:
    draw.rectangle((0, 0, w, h), fill=_jitter(rng, (40, 40, 60)))  # dim bar
    for _ in range(rng.integers(1, 4)):
        gw, gh = int(w * rng.uniform(0.1, 0.2)), int(h * rng.uniform(0.45, 0.8))
        x0, y0 = rng.integers(0, max(1, w - gw)), rng.integers(0, max(1, h - gh))
        draw.rectangle((x0, y0, x0 + gw, y0 + gh), fill=_jitter(rng, (170, 200, 230), 30))  # glass
        level = y0 + int(gh * rng.uniform(0.2, 0.5))
        draw.rectangle((x0 + 3, level, x0 + gw - 3, y0 + gh - 3), fill=_jitter(rng, (220, 150, 30), 50))


def _menu(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator) -> None:
    draw.rectangle((0, 0, w, h), fill=_jitter(rng, (245, 240, 225), 10))  # paper
    margin = int(w * rng.uniform(0.05, 0.15))
    y = int(h * rng.uniform(0.05, 0.12))
    step = int(h * rng.uniform(0.04, 0.07))
    while y < h - step:
        length = int((w - 2 * margin) * rng.uniform(0.4, 1.0))
        draw.rectangle((margin, y, margin + length, y + max(2, step // 3)), fill=_jitter(rng, (30, 30, 30), 20))
        y += step


def _inside(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator) -> None:
    wall = _jitter(rng, (200, 170, 130))
    draw.rectangle((0, 0, w, h), fill=wall)
    floor_y = int(h * rng.uniform(0.55, 0.75))
    draw.rectangle((0, floor_y, w, h), fill=_jitter(rng, (110, 70, 40)))
    for _ in range(rng.integers(2, 5)):  # tables and chairs
        tw = int(w * rng.uniform(0.1, 0.2))
        tx = rng.integers(0, max(1, w - tw))
        ty = floor_y - int(h * rng.uniform(0.05, 0.15))
        draw.rectangle((tx, ty, tx + tw, ty + 6), fill=_jitter(rng, (60, 40, 20)))
        draw.rectangle((tx + tw // 2 - 3, ty, tx + tw // 2 + 3, floor_y + 10), fill=_jitter(rng, (60, 40, 20)))
    for _ in range(rng.integers(1, 4)):  # ceiling lamps
        lx = rng.integers(0, w)
        draw.ellipse((lx - 12, 10, lx + 12, 34), fill=_jitter(rng, (255, 240, 180), 10))


def _outside(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator) -> None:
    horizon = int(h * rng.uniform(0.35, 0.6))
    top, bottom = np.array(_jitter(rng, (90, 150, 230))), np.array(_jitter(rng, (190, 220, 250)))
    for y in range(horizon):
        c = top + (bottom - top) * (y / max(1, horizon))
        draw.line((0, y, w, y), fill=tuple(int(v) for v in c))
    draw.rectangle((0, horizon, w, h), fill=_jitter(rng, (110, 110, 110), 30))  # street
    bw = int(w * rng.uniform(0.3, 0.6))
    bx = rng.integers(0, max(1, w - bw))
    bh = int(horizon * rng.uniform(0.4, 0.8))
    draw.rectangle((bx, horizon - bh, bx + bw, horizon), fill=_jitter(rng, (150, 60, 50), 50))  # storefront
    draw.rectangle((bx + bw // 4, horizon - bh // 2, bx + 3 * bw // 4, horizon), fill=_jitter(rng, (40, 50, 60)))


DRAWERS: dict[str, Callable] = {"food": _food, "drink": _drink, "menu": _menu, "inside": _inside, "outside": _outside}


def synth_photo(label: str, rng: np.random.Generator, size: tuple[int, int] | None = None) -> Image.Image:
    w, h = size or SIZES[rng.integers(len(SIZES))]
    img = Image.new("RGB", (w, h))
    DRAWERS[label](ImageDraw.Draw(img), w, h, rng)
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    noise = rng.normal(0, 8, (h, w, 3))
    arr = np.clip(np.asarray(img, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def jpeg_bytes(img: Image.Image, quality: int = 85, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, **kwargs)
    return buf.getvalue()


def write_yelp_layout(out: Path, images_per_class: int, seed: int = 0, include_broken: bool = False) -> dict:
    """Write photos.json + photos/<id>.jpg; return counts of what was written."""
    out = Path(out)
    photos = out / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    records = []
    for label in LABELS:
        for i in range(images_per_class):
            photo_id = f"synth-{label}-{i:05d}"
            (photos / f"{photo_id}.jpg").write_bytes(jpeg_bytes(synth_photo(label, rng), int(rng.integers(70, 95))))
            records.append({"photo_id": photo_id, "business_id": f"biz-{rng.integers(1000):04d}",
                            "caption": f"synthetic {label} photo", "label": label})
    broken = write_broken_cases(photos, rng) if include_broken else []
    records.extend(broken)
    order = rng.permutation(len(records))
    with open(out / "photos.json", "w", encoding="utf-8") as fh:
        for i in order:
            fh.write(json.dumps(records[i]) + "\n")
        if include_broken:
            fh.write("this line is not JSON\n")
    return {"good": images_per_class * len(LABELS), "broken": len(broken)}


def write_broken_cases(photos: Path, rng: np.random.Generator) -> list[dict]:
    """Every kind of bad file a real photo dump has. Returns their photos.json records."""
    def rec(photo_id: str, label: str) -> dict:
        return {"photo_id": photo_id, "business_id": "biz-broken", "caption": photo_id, "label": label}

    good = synth_photo("food", rng, (500, 375))
    # usable after conversion
    buf = io.BytesIO()
    good.save(buf, format="PNG")
    (photos / "broken-png-as-jpg.jpg").write_bytes(buf.getvalue())
    (photos / "broken-cmyk.jpg").write_bytes(jpeg_bytes(good.convert("CMYK")))
    (photos / "broken-grayscale.jpg").write_bytes(jpeg_bytes(good.convert("L")))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    (photos / "broken-exif-rotated.jpg").write_bytes(jpeg_bytes(good, exif=exif.tobytes()))
    # not usable
    full = jpeg_bytes(good)
    (photos / "broken-truncated.jpg").write_bytes(full[: len(full) // 2])
    (photos / "broken-not-an-image.jpg").write_bytes(b"<html>this is not a photo</html>")
    (photos / "broken-empty.jpg").write_bytes(b"")
    Image.new("L", (7000, 7000), 128).save(photos / "broken-too-large.jpg", format="JPEG", quality=50)
    return [
        rec("broken-png-as-jpg", "food"), rec("broken-cmyk", "food"), rec("broken-grayscale", "food"),
        rec("broken-exif-rotated", "food"), rec("broken-truncated", "drink"), rec("broken-not-an-image", "menu"),
        rec("broken-empty", "menu"), rec("broken-too-large", "inside"), rec("broken-missing-file", "outside"),
        rec("broken-unknown-label", "parking-lot"),
    ]
