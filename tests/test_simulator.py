"""Tests of the model-service simulator (aoi_flask.simulator)."""

import base64
import io
import json
import math
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests
from PIL import Image

from aoi_flask.samples import sample_analysis
from aoi_flask.simulator import (
    FAILURE_KINDS,
    SimulatorOptions,
    create_simulator_app,
    serve_in_thread,
)
from aoi_flask.simulator.__main__ import options_from_args, parse_args
from aoi_flask.simulator.analysis import (
    analyse,
    ellipse_axes,
    measure_mask_regions,
    pattern_pitches,
)
from aoi_flask.simulator.filing import CallFiles

DATA = Path(__file__).parent / "data"
CLASS_KEYS = ["1_PI_Particle", "2_PR_Peeling", "3_Copper_Nodule", "4_Env_Particle"]
PALETTE = {
    "1_PI_Particle": (255, 0, 0),
    "2_PR_Peeling": (0, 255, 0),
    "3_Copper_Nodule": (0, 0, 255),
    "4_Env_Particle": (255, 255, 0),
}
REGION_FIELDS = {
    "region_id": int,
    "centroid": dict,
    "bounding_box": dict,
    "area_pixels": int,
    "perimeter": float,
    "major_axis": float,
    "minor_axis": float,
    "circularity": float,
    "aspect_ratio": float,
}
DARK_DOTS = [(40, 40), (200, 60), (60, 200)]
BRIGHT_BLOB = (150, 150)
FAINT_DOT = (220, 220)
STREAK = ((20, 120), (120, 230))


# --- helpers ------------------------------------------------------------------


def synthetic_gray() -> np.ndarray:
    """Grey board with three dark dots, a bright blob, a wide streak and faint dust."""
    noise = np.random.default_rng(7).normal(0, 3, (256, 256))
    image = np.clip(128 + noise, 0, 255).astype(np.uint8)
    for centre in DARK_DOTS:
        cv2.circle(image, centre, 3, 30, -1)
    cv2.circle(image, BRIGHT_BLOB, 6, 230, -1)
    cv2.line(image, *STREAK, 50, 11)
    cv2.circle(image, FAINT_DOT, 3, 75, -1)
    return image


def encode(image: np.ndarray, ext: str = ".png") -> bytes:
    ok, buffer = cv2.imencode(ext, image)
    assert ok
    return buffer.tobytes()


def tiny_png() -> bytes:
    image = np.full((48, 48), 120, np.uint8)
    cv2.circle(image, (24, 24), 3, 20, -1)
    return encode(image)


def post_image(client, data: bytes, name: str = "board.png", field: str = "image"):
    return client.post(
        "/upload", data={field: (io.BytesIO(data), name)}, content_type="multipart/form-data"
    )


def decode_png(text: str) -> Image.Image:
    raw = base64.b64decode(text, validate=True)
    assert raw.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(raw))
    image.load()
    return image


def class_counts(answer: dict) -> dict:
    classes = answer["analysis_results"]["classes"]
    return {key: classes[key]["total_regions"] for key in CLASS_KEYS}


def without_timing(results: dict) -> dict:
    return {key: value for key, value in results.items() if key != "performance"}


def assert_error(response, status: int):
    assert response.status_code == status
    body = response.get_json()
    assert body["success"] is False
    assert isinstance(body["error"], str) and body["error"]
    return body


def assert_native_json(value):
    """Only plain JSON types, finite numbers (what json.dumps made of it)."""
    if isinstance(value, dict):
        for item in value.values():
            assert_native_json(item)
    elif isinstance(value, list):
        for item in value:
            assert_native_json(item)
    elif isinstance(value, float):
        assert math.isfinite(value)
    else:
        assert value is None or isinstance(value, (str, int, bool))


# --- fixtures -----------------------------------------------------------------


@pytest.fixture
def sim_app():
    return create_simulator_app(SimulatorOptions(timeout_seconds=0.05))


@pytest.fixture
def sim_client(sim_app):
    return sim_app.test_client()


@pytest.fixture
def sim_options(sim_app):
    return sim_app.extensions["aoi_simulator"].options


@pytest.fixture(scope="module")
def sim_sample_answer():
    client = create_simulator_app().test_client()
    data = (DATA / "segformer_input.jpeg").read_bytes()
    response = post_image(client, data, "segformer_input.jpeg")
    assert response.status_code == 200
    return response.get_json()


@pytest.fixture(scope="module")
def synthetic_answer():
    client = create_simulator_app().test_client()
    response = post_image(client, encode(synthetic_gray()), "synthetic board.png")
    assert response.status_code == 200
    return response.get_json()


# --- the answer on the real sample ----------------------------------------------


def test_sample_answer_has_contract_fields_and_types(sim_sample_answer):
    answer = sim_sample_answer
    assert answer["success"] is True
    assert answer["filename"] == "segformer_input.jpeg"
    for name in ("overlay_image", "combined_image", "mask_image"):
        assert isinstance(answer[name], str)
    assert isinstance(answer["processing_time"], float)
    assert re.fullmatch(r"\d{8}_\d{6}", answer["timestamp"])
    results = answer["analysis_results"]
    assert results["image_shape"] == {"height": 1792, "width": 1792}
    assert list(results["classes"]) == CLASS_KEYS
    performance = results["performance"]
    assert performance["processing_time_seconds"] == round(answer["processing_time"], 4)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", performance["timestamp"])
    assert_native_json(answer)


