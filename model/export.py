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


# ------------------------------------------------------------------------------------- HDF5 for Keras 2.2
H5_FILE = "model.h5"
# What the file claims to come from. Keras 2.2 reads these two root attributes before it loads the weights: without
# keras_version it takes the file for a Keras 1 one and converts the weights (keras/engine/saving.py @ 2.2.4,
# load_weights_from_hdf5_group and preprocess_weights_for_loading).
H5_KERAS_VERSION = "2.2.4"
H5_BACKEND = "tensorflow"


def keras22_layer_names(kinds: list[str]) -> list[str]:
    """The names Keras 2.2 gives a Sequential's layers: <snake_case class>_<n>, counted per class from 1."""
    counts: dict[str, int] = {}
    names = []
    for kind in kinds:
        counts[kind] = counts.get(kind, 0) + 1
        names.append(f"{kind}_{counts[kind]}")
    return names


KERAS22_KINDS = {"Conv2D": "conv2d", "MaxPooling2D": "max_pooling2d", "Flatten": "flatten", "Dense": "dense",
                 "Dropout": "dropout"}


def export_h5(model_path: Path) -> tuple[Path, bool]:
    """Write model.h5 beside model.keras: the CNN's weights in the HDF5 layout Keras 2.2's `load_weights` reads.

    Why weights only: a Keras 3 model config cannot be deserialized by Keras 2.2, and the model's Rescaling layer
    does not exist there. The 2018 function (function/kubeless/py36/handler.py) builds the same layers with the
    Keras 2.2 API, divides the pixels by 255 itself, and loads these weights by position, as Keras 2.2 does. The
    root attributes image_size, num_classes and dense_units tell it the shapes. Returns (path, changed): the file
    is rewritten only when its content would change.
    """
    import h5py
    import keras

    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path} does not exist; train first: python -m model train --out DIR")
    model = keras.models.load_model(model_path, compile=False)
    kept = [layer for layer in model.layers if type(layer).__name__ != "Rescaling"]
    unknown = sorted({type(layer).__name__ for layer in kept} - set(KERAS22_KINDS))
    if unknown:
        raise ValueError(f"{model_path}: layers {unknown} have no Keras 2.2 counterpart in the 2018 function")
    names = keras22_layer_names([KERAS22_KINDS[type(layer).__name__] for layer in kept])
    dense = [layer for layer in kept if type(layer).__name__ == "Dense"]
    out = model_path.parent / H5_FILE
    tmp = out.with_suffix(".h5.tmp")
    with h5py.File(tmp, "w", track_order=True) as f:
        # fixed-length byte strings, as Keras 2.2 writes them: it calls .decode() on what h5py 2.x reads back, which a
        # variable-length string (h5py's choice for a Python bytes object) would not have
        f.attrs["layer_names"] = np.array([name.encode("utf8") for name in names], dtype="S")
        f.attrs["backend"] = np.bytes_(H5_BACKEND.encode("utf8"))
        f.attrs["keras_version"] = np.bytes_(H5_KERAS_VERSION.encode("utf8"))
        f.attrs["image_size"] = int(model.input_shape[1])
        f.attrs["num_classes"] = int(dense[-1].units)
        f.attrs["dense_units"] = int(dense[0].units)
        for name, layer in zip(names, kept, strict=True):
            group = f.create_group(name)
            values = [np.asarray(w) for w in layer.get_weights()]
            suffixes = ["kernel:0", "bias:0"][: len(values)]
            weight_names = [f"{name}/{suffix}" for suffix in suffixes]
            group.attrs["weight_names"] = np.array([w.encode("utf8") for w in weight_names], dtype="S")
            for weight_name, value in zip(weight_names, values, strict=True):
                group.create_dataset(weight_name, data=value)
    # HDF5 files differ byte for byte between two writes of the same data, so their content is compared
    if out.is_file() and _h5_content(out) == _h5_content(tmp):
        tmp.unlink()
        return out, False
    tmp.replace(out)
    return out, True


def _h5_content(path: Path) -> list:
    """Every attribute and dataset of an HDF5 file, by name, as comparable Python values."""
    import h5py

    items: list = []
    with h5py.File(path, "r") as f:
        def visit(name: str, obj) -> None:
            attrs = sorted((key, np.asarray(value).tolist()) for key, value in obj.attrs.items())
            data = np.asarray(obj).tobytes() if isinstance(obj, h5py.Dataset) else None
            items.append((name, attrs, data))

        visit("/", f)
        f.visititems(visit)
    return items
