"""The JPEGs the benchmark POSTs: photo-like, seeded, of the sizes phones and review sites serve.

A benchmark payload should cost the server what a real upload costs: JPEG decode time grows with pixel count
and with how much detail the entropy coder has to undo, so flat test patterns are too cheap. These images
are built from fractal (multi-octave) noise for texture, a few soft-edged shapes for objects, a lighting
gradient and sensor noise, then saved as baseline JPEG at quality 90 with 4:2:0 chroma subsampling (what
cameras and phones write). The same name always gives the same pixels; the bytes also depend on the Pillow
version's encoder, so the manifest records each payload's size and SHA-256.

`python -m analysis.bench.payloads --out DIR` writes all of them.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZES = {"photo-500x375.jpg": (500, 375), "photo-1024x768.jpg": (1024, 768), "photo-2048x1536.jpg": (2048, 1536)}
DEFAULT_PAYLOAD = "photo-500x375.jpg"  # the size of a Yelp dataset photo, the paper's data
JPEG_QUALITY = 90
_NAME = re.compile(r"^photo-(\d+)x(\d+)\.jpg$")


@dataclass(frozen=True)
class Payload:
    name: str
    path: Path
    width: int
    height: int
    bytes: int
    sha256: str

    def to_dict(self) -> dict:
        return {"name": self.name, "path": str(self.path), "width": self.width, "height": self.height,
                "bytes": self.bytes, "sha256": self.sha256}


def size_of(name: str) -> tuple[int, int]:
    """(width, height) for a payload name such as photo-500x375.jpg; any photo-WxH.jpg up to 8000 px works."""
    match = _NAME.match(name)
    if not match:
        raise ValueError(
            f"unknown payload {name!r}: use photo-WIDTHxHEIGHT.jpg, e.g. one of {', '.join(SIZES)}, "
            "or give the path of your own JPEG"
        )
    width, height = int(match.group(1)), int(match.group(2))
    if not (16 <= width <= 8000 and 16 <= height <= 8000):
        raise ValueError(f"payload {name!r}: width and height must be between 16 and 8000 pixels")
    return width, height


def _fractal_noise(
    rng: np.random.Generator, width: int, height: int, channels: int = 3, decay: float = 0.55
) -> np.ndarray:
    """Sum of noise octaves, each `decay` times weaker than the last: a natural image's falling spectrum."""
    out = np.zeros((height, width, channels), dtype=np.float32)
    amplitude = 1.0
    cells = 4
    while cells <= max(width, height) // 2:
        grid = rng.standard_normal((max(2, cells * height // width), cells, channels)).astype(np.float32)
        layers = [
            np.asarray(Image.fromarray(grid[:, :, c]).resize((width, height), Image.Resampling.BICUBIC))
            for c in range(channels)
        ]
        out += amplitude * np.stack(layers, axis=-1)
        amplitude *= decay
        cells *= 2
    return out


def render(name: str, seed: int = 0) -> Image.Image:
    """The image for `name`, deterministic in (name, seed)."""
    width, height = size_of(name)
    rng = np.random.default_rng(zlib.crc32(f"{name}:{seed}".encode()))
    base_colour = rng.uniform(60, 190, size=3).astype(np.float32)
    noise = _fractal_noise(rng, width, height)
    noise = noise / (np.abs(noise).max() + 1e-6)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    light = 1.0 + 0.35 * (1 - (xx / width + yy / height) / 2) - 0.15  # a window on one side
    pixels = (base_colour * light[..., None] + 70.0 * noise).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")

    # objects: soft ellipses and rectangles (plates, cups, tables, signs) with their own texture
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for _ in range(int(rng.integers(5, 10))):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(0.05, 0.3) * width, rng.uniform(0.05, 0.3) * height
        colour = (*(int(v) for v in rng.integers(20, 240, size=3)), int(rng.integers(140, 230)))
        box = (cx - rx, cy - ry, cx + rx, cy + ry)
        if rng.random() < 0.5:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, fill=colour)
    layer = layer.filter(ImageFilter.GaussianBlur(radius=max(1.0, width / 400)))
    image.paste(layer, (0, 0), layer)

    # texture on top of everything and sensor noise, as a camera records it
    detail = _fractal_noise(rng, width, height, channels=1, decay=0.8)[..., 0]
    detail = 40.0 * detail / (np.abs(detail).max() + 1e-6)
    sensor = rng.normal(0.0, 4.0, size=(height, width, 3)).astype(np.float32)
    pixels = np.asarray(image, dtype=np.float32) + detail[..., None] + sensor
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")


def encode(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling="4:2:0", optimize=False)
    return buffer.getvalue()


def write(name: str, directory: Path, seed: int = 0) -> Payload:
    """Write payload `name` into `directory` (kept if already there with the same size) and describe it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    if not path.exists():
        data = encode(render(name, seed))
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return describe(path, name)


def describe(path: Path, name: str | None = None) -> Payload:
    """Size and hash of a JPEG on disk (also for a user's own file); not a JPEG -> ValueError."""
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "JPEG":
                raise ValueError(f"payload {path} is a {image.format} image, not a JPEG")
            width, height = image.size
    except OSError as exc:
        raise ValueError(f"payload {path} is not an image Pillow can read: {exc}") from None
    return Payload(name or path.name, path, width, height, len(data), hashlib.sha256(data).hexdigest())


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.bench.payloads", description="Write the benchmark's photo-like JPEG payloads."
    )
    parser.add_argument("names", nargs="*", default=list(SIZES),
                        help=f"payload names (default: {' '.join(SIZES)}); any photo-WxH.jpg works")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the JPEGs into")
    parser.add_argument("--seed", type=int, default=0, help="change to get different pixels (default 0)")
    args = parser.parse_args()
    for name in args.names:
        p = write(name, args.out, args.seed)
        print(f"{p.path}  {p.width}x{p.height}  {p.bytes} bytes  sha256 {p.sha256[:16]}")


if __name__ == "__main__":
    main()