def test_sample_regions_and_totals_are_consistent(sim_sample_answer):
    classes = sim_sample_answer["analysis_results"]["classes"]
    assert sim_sample_answer["total_defects"] == sum(c["total_regions"] for c in classes.values())
    assert sim_sample_answer["total_defects"] > 0
    for class_id, key in enumerate(CLASS_KEYS, 1):
        summary = classes[key]
        assert summary["class_id"] == class_id
        assert summary["total_regions"] == len(summary["regions"])
        assert summary["total_area_pixels"] == sum(r["area_pixels"] for r in summary["regions"])
        assert [r["region_id"] for r in summary["regions"]] == list(
            range(1, summary["total_regions"] + 1)
        )
        for region in summary["regions"]:
            for field, kind in REGION_FIELDS.items():
                assert type(region[field]) is kind, (key, field)
            assert set(region["centroid"]) == {"x", "y"}
            assert all(type(v) is float for v in region["centroid"].values())
            assert set(region["bounding_box"]) == {"x", "y", "width", "height"}
            assert all(type(v) is int for v in region["bounding_box"].values())
            assert region["major_axis"] >= region["minor_axis"] > 0


def test_sample_images_decode_with_the_right_sizes(sim_sample_answer):
    overlay = decode_png(sim_sample_answer["overlay_image"])
    mask = decode_png(sim_sample_answer["mask_image"])
    combined = decode_png(sim_sample_answer["combined_image"])
    assert overlay.size == mask.size == (1792, 1792)
    assert combined.size == (2 * 1792, 1792)
    assert overlay.mode == mask.mode == combined.mode == "RGB"


def test_sample_mask_uses_the_palette_and_regions_sit_on_their_colour(sim_sample_answer):
    mask = np.array(decode_png(sim_sample_answer["mask_image"]))
    assert set(np.unique(packed_rgb(mask))) <= {0, *(pack(c) for c in PALETTE.values())}
    for key, summary in sim_sample_answer["analysis_results"]["classes"].items():
        for region in summary["regions"]:
            # Ring- and U-shaped regions have their centroid in the hollow:
            # allow half of the box's short side.
            box = region["bounding_box"]
            allowed = max(3.0, min(box["width"], box["height"]) / 2)
            assert distance_to_colour(mask, region, PALETTE[key]) <= allowed, (key, region)


def pack(colour) -> int:
    red, green, blue = colour
    return red << 16 | green << 8 | blue


def packed_rgb(image: np.ndarray) -> np.ndarray:
    image = image.astype(np.uint32)
    return image[..., 0] << 16 | image[..., 1] << 8 | image[..., 2]


def distance_to_colour(mask: np.ndarray, region: dict, colour) -> float:
    """Distance from the centroid to the nearest mask pixel of the colour in its box."""
    box = region["bounding_box"]
    window = mask[box["y"] : box["y"] + box["height"], box["x"] : box["x"] + box["width"]]
    ys, xs = np.nonzero(np.all(window == colour, axis=-1))
    assert len(xs), "no pixel of the class colour inside the bounding box"
    dx = xs + box["x"] - region["centroid"]["x"]
    dy = ys + box["y"] - region["centroid"]["y"]
    return float(np.sqrt(dx * dx + dy * dy).min())


def test_measurement_reproduces_the_real_service_sample():
    mask = np.array(Image.open(DATA / "sample_mask.png").convert("RGB"))
    reference = sample_analysis()["classes"]
    for key, colour in PALETTE.items():
        measured = measure_mask_regions(cv2.inRange(mask, colour, colour))
        expected = [
            {k: v for k, v in region.items() if k != "region_id"}
            for region in reference[key]["regions"]
        ]
        assert measured == expected, key


def test_single_pixel_region_follows_the_reference_rule():
    mask = np.zeros((20, 30), bool)
    mask[7, 11] = True
    (region,) = measure_mask_regions(mask)
    assert region == {
        "centroid": {"x": 11.0, "y": 7.0},
        "bounding_box": {"x": 11, "y": 7, "width": 1, "height": 1},
        "area_pixels": 0,
        "perimeter": 0.0,
        "major_axis": 1.0,
        "minor_axis": 1.0,
        "circularity": 0.0,
        "aspect_ratio": 1.0,
    }


# --- real analysis on a drawn image ---------------------------------------------


def test_synthetic_board_finds_the_drawn_defects_in_their_classes(synthetic_answer):
    assert synthetic_answer["filename"] == "synthetic_board.png"
    assert class_counts(synthetic_answer) == {
        "1_PI_Particle": 3,
        "2_PR_Peeling": 1,
        "3_Copper_Nodule": 1,
        "4_Env_Particle": 1,
    }
    classes = synthetic_answer["analysis_results"]["classes"]
    assert_points_near(
        centroids(classes["1_PI_Particle"]), sorted(DARK_DOTS, key=lambda p: (p[1], p[0]))
    )
    assert_points_near(centroids(classes["3_Copper_Nodule"]), [BRIGHT_BLOB])
    assert_points_near(centroids(classes["4_Env_Particle"]), [FAINT_DOT])
    (streak,) = classes["2_PR_Peeling"]["regions"]
    assert streak["aspect_ratio"] > 5
    assert streak["major_axis"] > 120


