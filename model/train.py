"""Train the paper's CNN on a Yelp-format photo folder and write model.keras, labels.json, metrics.json."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from model import DEFAULT_IMAGE_SIZE, LABELS, PAPER_ACCURACY, PAPER_LOSS
from model.cnn import build_cnn, weight_layer_count
from model.inference import LABELS_FILE, MODEL_FILE, file_sha256
from model.yelp_dataset import class_counts, load_dataset, stratified_split

METRICS_FILE = "metrics.json"


def library_versions() -> dict[str, str]:
    import keras
    import PIL
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
    }


def per_class_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[dict, list[list[int]]]:
    n = len(LABELS)
    confusion = np.zeros((n, n), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        confusion[t, p] += 1
    per_class = {}
    for i, label in enumerate(LABELS):
        tp = confusion[i, i]
        predicted = confusion[:, i].sum()
        actual = confusion[i, :].sum()
        per_class[label] = {
            "precision": round(float(tp / predicted), 4) if predicted else None,
            "recall": round(float(tp / actual), 4) if actual else None,
            "support": int(actual),
        }
    return per_class, confusion.tolist()


def train(
    data_dir: Path,
    out_dir: Path,
    epochs: int = 10,
    image_size: int = DEFAULT_IMAGE_SIZE,
    seed: int = 0,
    batch_size: int = 32,
    limit_per_class: int | None = None,
    learning_rate: float = 1e-3,
) -> dict:
    import keras
    import tensorflow as tf

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()

    print(f"loading photos from {data_dir} at {image_size}x{image_size} ...", flush=True)
    ds = load_dataset(Path(data_dir), image_size, limit_per_class=limit_per_class, seed=seed)
    print(ds.report.summary(), flush=True)
    train_idx, val_idx, test_idx = stratified_split(ds.y, seed)
    splits = {"train": train_idx, "validation": val_idx, "test": test_idx}
    counts = {name: class_counts(ds.y[idx]) for name, idx in splits.items()}
    for name, c in counts.items():
        print(f"{name:>10}: {sum(c.values()):6d}  " + "  ".join(f"{k}={v}" for k, v in c.items()), flush=True)

    model = build_cnn(image_size)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    x_train = ds.x[train_idx].astype(np.float32)
    x_val = ds.x[val_idx].astype(np.float32)
    x_test = ds.x[test_idx].astype(np.float32)
    started = time.perf_counter()
    history = model.fit(
        x_train, ds.y[train_idx],
        validation_data=(x_val, ds.y[val_idx]) if len(val_idx) else None,
        epochs=epochs, batch_size=batch_size, verbose=2, shuffle=True,
    )
    train_seconds = time.perf_counter() - started

    eval_x, eval_y = (x_test, ds.y[test_idx]) if len(test_idx) else (x_val, ds.y[val_idx])
    loss, accuracy = model.evaluate(eval_x, eval_y, verbose=0)
    y_pred = np.argmax(model.predict(eval_x, verbose=0), axis=1)
    per_class, confusion = per_class_metrics(eval_y, y_pred)

    # Save without optimizer state, as a deployment artefact: an uncompiled twin with the trained weights.
    export = build_cnn(image_size)
    export.set_weights(model.get_weights())
    model_path = out_dir / MODEL_FILE
    export.save(model_path)
    (out_dir / LABELS_FILE).write_text(json.dumps({"labels": list(LABELS), "image_size": image_size}, indent=2))

    metrics = {
        "accuracy": round(float(accuracy), 4),
        "loss": round(float(loss), 4),
        "evaluated_on": "test" if len(test_idx) else "validation",
        "val_accuracy_last_epoch": round(float(history.history.get("val_accuracy", [float("nan")])[-1]), 4),
        "paper": {"accuracy": PAPER_ACCURACY, "loss": PAPER_LOSS, "dataset": "Yelp photos, 19309 training images"},
        "per_class": per_class,
        "confusion_matrix": {"labels": list(LABELS), "rows_true_cols_pred": confusion},
        "dataset": {"dir": str(data_dir), "split_counts": counts, **ds.report.to_dict()},
        "history": {k: [round(float(v), 4) for v in vals] for k, vals in history.history.items()},
        "parameters": int(export.count_params()),
        "weight_layers": weight_layer_count(export),
        "image_size": image_size,
        "file": MODEL_FILE,
        "file_size_bytes": model_path.stat().st_size,
        "sha256": file_sha256(model_path),
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "train_seconds": round(train_seconds, 1),
        "versions": library_versions(),
    }
    (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    print(
        f"\n{'':12}{'accuracy':>10}{'loss':>10}\n"
        f"{'this run':12}{metrics['accuracy']:>10.3f}{metrics['loss']:>10.3f}   ({metrics['evaluated_on']} set)\n"
        f"{'paper':12}{PAPER_ACCURACY:>10.3f}{PAPER_LOSS:>10.3f}   (real Yelp photos)\n"
        f"model: {model_path} ({metrics['file_size_bytes'] / 1e6:.1f} MB, {metrics['parameters']:,} parameters, "
        f"sha256 {metrics['sha256'][:12]})",
        flush=True,
    )
    return metrics


def main_train(args) -> int:
    from model.yelp_dataset import DatasetError

    try:
        train(args.data, args.out, epochs=args.epochs, image_size=args.image_size, seed=args.seed,
              batch_size=args.batch_size, limit_per_class=args.limit_per_class)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
