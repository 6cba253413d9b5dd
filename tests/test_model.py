"""The model package against real TensorFlow, LiteRT, Pillow and real files."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from model import LABELS
from model.inference import (
    RESULT_JSON_LENGTH,
    BadJsonBody,
    BodyTooLarge,
    EmptyBody,
    ModelNotFound,
    NotAnImage,
    Predictor,
    TooManyPixels,
    TruncatedImage,
    UnsupportedContentType,
    image_bytes_from_body,
)
from model.synth import jpeg_bytes, synth_photo, write_yelp_layout
from model.yelp_dataset import DatasetError, LoadReport, list_examples, load_dataset, stratified_split
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def broken_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("yelp")
    write_yelp_layout(out, images_per_class=6, seed=1, include_broken=True)
    return out


def test_loader_survives_every_broken_case_and_counts_them(broken_set):
    ds = load_dataset(broken_set, size=64, progress=False)
    report = ds.report.to_dict()
    assert report["layout"] == "yelp"
    # converted and kept: PNG under .jpg, CMYK, grayscale, EXIF-rotated (all labelled food)
    assert report["converted"] == {"PNG_as_jpg": 1, "mode_CMYK": 1, "mode_L": 1, "exif_rotated": 1}
    assert report["kept_per_class"] == {"food": 10, "drink": 6, "menu": 6, "inside": 6, "outside": 6}
    # skipped and counted: truncated, not an image + empty, too large, missing file, unknown label, bad line
    assert report["skipped"] == {
        "truncated_or_corrupt": 1, "not_an_image": 2, "too_large": 1, "missing_file": 1,
        "unknown_label": 1, "bad_json_line": 1,
    }
    assert ds.x.shape == (34, 64, 64, 3) and ds.x.dtype == np.uint8
    assert sorted(set(ds.y.tolist())) == [0, 1, 2, 3, 4]


def test_exif_rotation_is_applied(broken_set):
    # The EXIF-rotated photo is stored 500x375 landscape with orientation 6: it must load as portrait
    # content, i.e. equal to the stored pixels rotated by 90 degrees clockwise.
    path = broken_set / "photos" / "broken-exif-rotated.jpg"
    raw = Image.open(path)
    assert raw.size == (500, 375)
    from model.yelp_dataset import load_image

    got = load_image(path, 32, LoadReport())
    expected = np.asarray(raw.convert("RGB").transpose(Image.Transpose.ROTATE_270).resize((32, 32), Image.BILINEAR))
    assert np.abs(got.astype(int) - expected.astype(int)).mean() < 12


def test_folder_per_class_layout(tmp_path):
    rng = np.random.default_rng(0)
    for label in LABELS:
        (tmp_path / label).mkdir()
        for i in range(3):
            (tmp_path / label / f"{i}.jpg").write_bytes(jpeg_bytes(synth_photo(label, rng)))
    report = LoadReport()
    examples = list_examples(tmp_path, report)
    assert report.layout == "folder-per-class" and len(examples) == 15


def test_not_a_dataset_gives_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match=r"neither a Yelp photo layout .*photos\.json"):
        load_dataset(tmp_path, 32, progress=False)
    proc = subprocess.run(
        [sys.executable, "-m", "model", "train", "--data", str(tmp_path), "--out", str(tmp_path / "m")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and "neither a Yelp photo layout" in proc.stderr


def test_split_is_seeded_and_stratified():
    y = np.repeat(np.arange(5), 40)
    a = stratified_split(y, seed=5)
    b = stratified_split(y, seed=5)
    c = stratified_split(y, seed=6)
    assert all(np.array_equal(x, z) for x, z in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])
    train, val, test = a
    assert len(set(train) | set(val) | set(test)) == 200
    for idx, per_class in ((train, 32), (val, 4), (test, 4)):
        assert np.bincount(y[idx], minlength=5).tolist() == [per_class] * 5


def test_cnn_matches_the_paper_size():
    from model.cnn import build_cnn, weight_layer_count

    model = build_cnn()
    assert weight_layer_count(model) == 5
    assert 2_700_000 <= model.count_params() <= 2_900_000
    assert model.output_shape == (None, 5)


def test_training_writes_artefacts_and_learns(trained_model_dir):
    metrics = json.loads((trained_model_dir / "metrics.json").read_text())
    assert metrics["val_accuracy_last_epoch"] > 0.6  # chance is 0.2
    assert metrics["accuracy"] > 0.6
    assert 10_000_000 <= metrics["file_size_bytes"] <= 12_000_000  # the paper's "around 11 MB"
    for key in ("loss", "per_class", "confusion_matrix", "dataset", "parameters", "sha256", "versions", "seed"):
        assert key in metrics
    assert set(metrics["per_class"]) == set(LABELS)
    assert metrics["paper"] == {"accuracy": 0.79, "loss": 0.72, "dataset": "Yelp photos, 19309 training images"}
    assert json.loads((trained_model_dir / "labels.json").read_text()) == {"labels": list(LABELS), "image_size": 128}


def test_saved_model_reloads_and_predicts_the_same(trained_model_dir, sample_jpegs):
    first = Predictor(trained_model_dir, backend="keras")
    second = Predictor(trained_model_dir, backend="keras")
    for data in sample_jpegs.values():
        a, b = first.predict_bytes(data), second.predict_bytes(data)
        assert a["label"] == b["label"] and a["scores"] == b["scores"]


def test_litert_agrees_with_keras(trained_model_dir, sample_jpegs):
    from model.export import agreement, held_out_images

    check = agreement(trained_model_dir, list(sample_jpegs.values()) + held_out_images(20))
    assert check["top1_agreement"] == 1.0
    assert check["max_score_diff"] < 1e-4


@pytest.mark.parametrize("backend", ["keras", "litert"])
def test_result_json_has_one_length(trained_model_dir, sample_jpegs, backend):
    predictor = Predictor(trained_model_dir, backend=backend)
    lengths = set()
    for label, data in sample_jpegs.items():
        result = predictor.predict_bytes(data)
        lengths.add(len(json.dumps(result)))
        assert set(result["scores"]) == set(LABELS)
        assert result["backend"] == backend and len(result["model_sha256"]) == 12
        assert result["prediction_ms"] > 0
        assert label  # every class's photo was served
    assert lengths == {RESULT_JSON_LENGTH}


def test_keras_fork_safe_prediction_works_in_a_forked_child(trained_model_dir, sample_jpegs):
    # The Kubeless runtime forks per request after loading the model in the parent.
    code = f"""