def assert_points_near(actual: list, expected: list, tolerance: float = 0.5) -> None:
    # pytest >= 9.2's approx refuses nested sequences: compare point by point.
    assert len(actual) == len(expected), (actual, expected)
    for point, wanted in zip(actual, expected, strict=True):
        assert point == pytest.approx(wanted, abs=tolerance), (actual, expected)


def centroids(summary: dict) -> list:
    return [(r["centroid"]["x"], r["centroid"]["y"]) for r in summary["regions"]]


def sample_gray() -> np.ndarray:
    return cv2.imread(str(DATA / "segformer_input.jpeg"), cv2.IMREAD_GRAYSCALE)


def real_regions(key: str) -> list[dict]:
    return sample_analysis()["classes"][key]["regions"]


# Where segformer_input.jpeg shows particles, checked by eye on the input and on
# the simulator's overlay rendered full size: (x0, y0, x1, y1) in pixels.
PARTICLE_SITES = {
    "large dark particle on the grid line, second row": (415, 660, 470, 725),
    "cloud of particles below the fourth ring, first row": (1245, 400, 1490, 575),
    "specks inside the fourth ring, first row": (1265, 355, 1300, 390),
    "pair of specks in the fine grid, top": (1030, 0, 1060, 45),
    "group of specks in the fine grid": (1190, 105, 1225, 160),
    "speck inside the second ring, second row": (478, 763, 494, 779),
    "speck beside the third ring, second row": (750, 833, 769, 853),
    "faint speck below it": (802, 859, 822, 879),
    "speck on the third ring, second row": (950, 755, 966, 771),
    "speck left of the fourth ring, second row": (1182, 776, 1198, 792),
    "speck inside the fourth ring, second row": (1243, 794, 1259, 810),
    "speck in the channel, second row": (1460, 676, 1476, 692),
    "particle at the right edge, second row": (1768, 807, 1786, 825),
    "speck inside the last ring, fourth row": (1700, 1498, 1718, 1514),
}


def site_of(point) -> str | None:
    x, y = point
    for name, (x0, y0, x1, y1) in PARTICLE_SITES.items():
        if x0 <= x <= x1 and y0 <= y <= y1:
            return name
    return None


def centre(region) -> tuple:
    return (region.measurements["centroid"]["x"], region.measurements["centroid"]["y"])


def region_centroids(analysis) -> list:
    return [centre(region) for region in analysis.regions]


def test_sample_is_inspected_against_its_repeated_cells_like_the_real_model():
    gray = sample_gray()
    assert pattern_pitches(gray) == (384, 384)
    started = time.perf_counter()
    found = analyse(gray)
    elapsed = time.perf_counter() - started
    assert elapsed < 3, "budget is < 1 s; generous here for a loaded CI machine"
    # The same order of magnitude as the real model's 7 regions, within the
    # cap of 20 (the old background pipeline found 151).
    real_total = sum(c["total_regions"] for c in sample_analysis()["classes"].values())
    assert real_total == 7
    assert 1 <= len(found.regions) <= 20
    assert abs(math.log10(len(found.regions) / real_total)) < 1
    ours = region_centroids(found)
    # Every region sits on a visible particle (nothing on the regular pattern),
    # and every particle site, the isolated specks too, has a region.
    assert [site_of(point) for point in ours if site_of(point) is None] == []
    assert {site_of(point) for point in ours} == set(PARTICLE_SITES)
    # The real model's PI_Particle region 3 is the one of its five that this
    # image shows (see the next test): the speck inside the lower-right ring.
    speck = real_regions("1_PI_Particle")[2]["centroid"]
    assert nearest((speck["x"], speck["y"]), ours) <= 5
    # The large dark particle is one compact region, and a particle, not peeling.
    (blob,) = [r for r in found.regions if nearest((440, 693), [centre(r)]) <= 5]
    assert blob.class_key == "1_PI_Particle"
    # Deterministic: the same image gives the same regions.
    again = analyse(gray)
    assert [r.measurements for r in again.regions] == [r.measurements for r in found.regions]
    assert [r.class_key for r in again.regions] == [r.class_key for r in found.regions]


def test_sample_analysis_regions_are_mostly_not_in_the_sample_input():
    """Why the comparison above can match one PI_Particle region, not most.

    sample_analysis.json and sample_mask.png come with an overlay drawn on a
    different field of view (fine grid on top, large cells below); only region
    3 falls on a defect of segformer_input.jpeg. If the input is replaced by
    the image the model really saw, this fails: then require most regions.
    """
    gray = sample_gray().astype(np.int16)
    local = cv2.medianBlur(sample_gray(), 15).astype(np.int16)
    darkest = []
    for region in real_regions("1_PI_Particle"):
        box = region["bounding_box"]
        rows = slice(box["y"] - 2, box["y"] + box["height"] + 2)
        cols = slice(box["x"] - 2, box["x"] + box["width"] + 2)
        darkest.append(int((gray[rows, cols] - local[rows, cols]).min()))
    visible = [index for index, depth in enumerate(darkest, 1) if depth <= -20]
    assert visible == [3], darkest


