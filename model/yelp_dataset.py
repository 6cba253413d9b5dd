"""Read photos in the Yelp Open Dataset layout (or one folder per class) into arrays, never crashing on a
bad file: what can be converted is converted, the rest is skipped and counted."""

from __future__ import annotations

import io
import json
import sys
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from model import LABELS
from model.inference import (
    DEFAULT_MAX_PIXELS,
    InferenceError,
    TooManyPixels,
    TruncatedImage,
    UnsupportedImageMode,
    decode_image,
)

PHOTOS_JSON = "photos.json"
PHOTOS_DIR = "photos"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class DatasetError(Exception):
    """The folder is not a dataset we can read; the message says what to fix."""


@dataclass
class LoadReport:
    """What the loader saw: images kept per class, files converted or skipped and why."""

    layout: str = ""
    kept: Counter = field(default_factory=Counter)
    converted: Counter = field(default_factory=Counter)  # reason -> count (still used)
    skipped: Counter = field(default_factory=Counter)  # reason -> count (not used)

    def to_dict(self) -> dict:
        return {
            "layout": self.layout,
            "kept_per_class": dict(self.kept),
            "converted": dict(self.converted),
            "skipped": dict(self.skipped),
        }

    def summary(self) -> str:
        kept = ", ".join(f"{k}={v}" for k, v in sorted(self.kept.items())) or "none"
        conv = ", ".join(f"{k}={v}" for k, v in sorted(self.converted.items())) or "none"
        skip = ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items())) or "none"
        return f"layout: {self.layout}\nkept: {kept}\nconverted: {conv}\nskipped: {skip}"