import json, multiprocessing as mp, sys
from model.inference import Predictor
p = Predictor({str(trained_model_dir)!r}, backend="keras", fork_safe=True)
data = open(sys.argv[1], "rb").read()
parent = p.predict_bytes(data)
q = mp.get_context("fork").Queue()
def child(): q.put(p.predict_bytes(data))
proc = mp.get_context("fork").Process(target=child); proc.start()
got = q.get(timeout=60); proc.join(10)
print(json.dumps([parent["label"], got["label"], parent["scores"] == got["scores"]]))
"""
    image = trained_model_dir.parent / "fork.jpg"
    image.write_bytes(sample_jpegs["menu"])
    proc = subprocess.run([sys.executable, "-c", code, str(image)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    parent_label, child_label, same = json.loads(proc.stdout.strip().splitlines()[-1])
    assert parent_label == child_label and same


def test_missing_model_file_is_a_clear_error(tmp_path, trained_model_dir):
    with pytest.raises(ModelNotFound, match=r"labels\.json is missing"):
        Predictor(tmp_path)
    (tmp_path / "labels.json").write_text((trained_model_dir / "labels.json").read_text())
    with pytest.raises(ModelNotFound, match=r"model\.tflite is missing .*python -m model export"):
        Predictor(tmp_path, backend="litert")


# ------------------------------------------------------------------------------------- error cases
@pytest.fixture(scope="module")
def litert(trained_model_dir):
    return Predictor(trained_model_dir, backend="litert", max_pixels=4_000_000)


def test_empty_body(litert):
    with pytest.raises(EmptyBody) as err:
        litert.predict_bytes(image_bytes_from_body(b"", "image/jpeg"))
    assert err.value.status == 400


def test_not_an_image(litert):
    with pytest.raises(NotAnImage) as err:
        litert.predict_bytes(b"%PDF-1.4 not an image")
    assert err.value.status == 400 and json.loads(err.value.to_json())["error"] == "not_an_image"


def test_truncated_image(litert, sample_jpegs):
    data = sample_jpegs["food"]
    with pytest.raises(TruncatedImage):
        litert.predict_bytes(data[: len(data) // 2])


def test_decompression_bomb(litert):
    buf = io.BytesIO()
    Image.new("L", (3000, 3000)).save(buf, format="PNG")
    with pytest.raises(TooManyPixels) as err:
        litert.predict_bytes(buf.getvalue())
    assert err.value.status == 413


def test_unsupported_modes_are_converted(litert, sample_jpegs):
    img = Image.open(io.BytesIO(sample_jpegs["drink"]))
    for mode in ("L", "CMYK", "RGBA", "P", "I;16"):
        buf = io.BytesIO()
        converted = img.convert(mode) if mode != "I;16" else img.convert("L").convert("I;16")
        converted.save(buf, format="PNG" if mode not in ("CMYK",) else "JPEG")
        assert litert.predict_bytes(buf.getvalue())["label"] in LABELS


def test_request_body_rules(sample_jpegs):
    data = sample_jpegs["menu"]
    assert image_bytes_from_body(data, "image/jpeg") == data
    assert image_bytes_from_body(data, "application/octet-stream; x=y") == data
    assert image_bytes_from_body(data, None) == data
    wrapped = json.dumps({"image": base64.b64encode(data).decode()}).encode()
    assert image_bytes_from_body(wrapped, "application/json") == data
    assert image_bytes_from_body({"image": base64.b64encode(data).decode()}, "application/json") == data
    with pytest.raises(UnsupportedContentType) as err:
        image_bytes_from_body(data, "text/plain")
    assert err.value.status == 415
    with pytest.raises(BodyTooLarge) as err:
        image_bytes_from_body(data, "image/jpeg", max_bytes=1000)
    assert err.value.status == 413
    with pytest.raises(BadJsonBody):
        image_bytes_from_body(b"{not json", "application/json")
    with pytest.raises(BadJsonBody):
        image_bytes_from_body(b'{"image": "***"}', "application/json")
    with pytest.raises(BadJsonBody):
        image_bytes_from_body(b'{"picture": "abc"}', "application/json")


def test_cli_help_and_predict(trained_model_dir, sample_jpegs, tmp_path):
    for sub in ("synth", "train", "export", "predict", "bench"):
        out = subprocess.run([sys.executable, "-m", "model", sub, "--help"], cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0 and "--" in out.stdout
    image = tmp_path / "x.jpg"
    image.write_bytes(sample_jpegs["outside"])
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    out = subprocess.run(
        [sys.executable, "-m", "model", "predict", "--model-dir", str(trained_model_dir), "--backend", "litert",
         str(image), str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 1
    assert json.loads(out.stdout.strip())["label"] in LABELS
    assert f"error: {bad}: the body is not an image" in out.stderr