def nearest(point, points) -> float:
    return min(math.dist(point, other) for other in points)


def tiled_board(defect: bool) -> np.ndarray:
    cell = np.random.default_rng(3).integers(60, 200, (64, 64), dtype=np.uint8)
    cell = cv2.GaussianBlur(cell, (5, 5), 0)
    cv2.rectangle(cell, (8, 8), (40, 30), 30, 2)
    board = np.tile(cell, (6, 6))
    if defect:
        cv2.circle(board, (3 * 64 + 50, 2 * 64 + 45), 3, 250, -1)
    return board


def test_a_defect_in_one_repeated_cell_is_the_only_region():
    assert pattern_pitches(tiled_board(False)) == (64, 64)
    assert analyse(tiled_board(False)).regions == []
    (region,) = analyse(tiled_board(True)).regions
    assert (
        nearest((3 * 64 + 50, 2 * 64 + 45), [tuple(region.measurements["centroid"].values())]) < 1
    )


def outlined_cells(shifted_cell=None, shift=0) -> np.ndarray:
    """6 x 6 cells of 96 px, each a rectangle and a ring outline; one cell's
    structures may sit ``shift`` px off, as on real dies."""
    board = np.full((6 * 96, 6 * 96), 170, np.uint8)
    for row in range(6):
        for column in range(6):
            offset = shift if (row, column) == shifted_cell else 0
            x, y = column * 96 + offset, row * 96 + offset
            cv2.rectangle(board, (x + 12, y + 12), (x + 70, y + 60), 90, 2)
            cv2.circle(board, (x + 48, y + 78), 8, 90, 2)
    return board


def test_a_small_faint_particle_is_found_and_a_displaced_structure_is_not():
    board = outlined_cells(shifted_cell=(2, 3), shift=6)
    particle = (4 * 96 + 30, 96 + 35)
    cv2.circle(board, particle, 2, 100, -1)
    board = cv2.GaussianBlur(board, (3, 3), 0)
    assert pattern_pitches(board) == (96, 96)
    (region,) = analyse(board).regions
    assert nearest(particle, [centre(region)]) < 1


def test_a_dense_cloud_does_not_take_every_slot_from_an_isolated_particle():
    board = outlined_cells()
    cloud = [(96 + 20 + 9 * i, 96 + 20 + 9 * j) for i in range(6) for j in range(5)]
    for centre in cloud:
        cv2.circle(board, centre, 3, 20, -1)
    isolated = (4 * 96 + 30, 4 * 96 + 35)
    cv2.circle(board, isolated, 2, 100, -1)
    found = analyse(cv2.GaussianBlur(board, (3, 3), 0))
    ours = region_centroids(found)
    assert len(ours) == 20  # the cap; 31 particles are there
    assert nearest(isolated, ours) < 1
    assert sum(nearest(point, cloud) < 1 for point in ours) == 19


def test_plain_boards_have_no_period_and_keep_the_background_pipeline():
    assert pattern_pitches(synthetic_gray()) == (None, None)
    assert pattern_pitches(np.full((64, 80), 90, np.uint8)) == (None, None)
    # Smooth shading correlates strongly at every lag but has no period.
    noise = np.random.default_rng(5).normal(0, 2, (512, 512))
    ramp = np.add.outer(np.linspace(40, 200, 512), np.linspace(0, 30, 512))
    shaded = np.clip(ramp + noise, 0, 255).astype(np.uint8)
    assert pattern_pitches(shaded) == (None, None)
    assert len(analyse(shaded).regions) <= 1


def test_blank_image_has_no_defects_but_all_four_classes(sim_client):
    response = post_image(sim_client, encode(np.full((64, 80), 90, np.uint8)), "blank.bmp")
    answer = response.get_json()
    assert answer["total_defects"] == 0
    assert answer["analysis_results"]["image_shape"] == {"height": 64, "width": 80}
    for key in CLASS_KEYS:
        assert answer["analysis_results"]["classes"][key]["regions"] == []
    assert not np.array(decode_png(answer["mask_image"])).any()


def test_same_input_gives_the_same_answer(synthetic_answer, sim_client):
    again = post_image(sim_client, encode(synthetic_gray()), "synthetic board.png").get_json()
    assert without_timing(again["analysis_results"]) == without_timing(
        synthetic_answer["analysis_results"]
    )
    for name in ("mask_image", "overlay_image", "combined_image"):
        assert again[name] == synthetic_answer[name]


def test_ellipse_of_a_nearly_straight_contour_is_the_same_in_every_thread():
    # OpenCV jitters such points with a per-thread RNG; the simulator must not.
    contour = np.array([[[360, 402]], [[359, 403]], [[359, 409]], [[360, 410]], [[360, 411]]])
    results = [ellipse_axes(contour) for _ in range(3)]

    def in_new_thread():
        results.append(ellipse_axes(contour))

    for _ in range(2):
        worker = threading.Thread(target=in_new_thread)
        worker.start()
        worker.join()
    assert len(set(results)) == 1
    major, minor = results[0]
    assert major >= minor > 0