def list_examples(data_dir: Path, report: LoadReport) -> list[tuple[Path, str]]:
    """Return (image path, label) pairs from a Yelp layout or a folder-per-class layout."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DatasetError(f"{data_dir} is not a folder")
    photos_json = data_dir / PHOTOS_JSON
    if photos_json.is_file():
        report.layout = "yelp"
        return _list_yelp(data_dir, photos_json, report)
    class_dirs = [d for d in sorted(data_dir.iterdir()) if d.is_dir() and d.name in LABELS]
    if class_dirs:
        report.layout = "folder-per-class"
        examples = []
        for class_dir in class_dirs:
            for path in sorted(class_dir.iterdir()):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    examples.append((path, class_dir.name))
        return examples
    raise DatasetError(
        f"{data_dir} is neither a Yelp photo layout ({PHOTOS_JSON} beside {PHOTOS_DIR}/<photo_id>.jpg) "
        f"nor a folder per class ({', '.join(LABELS)}). Point --data at the folder that holds {PHOTOS_JSON}, "
        "or generate one: python -m model synth --out DIR"
    )


def _list_yelp(data_dir: Path, photos_json: Path, report: LoadReport) -> list[tuple[Path, str]]:
    photos_dir = data_dir / PHOTOS_DIR
    if not photos_dir.is_dir():
        raise DatasetError(f"{photos_json} exists but {photos_dir}/ does not; the photos must sit beside it")
    examples = []
    with open(photos_json, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
                photo_id, label = record["photo_id"], record["label"]
            except (ValueError, KeyError, TypeError):
                report.skipped["bad_json_line"] += 1
                if report.skipped["bad_json_line"] <= 3:
                    print(f"warning: {photos_json}:{lineno}: not a photo record, skipped", file=sys.stderr)
                continue
            if label not in LABELS:
                report.skipped["unknown_label"] += 1
                continue
            examples.append((photos_dir / f"{photo_id}.jpg", label))
    return examples


def load_image(path: Path, size: int, report: LoadReport, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray | None:
    """Decode one training photo to (size, size, 3) uint8, or None (counted in `report`) if unusable.

    The pixels come from the inference core's decode_image, so training sees exactly what serving sees;
    this function only reads the header first to count what had to be converted.
    """
    if not path.is_file():
        report.skipped["missing_file"] += 1
        return None
    data = path.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as header:
                fmt, mode = header.format, header.mode
                orientation = header.getexif().get(0x0112, 1)
        except Image.DecompressionBombError:
            report.skipped["too_large"] += 1
            return None
        except (UnidentifiedImageError, OSError, SyntaxError):
            report.skipped["not_an_image"] += 1
            return None
    try:
        pixels = decode_image(data, size, max_pixels)
    except TooManyPixels:
        report.skipped["too_large"] += 1
        return None
    except TruncatedImage:
        report.skipped["truncated_or_corrupt"] += 1
        return None
    except UnsupportedImageMode:
        report.skipped["unsupported_mode"] += 1
        return None
    except InferenceError:
        report.skipped["not_an_image"] += 1
        return None
    if fmt != "JPEG":
        report.converted[f"{fmt or 'unknown'}_as_jpg"] += 1
    if orientation != 1:
        report.converted["exif_rotated"] += 1
    if mode != "RGB":
        report.converted[f"mode_{mode}"] += 1
    return pixels


@dataclass
class Dataset:
    x: np.ndarray  # (N, S, S, 3) uint8
    y: np.ndarray  # (N,) int class index into LABELS
    report: LoadReport


def load_dataset(
    data_dir: Path,
    size: int,
    limit_per_class: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> Dataset:
    report = LoadReport()
    examples = list_examples(Path(data_dir), report)
    if limit_per_class:
        rng = np.random.default_rng(seed)
        by_class: dict[str, list] = {}
        for ex in examples:
            by_class.setdefault(ex[1], []).append(ex)
        examples = []
        for label in sorted(by_class):
            items = by_class[label]
            order = rng.permutation(len(items))[:limit_per_class]
            examples.extend(items[i] for i in sorted(order))
    xs, ys = [], []
    total = len(examples)
    for i, (path, label) in enumerate(examples, 1):
        arr = load_image(path, size, report)
        if arr is not None:
            xs.append(arr)
            ys.append(LABELS.index(label))
            report.kept[label] += 1
        if progress and (i % 500 == 0 or i == total):
            print(f"  loaded {i}/{total} photos", file=sys.stderr, flush=True)
    if not xs:
        raise DatasetError(f"no usable photos in {data_dir}:\n{report.summary()}")
    return Dataset(np.stack(xs), np.asarray(ys, dtype=np.int64), report)


def stratified_split(
    y: np.ndarray, seed: int, val_fraction: float = 0.1, test_fraction: float = 0.1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class shuffled split into train/validation/test index arrays (each class keeps its share)."""
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        n_val = max(1, round(len(idx) * val_fraction)) if len(idx) >= 3 else 0
        n_test = max(1, round(len(idx) * test_fraction)) if len(idx) >= 3 else 0
        test.extend(idx[:n_test])
        val.extend(idx[n_test : n_test + n_val])
        train.extend(idx[n_test + n_val :])
    return tuple(np.sort(np.asarray(a, dtype=np.int64)) for a in (train, val, test))  # type: ignore[return-value]


def fingerprint(data_dir: Path, params: list[str]) -> str:
    """A hash of what training reads: photos.json (or the class folders' listing), file names and sizes,
    and the training parameters. Same inputs, same hash; used to skip retraining."""
    import hashlib

    report = LoadReport()
    examples = list_examples(Path(data_dir), report)
    digest = hashlib.sha256()
    digest.update(json.dumps(sorted(params)).encode())
    if report.layout == "yelp":
        digest.update((Path(data_dir) / PHOTOS_JSON).read_bytes())
    for path, label in examples:
        size = path.stat().st_size if path.exists() else -1
        digest.update(f"{path.name}\t{label}\t{size}\n".encode())
    return digest.hexdigest()


def class_counts(y: np.ndarray) -> dict[str, int]:
    return {label: int((y == i).sum()) for i, label in enumerate(LABELS)}
