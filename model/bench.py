"""`python -m model bench`: decode, predict, cold start and memory of each backend, printed as numbers.

Targets (2-core development machine): decode+resize of a 500x375 JPEG <= 2 ms; keras eager predict
p50 <= 6 ms; litert predict p50 <= 1 ms; cold start <= 2.5 s (keras) and <= 0.3 s (litert).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from model.inference import BACKENDS, LITERT_FILE, MODEL_FILE, Predictor, decode_image

COLD_START_SNIPPET = """
import json, sys, time
t0 = time.perf_counter()
from model.inference import Predictor
p = Predictor(sys.argv[1], backend=sys.argv[2])
data = open(sys.argv[3], 'rb').read()
p.predict_bytes(data)
t1 = time.perf_counter()
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent across exec
hwm_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
rss_mb = hwm_kb / 1024
print(json.dumps({"first_prediction_s": t1 - t0, "peak_rss_mb": rss_mb}))
"""


def _pcts(samples_ms: list[float]) -> dict[str, float]:
    arr = np.asarray(samples_ms)
    return {"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99)), "n": len(arr)}


def run_bench(model_dir: Path, calls: int = 200, image: Path | None = None) -> dict:
    from model.synth import jpeg_bytes, synth_photo

    model_dir = Path(model_dir)
    if image is None:
        image = model_dir / "bench-500x375.jpg"
        if not image.exists():
            image.write_bytes(jpeg_bytes(synth_photo("food", np.random.default_rng(7), (500, 375))))
    data = Path(image).read_bytes()
    results: dict = {"image": str(image), "calls": calls, "backends": {}}

    size = json.loads((model_dir / "labels.json").read_text())["image_size"]
    for _ in range(20):
        decode_image(data, size)
    decode_ms = []
    for _ in range(calls):
        t = time.perf_counter()
        decode_image(data, size)
        decode_ms.append((time.perf_counter() - t) * 1000)
    results["decode_resize"] = _pcts(decode_ms)
    print(f"decode+resize {image.name}: p50 {results['decode_resize']['p50_ms']:.2f} ms, "
          f"p99 {results['decode_resize']['p99_ms']:.2f} ms (target p50 <= 2 ms)", flush=True)

    for backend in BACKENDS:
        needed = model_dir / (MODEL_FILE if backend == "keras" else LITERT_FILE)
        if not needed.exists():
            print(f"{backend}: skipped, {needed} missing", flush=True)
            continue
        proc = subprocess.run(
            [sys.executable, "-c", COLD_START_SNIPPET, str(model_dir), backend, str(image)],
            capture_output=True, text=True, check=True, timeout=300,
            cwd=Path(__file__).resolve().parent.parent,
        )
        cold = json.loads(proc.stdout.strip().splitlines()[-1])
        predictor = Predictor(model_dir, backend=backend)
        batch = predictor.preprocess(data)
        for _ in range(20):
            predictor.predict_array(batch)
        predict_ms = []
        for _ in range(calls):
            t = time.perf_counter()
            predictor.predict_array(batch)
            predict_ms.append((time.perf_counter() - t) * 1000)
        stats = _pcts(predict_ms) | cold
        results["backends"][backend] = stats
        target = "6 ms / 2.5 s" if backend == "keras" else "1 ms / 0.3 s"
        print(f"{backend:>6}: predict p50 {stats['p50_ms']:.2f} ms, p99 {stats['p99_ms']:.2f} ms; "
              f"cold start {stats['first_prediction_s']:.2f} s; peak RSS {stats['peak_rss_mb']:.0f} MB "
              f"(targets p50 / cold: {target})", flush=True)
    return results