@pytest.mark.parametrize("ext", [".jpg", ".tiff", ".bmp", "16-bit.png", "colour.png"])
def test_other_formats_and_depths_are_analysed(ext, sim_client, synthetic_answer):
    gray = synthetic_gray()
    if ext == "16-bit.png":
        data = encode(gray.astype(np.uint16) * 257, ".png")
    elif ext == "colour.png":
        data = encode(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), ".png")
    else:
        data = encode(gray, ext)
    answer = post_image(
        sim_client, data, "board" + ext.replace("16-bit", "").replace("colour", "")
    ).get_json()
    assert answer["success"] is True
    counts = class_counts(answer)
    assert counts["1_PI_Particle"] == 3
    assert counts["2_PR_Peeling"] == 1
    assert counts["3_Copper_Nodule"] == 1
    assert decode_png(answer["overlay_image"]).size == (256, 256)


def test_analysis_runs_fast_on_a_small_image():
    gray = synthetic_gray()
    analyse(gray)
    started = time.perf_counter()
    for _ in range(5):
        analyse(gray)
    assert (time.perf_counter() - started) / 5 < 0.1


# --- errors -------------------------------------------------------------------------


def test_upload_without_image_field_is_400(sim_client):
    assert_error(post_image(sim_client, tiny_png(), field="file"), 400)


def test_upload_with_empty_filename_is_400(sim_client):
    assert_error(post_image(sim_client, tiny_png(), name=""), 400)


@pytest.mark.parametrize("name", ["board.gif", "board", "board.png.exe"])
def test_upload_with_bad_extension_is_400(sim_client, name):
    assert_error(post_image(sim_client, tiny_png(), name=name), 400)


def test_extension_is_checked_on_the_name_only(sim_client):
    # The reference accepts any bytes named .png and fails later with 500.
    assert_error(post_image(sim_client, b"definitely not an image", "fake.png"), 500)


LIMIT = 50 * 1024 * 1024  # the real service's MAX_CONTENT_LENGTH, on the whole body


def multipart_body(data: bytes, name: str = "board.png") -> tuple[bytes, str]:
    boundary = "aoi-boundary-7f3a"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), boundary


def post_raw(client, body: bytes, boundary: str):
    return client.post(
        "/upload", data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )


def padded_png(size: int) -> bytes:
    # Bytes after IEND are ignored by decoders: a valid image of any size.
    data = tiny_png()
    return data + b"\0" * (size - len(data))


def test_a_file_of_exactly_50_mb_is_refused_with_500_because_of_multipart_overhead(sim_client):
    body, boundary = multipart_body(padded_png(LIMIT))
    assert len(body) > LIMIT
    refused = assert_error(post_raw(sim_client, body, boundary), 500)
    assert "413" in refused["error"] and "50 MB" in refused["error"]


def test_the_limit_is_on_the_whole_body_not_the_file(sim_client):
    overhead = len(multipart_body(b"")[0])
    body, boundary = multipart_body(padded_png(LIMIT - overhead))
    assert len(body) == LIMIT
    answer = post_raw(sim_client, body, boundary)
    assert answer.status_code == 200 and answer.get_json()["total_defects"] == 1
    body, boundary = multipart_body(padded_png(LIMIT - overhead + 1))
    assert_error(post_raw(sim_client, body, boundary), 500)


def test_a_body_over_50_mb_to_a_batch_is_refused_the_same_way(sim_client):
    body, boundary = multipart_body(padded_png(LIMIT))
    body = body.replace(b'name="image"', b'name="images"')
    response = sim_client.post(
        "/upload/batch", data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    assert_error(response, 500)


def test_without_model_uploads_and_model_info_are_503(sim_client, sim_options):
    sim_options.model_loaded = False
    body = assert_error(post_image(sim_client, tiny_png()), 503)
    assert body["error"] == "模型尚未載入，請檢查系統狀態"
    assert_error(sim_client.get("/api/model/current"), 503)
    files = {"images": [(io.BytesIO(tiny_png()), "a.png")]}
    assert_error(sim_client.post("/upload/batch", data=files), 503)
    health = sim_client.get("/health").get_json()
    assert health["model_loaded"] is False
    assert sim_client.get("/api/status").get_json()["model_loaded"] is False


def test_unknown_path_and_wrong_method_are_json(sim_client):
    assert_error(sim_client.get("/no/such/path"), 404)
    assert_error(sim_client.get("/upload"), 405)


def test_download_never_leaves_the_results_folder(sim_client):
    assert_error(sim_client.get("/download/anything.json"), 404)
    files = {"images": [(io.BytesIO(tiny_png()), "a.png")]}
    summary_path = sim_client.post("/upload/batch", data=files).get_json()["summary_path"]
    assert sim_client.get(f"/download/{summary_path}").status_code == 200
    assert_error(sim_client.get("/download/../../etc/passwd"), 404)
    assert_error(sim_client.get("/download/%2E%2E/%2E%2E/etc/passwd"), 404)


# --- failure injection ----------------------------------------------------------------


def fail_always(options, kind: str) -> None:
    options.failure_rate = 1.0
    options.failure_kinds = [kind]


def test_injected_500(sim_client, sim_options):
    fail_always(sim_options, "500")
    assert_error(post_image(sim_client, tiny_png()), 500)


def test_injected_503(sim_client, sim_options):
    fail_always(sim_options, "503")
    body = assert_error(post_image(sim_client, tiny_png()), 503)
    assert body["error"] == "模型尚未載入，請檢查系統狀態"


def test_injected_timeout_hangs_then_answers(sim_client, sim_options):
    fail_always(sim_options, "timeout")
    started = time.perf_counter()
    response = post_image(sim_client, tiny_png())
    assert time.perf_counter() - started >= 0.05
    assert response.status_code == 200
    assert response.get_json()["success"] is True


def test_injected_malformed_is_200_with_broken_json(sim_client, sim_options):
    fail_always(sim_options, "malformed")
    response = post_image(sim_client, tiny_png())
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.get_data(as_text=True))


