"""Export the Keras model to LiteRT (TFLite float32) and check it agrees with Keras on top-1."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.inference import LITERT_FILE, Predictor


def export_litert(model_path: Path) -> Path:
    import keras

    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path} does not exist; train first: python -m model train --out DIR")
    model = keras.models.load_model(model_path, compile=False)
    out = model_path.parent / LITERT_FILE
    # Keras' own LiteRT exporter keeps the weights as constants (a hand-made concrete function did not).
    model.export(str(out), format="litert", verbose=False)
    return out


def agreement(model_dir: Path, images: list[bytes]) -> dict:
    """Top-1 agreement and max score difference between the keras and litert backends on `images`."""
    keras_p = Predictor(model_dir, backend="keras")
    lite_p = Predictor(model_dir, backend="litert")
    agree, max_diff = 0, 0.0
    for data in images:
        batch = keras_p.preprocess(data)
        a, b = keras_p.predict_array(batch)[0], lite_p.predict_array(batch)[0]
        finite = bool(np.all(np.isfinite(a)) and np.all(np.isfinite(b)))
        agree += int(finite and np.argmax(a) == np.argmax(b))
        max_diff = max(max_diff, float(np.max(np.abs(a - b))) if finite else float("inf"))
    return {"images": len(images), "top1_agreement": agree / max(1, len(images)), "max_score_diff": max_diff}


def held_out_images(n: int = 50, seed: int = 12345) -> list[bytes]:
    """Fresh synthetic photos never seen in training (a different seed), for the agreement check."""
    from model import LABELS
    from model.synth import jpeg_bytes, synth_photo

    rng = np.random.default_rng(seed)
    return [jpeg_bytes(synth_photo(LABELS[i % len(LABELS)], rng)) for i in range(n)]
