"""python -m model: synth | train | export | predict | bench."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from model import DEFAULT_IMAGE_SIZE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m model",
        description="The paper's 5-class Yelp photo CNN: make data, train, export, predict, benchmark.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write a synthetic photo set in the Yelp Open Dataset layout")
    p.add_argument("--out", type=Path, required=True, help="folder to write photos.json and photos/ into")
    p.add_argument("--images-per-class", type=int, default=200, help="photos per class (default 200)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same photos (default 0)")
    p.add_argument("--include-broken", action="store_true",
                   help="also write truncated, CMYK, PNG-as-JPG, EXIF-rotated, huge and missing files")

    p = sub.add_parser("train", help="train the CNN; writes model.keras, labels.json, metrics.json")
    p.add_argument("--data", type=Path, required=True,
                   help="a Yelp photo folder (photos.json + photos/) or one sub-folder per class")
    p.add_argument("--out", type=Path, required=True, help="folder for the model artefacts")
    p.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    p.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE,
                   help=f"square input size in pixels (default {DEFAULT_IMAGE_SIZE}, the paper-sized 11 MB model)")
    p.add_argument("--seed", type=int, default=0, help="seed for the split, the weights and shuffling (default 0)")
    p.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default 32)")
    p.add_argument("--limit-per-class", type=int, default=None,
                   help="use at most this many photos per class (the real Yelp set has ~200k photos)")

    p = sub.add_parser("fingerprint", help="print a hash of the training inputs (to skip unchanged retraining)")
    p.add_argument("--data", type=Path, required=True, help="the training photo folder")
    p.add_argument("params", nargs="*", help="training parameters to fold into the hash (e.g. epochs=10)")

    p = sub.add_parser("export", help="export model.keras to LiteRT (checking top-1 agreement) or to HDF5")
    p.add_argument("--model", type=Path, required=True, help="path to model.keras (labels.json beside it)")
    p.add_argument("--format", choices=["litert", "h5"], default="litert",
                   help="litert (default): model.tflite; h5: model.h5, the weights in the HDF5 layout Keras 2.2 "
                        "reads, for the 2018 python3.6 function (function/kubeless/py36); rewritten only on change")
    p.add_argument("--check-images", type=int, default=50,
                   help="held-out synthetic photos used for the agreement check (default 50)")
    p.add_argument("--min-agreement", type=float, default=0.98,
                   help="fail if top-1 agreement with Keras is below this (default 0.98)")

    p = sub.add_parser("predict", help="predict image files and print the result JSON, one line each")
    p.add_argument("--model-dir", type=Path, required=True, help="folder with model.keras/model.tflite + labels")
    p.add_argument("--backend", choices=["keras", "litert"], default="keras", help="inference backend")
    p.add_argument("images", nargs="+", type=Path, help="image files (JPEG or PNG)")

    p = sub.add_parser("bench", help="print decode, predict, cold-start and memory numbers per backend")
    p.add_argument("--model-dir", type=Path, required=True, help="folder with the model artefacts")
    p.add_argument("--calls", type=int, default=200, help="timed calls per measurement (default 200)")
    p.add_argument("--image", type=Path, default=None, help="JPEG to use (default: a synthetic 500x375 photo)")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "synth":
        from model.synth import write_yelp_layout

        counts = write_yelp_layout(args.out, args.images_per_class, args.seed, args.include_broken)
        print(f"wrote {counts['good']} photos ({counts['broken']} broken cases) to {args.out}")
        return 0
    if args.command == "train":
        from model.train import main_train

        return main_train(args)
    if args.command == "fingerprint":
        from model.yelp_dataset import DatasetError, fingerprint

        try:
            print(fingerprint(args.data, args.params))
        except DatasetError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "export" and args.format == "h5":
        from model.export import export_h5

        try:
            out, changed = export_h5(args.model)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)" if changed else f"{out} unchanged")
        return 0
    if args.command == "export":
        from model.export import agreement, export_litert, held_out_images

        try:
            out = export_litert(args.model)
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        check = agreement(args.model.parent, held_out_images(args.check_images))
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); top-1 agreement with keras "
              f"{check['top1_agreement']:.3f} on {check['images']} held-out photos, "
              f"max score difference {check['max_score_diff']:.2e}")
        if check["top1_agreement"] < args.min_agreement:
            print(f"error: agreement below {args.min_agreement}", file=sys.stderr)
            return 1
        return 0
    if args.command == "predict":
        from model.inference import InferenceError, ModelNotFound, Predictor

        try:
            predictor = Predictor(args.model_dir, backend=args.backend)
        except ModelNotFound as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        status = 0
        for image in args.images:
            try:
                print(json.dumps(predictor.predict_bytes(image.read_bytes()) | {"file": str(image)}))
            except (InferenceError, OSError) as exc:
                print(f"error: {image}: {exc}", file=sys.stderr)
                status = 1
        return status
    if args.command == "bench":
        from model.bench import run_bench

        results = run_bench(args.model_dir, args.calls, args.image)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