def test_injected_truncated_cuts_the_base64_images(sim_client, sim_options):
    good = post_image(sim_client, tiny_png()).get_json()
    fail_always(sim_options, "truncated")
    response = post_image(sim_client, tiny_png())
    assert response.status_code == 200
    damaged = response.get_json()
    assert damaged["success"] is True
    for name in ("overlay_image", "combined_image", "mask_image"):
        assert damaged[name] == good[name][: len(good[name]) // 2]
        with pytest.raises(Exception):  # noqa: B017  (bad base64 or bad PNG)
            decode_png(damaged[name])


def test_injected_success_false(sim_client, sim_options):
    fail_always(sim_options, "success_false")
    assert_error(post_image(sim_client, tiny_png()), 200)


def test_failure_rate_is_random_but_reproducible_with_a_seed(sim_client, sim_options):
    def statuses():
        return [post_image(sim_client, tiny_png()).status_code for _ in range(30)]

    sim_options.update({"failure_rate": 0.5, "failure_kinds": ["500", "503"], "seed": 3})
    first = statuses()
    sim_options.seed = 4
    sim_options.seed = 3
    sim_options.update({"seed": None})
    sim_options.update({"seed": 3})
    second = statuses()
    assert first == second
    assert set(first) == {200, 500, 503}


def test_config_endpoint_reads_and_changes_behaviour(sim_client):
    options = sim_client.get("/_simulator/config").get_json()["options"]
    assert options["failure_rate"] == 0.0
    assert options["failure_kinds"] == list(FAILURE_KINDS)
    response = sim_client.post(
        "/_simulator/config", json={"failure_rate": 1.0, "failure_kinds": ["500"]}
    )
    assert response.get_json()["options"]["failure_rate"] == 1.0
    assert_error(post_image(sim_client, tiny_png()), 500)
    sim_client.post("/_simulator/config", json={"failure_rate": 0, "model_loaded": False})
    assert_error(post_image(sim_client, tiny_png()), 503)


@pytest.mark.parametrize(
    "change",
    [{"failure_rate": 2}, {"failure_kinds": ["fire"]}, {"latency": -1}, {"colour": "red"}],
)
def test_config_endpoint_rejects_bad_values_and_changes_nothing(sim_client, change):
    assert_error(sim_client.post("/_simulator/config", json=change), 400)
    assert_error(sim_client.post("/_simulator/config", data="not json"), 400)
    options = sim_client.get("/_simulator/config").get_json()["options"]
    assert options == SimulatorOptions(timeout_seconds=0.05).to_dict()


def test_options_validate_their_fields():
    with pytest.raises(ValueError):
        SimulatorOptions(failure_rate=1.5)
    with pytest.raises(ValueError):
        SimulatorOptions(failure_kinds=["boom"])
    with pytest.raises(TypeError):
        SimulatorOptions(model_loaded="yes")


def test_latency_is_a_minimum_service_time(sim_client, sim_options):
    sim_options.latency = 0.2
    started = time.perf_counter()
    answer = post_image(sim_client, tiny_png()).get_json()
    assert time.perf_counter() - started >= 0.2
    assert 0.2 <= answer["processing_time"] < 0.5
    performance = answer["analysis_results"]["performance"]
    assert performance["processing_time_seconds"] == round(answer["processing_time"], 4)


# --- batch and information endpoints ------------------------------------------------


def test_batch_answer_shape(sim_client):
    files = {
        "images": [
            (io.BytesIO(encode(synthetic_gray())), "one.png"),
            (io.BytesIO(b"text"), "notes.txt"),
            (io.BytesIO(tiny_png()), "two.png"),
            (io.BytesIO(b"garbage"), "three.jpg"),
        ]
    }
    answer = sim_client.post("/upload/batch", data=files).get_json()
    assert answer["success"] is True
    assert (answer["total_images"], answer["processed"], answer["failed"]) == (4, 2, 2)
    assert re.fullmatch(r"\d{8}_\d{6}", answer["batch_id"])
    assert isinstance(answer["total_processing_time"], float)
    assert answer["summary_path"] and answer["timestamp"]
    results = answer["results"]
    assert [r["file_index"] for r in results] == [0, 1, 2, 3]
    assert [r["success"] for r in results] == [True, False, True, False]
    good, bad = results[0], results[1]
    assert list(good) == [
        "filename",
        "success",
        "file_index",
        "overlay_image",
        "combined_image",
        "mask_image",
        "total_defects",
        "processing_time",
        "analysis_results",
        "output_dir",
    ]
    assert good["filename"] == "one.png" and good["total_defects"] == 6
    assert set(bad) == {"filename", "success", "file_index", "error"}


def test_batch_without_images_is_400(sim_client):
    assert_error(sim_client.post("/upload/batch", data={}), 400)


def test_health_and_status_say_simulator(sim_client):
    health = sim_client.get("/health").get_json()
    assert health["status"] == "ok" and health["simulator"] is True
    assert "simulator" in health["system"]
    assert health["device"] == "cpu" and health["cuda_available"] is False
    assert health["model_loaded"] is True
    status = sim_client.get("/api/status").get_json()
    assert status["simulator"] is True
    assert status["current_model"] == "segformer"
    assert "simulator" in status["current_model_name"]
    assert status["max_file_size_mb"] == 50
    assert set(status["supported_formats"]) == {"png", "jpg", "jpeg", "bmp", "tiff", "tif"}
    assert "SIMULATOR" in sim_client.get("/docs").get_data(as_text=True)


def test_model_current_available_and_switch(sim_client):
    current = sim_client.get("/api/model/current").get_json()
    assert current["success"] is True and current["simulator"] is True
    assert (current["base_size"], current["patch_size"]) == (1792, 512)
    assert "simulator" in current["model_name"] and current["model_path"]
    available = sim_client.get("/api/model/available").get_json()
    assert available["available_models"] == ["segformer", "oneformer"]
    switched = sim_client.post("/api/model/switch", json={"model": "oneformer"})
    assert switched.get_json()["current_model"] == "oneformer"
    assert sim_client.get("/api/model/current").get_json()["current_model"] == "oneformer"
    assert_error(sim_client.post("/api/model/switch", json={"model": "yolo"}), 400)


# --- over real loopback HTTP ---------------------------------------------------------


def test_served_in_a_thread_over_loopback_http():
    handle = serve_in_thread(SimulatorOptions(timeout_seconds=30))
    try:
        assert handle.url == f"http://127.0.0.1:{handle.port}"
        health = requests.get(f"{handle.url}/health", timeout=5).json()
        assert health["simulator"] is True
        files = {"image": ("board.png", encode(synthetic_gray()), "image/png")}
        answer = requests.post(f"{handle.url}/upload", files=files, timeout=10).json()
        assert answer["total_defects"] == 6
        handle.options.model_loaded = False
        assert requests.post(f"{handle.url}/upload", files=files, timeout=10).status_code == 503
        requests.post(f"{handle.url}/_simulator/config", json={"model_loaded": True}, timeout=5)
        assert handle.options.model_loaded is True
        assert requests.get(f"{handle.url}/nowhere", timeout=5).json()["success"] is False
        # A request hanging in a 30 s "timeout" failure must not hold up shutdown.
        handle.options.update({"failure_rate": 1.0, "failure_kinds": ["timeout"]})
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.post(f"{handle.url}/upload", files=files, timeout=0.3)
        started = time.perf_counter()
        handle.shutdown()
        assert time.perf_counter() - started < 2
    finally:
        handle.shutdown()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{handle.url}/health", timeout=2)


def board_of_size(side: int, dots: int) -> bytes:
    """A board whose size and dot count tell its answer apart from the others'."""
    image = np.full((side, side), 128, np.uint8)
    for index in range(dots):
        cv2.circle(image, (20 + 30 * index, side // 2), 3, 30, -1)
    return encode(image)


def post_together(url: str, uploads: list[tuple[str, bytes]]) -> list:
    """POST all uploads at once, early in one wall-clock second."""
    barrier = threading.Barrier(len(uploads))
    answers = [None] * len(uploads)

    def send(index: int) -> None:
        name, data = uploads[index]
        barrier.wait()
        files = {"image": (name, data, "image/png")}
        answers[index] = requests.post(f"{url}/upload", files=files, timeout=30)

    # Start just after a second begins so every call gets the same timestamp.
    time.sleep(1.05 - time.time() % 1.0)
    workers = [threading.Thread(target=send, args=(i,)) for i in range(len(uploads))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return answers


BOARDS = [(96, 1), (128, 2), (160, 3)]


def answer_is_for(answer: dict, side: int, dots: int) -> bool:
    shape = answer["analysis_results"]["image_shape"]
    mask = decode_png(answer["mask_image"])
    return (
        shape == {"height": side, "width": side}
        and answer["total_defects"] == dots
        and mask.size == (side, side)
    )


def test_same_name_in_the_same_second_collides_like_the_real_service(tmp_path):
    options = SimulatorOptions(collision_delay=0.3, work_dir=str(tmp_path))
    with serve_in_thread(options) as handle:
        uploads = [("board.png", board_of_size(*board)) for board in BOARDS]
        responses = post_together(handle.url, uploads)
    assert [r.status_code for r in responses] == [200, 200, 200]
    answers = [r.json() for r in responses]
    assert {a["timestamp"] for a in answers} == {answers[0]["timestamp"]}
    assert all(a["filename"] == "board.png" for a in answers)
    wrong = [not answer_is_for(a, *board) for a, board in zip(answers, BOARDS, strict=True)]
    # Every call read back whatever the last same-named save left on disk.
    assert sum(wrong) >= 2, answers
    # Its files live (and are removed) under the real service's layout.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results", "uploads"]
    assert not list((tmp_path / "results").rglob("*.png"))


@pytest.mark.parametrize(
    ("collide", "names"),
    [(True, ["a.png", "b.png", "c.png"]), (False, ["board.png"] * 3)],
    ids=["distinct-names", "unique-names-option"],
)
def test_distinct_names_or_the_unique_names_option_give_every_call_its_own_answer(collide, names):
    options = SimulatorOptions(collision_delay=0.3, collide=collide)
    with serve_in_thread(options) as handle:
        uploads = [(name, board_of_size(*b)) for name, b in zip(names, BOARDS, strict=True)]
        responses = post_together(handle.url, uploads)
    answers = [r.json() for r in responses]
    assert [a["filename"] for a in answers] == names
    assert all(answer_is_for(a, *b) for a, b in zip(answers, BOARDS, strict=True)), answers


def test_files_are_saved_under_second_and_uploaded_name_then_removed(tmp_path, monkeypatch):
    seen = []
    original = CallFiles.read_input

    def spy(self):
        seen.append(sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.*")))
        return original(self)

    monkeypatch.setattr(CallFiles, "read_input", spy)
    client = create_simulator_app(SimulatorOptions(work_dir=str(tmp_path))).test_client()
    answer = post_image(client, tiny_png(), "../My Board.png").get_json()
    stamp = answer["timestamp"]
    assert answer["filename"] == "My_Board.png"
    assert seen == [[f"uploads/{stamp[:8]}/{stamp}_My_Board.png"]]
    assert not list(tmp_path.rglob("*.png"))


def test_thread_handle_is_a_context_manager_with_live_options():
    with serve_in_thread() as handle:
        handle.options = SimulatorOptions(failure_rate=1.0, failure_kinds=["500"])
        files = {"image": ("tiny.png", tiny_png(), "image/png")}
        assert requests.post(f"{handle.url}/upload", files=files, timeout=5).status_code == 500
        config = requests.get(f"{handle.url}/_simulator/config", timeout=5).json()
        assert config["options"]["failure_kinds"] == ["500"]


def test_command_line_flags_become_options():
    flags = "--port 0 --latency 0.5 --failure-rate 0.25 --failure-kinds 500,timeout"
    args = parse_args([*flags.split(), "--timeout-seconds", "2", "--no-model", "--seed", "9"])
    assert args.host == "127.0.0.1"
    assert options_from_args(args) == SimulatorOptions(
        latency=0.5,
        failure_rate=0.25,
        failure_kinds=["500", "timeout"],
        timeout_seconds=2.0,
        model_loaded=False,
        seed=9,
    )
    assert options_from_args(args).collide is True
    args = parse_args(["--unique-names", "--collision-delay", "0.2", "--work-dir", "/tmp/x"])
    options = options_from_args(args)
    assert (options.collide, options.collision_delay, options.work_dir) == (False, 0.2, "/tmp/x")


def test_command_line_serves_with_waitress():
    process = subprocess.Popen(
        [sys.executable, "-m", "aoi_flask.simulator", "--port", "0", "--no-model"],
        cwd=Path(__file__).parents[1],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        health = requests.get(f"{url}/health", timeout=5).json()
        assert health["simulator"] is True and health["model_loaded"] is False
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_calls_endpoint_counts_concurrent_model_calls():
    # Three calls with one name in one second collide, as in the real service.
    sim = create_simulator_app(SimulatorOptions(latency=0.3, collide=False))
    image = tiny_png()

    def call(_):
        return post_image(sim.test_client(), image).status_code

    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(call, range(3))) == [200, 200, 200]
    client = sim.test_client()
    assert client.get("/_simulator/calls").get_json()["calls"] == {
        "active": 0,
        "max_active": 3,
        "total": 3,
    }
    spans = client.get("/_simulator/calls?timeline=true").get_json()["calls"]["timeline"]
    assert len(spans) == 3
    assert all(end - start >= 0.25 for start, end in spans)  # when each call ran
    assert max(start for start, _ in spans) < min(end for _, end in spans)  # all at once
    assert client.delete("/_simulator/calls").get_json()["calls"]["total"] == 0
    assert client.get("/_simulator/calls?timeline=true").get_json()["calls"]["timeline"] == []
    post_image(client, image)
    assert client.get("/_simulator/calls").get_json()["calls"] == {
        "active": 0,
        "max_active": 1,
        "total": 1,
    }
