"""Classical defect finding and measurement for the simulator (no weights).

Periodic patterns (most AOI images: repeated dies or cells) are inspected the
way AOI tools do it, by comparing each pixel with the same place one and two
pattern pitches away (see ``periodic_analysis``):

a. Pitch: the strongest autocorrelation peak along each axis (on a 4x
   downscaled copy), refined to the pixel on the full image.
b. Reference: per axis, the median of the four copies shifted by -2, -1, +1
   and +2 pitches; a defect is in one copy at most, so the median is clean.
c. Difference: how far each pixel lies outside the 5x5 min..max of the
   reference (tolerates a pixel or two of misregistration), taking the
   smaller of the two axes so a cell that only repeats along one axis is
   not flagged.
d. Threshold: strong is the larger of a fixed floor, the grey-level noise
   threshold and PERIODIC_NOISE_SIGMAS robust sigmas (MAD) of the signed
   difference from the reference (which also holds the die-to-die
   variation); weak is half of it.
e. Real cells are not exact copies: structures sit a few pixels apart from
   cell to cell and some cells have layout variants. Those differences are
   thin (edges, outlines), so what is kept is what looks like a particle:
   - spots: the difference minus its openings with 21 px line segments in
     twelve orientations (a shifted straight edge fits a segment and goes);
     a seed must also differ from the reference's 15x15 min..max, so an
     edge displaced by up to 7 px is not a seed either;
   - blobs: weak pixels that hold a 9 px disc (large particles, whose
     inside a line segment would fit);
   - a candidate (8-connected, weak) needs a strong seed and a 3x3 core:
     one- and two-pixel-wide outlines of curved structures drop out.
f. At most MAX_PERIODIC_REGIONS candidates are reported, ranked by summed
   difference (contrast x area), but round-robin over clusters (particles
   less than PERIODIC_CLUSTER_LINK px apart): every cluster's strongest
   particle comes before any cluster's second, so one dense cloud of
   particles cannot hide an isolated defect elsewhere.

Images without a clear period (plain boards, small crops) use the pipeline
below:

1. Background: a coarse median filter (computed on a 4x downscaled copy for
   speed) gives the local "expected" grey level and the polarity of a defect.
2. Small defects: the residual of grey-level closings (dark) and openings
   (bright) with short line segments in twelve orientations, keeping the
   smallest residual over all orientations.  A straight structure longer
   than the segment survives at least one orientation and is therefore
   treated as circuit pattern; a spot shorter than the segment in every
   direction does not and is reported.
3. Large defects: pixels far from the background level, morphologically
   opened with a disc so that thin pattern lines and rings drop out while
   filled blobs and wide bands stay.
4. Both masks are joined with hysteresis (weak pixels count only when they
   touch a strong one), closed with a 3x3 square, split into 8-connected
   components and components under ``MIN_REGION_PIXELS`` are dropped.

Each component is then measured the way the real service does and given one
of the four classes by ``classify_region`` (see its docstring).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

CLASS_NAMES = ("PI_Particle", "PR_Peeling", "Copper_Nodule", "Env_Particle")
CLASS_KEYS = tuple(f"{index}_{name}" for index, name in enumerate(CLASS_NAMES, 1))

LINE_LENGTH = 21
LINE_ANGLES = tuple(range(0, 180, 180 // 12))
BACKGROUND_SCALE = 4
BACKGROUND_KERNEL = 25
STRONG_THRESHOLD_FLOOR = 40.0
WEAK_THRESHOLD_FLOOR = 20.0
NOISE_SIGMAS = 6.0
LARGE_DEFECT_FLOOR = 50.0
LARGE_DEFECT_DISC = 9
MIN_REGION_PIXELS = 3

PEELING_MIN_AREA = 400
PEELING_MAX_CIRCULARITY = 0.5  # a large but compact blob is a particle
PEELING_MIN_ASPECT = 3.0
PEELING_MIN_LENGTH = 20.0
STRONG_CONTRAST_FACTOR = 2.0

PITCH_SCALE = 4
PITCH_MIN_LAG = 8  # in downscaled pixels: 32 px on the image
PITCH_MIN_CORRELATION = 0.3
PITCH_MIN_PROMINENCE = 0.3
PITCH_REFINE_SPAN = PITCH_SCALE
MIN_PERIODS = 3  # the image must hold this many pitches along an axis
REGISTRATION_TOLERANCE = 5  # px window of the reference's min..max
DISPLACED_EDGE_TOLERANCE = 15  # px window a spot's seed must also lie outside
PERIODIC_THRESHOLD_FLOOR = 50.0
PERIODIC_NOISE_SIGMAS = 8.0
BLOB_DISC = 9
PERIODIC_CLUSTER_LINK = 31  # px: particles closer than this form one cluster
MAX_PERIODIC_REGIONS = 20


@dataclass(frozen=True)
class Thresholds:
    strong: float
    weak: float
    large: float


@dataclass
class Region:
    """One defect: its measurements, class and where its pixels are."""

    class_index: int
    label: int
    contour: np.ndarray
    measurements: dict

    @property
    def class_key(self) -> str:
        return CLASS_KEYS[self.class_index]


@dataclass
class Analysis:
    """Everything the renderer and the JSON answer need."""

    height: int
    width: int
    labels: np.ndarray
    regions: list[Region]

    def class_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(CLASS_KEYS, 0)
        for region in self.regions:
            counts[region.class_key] += 1
        return counts

    def label_classes(self) -> np.ndarray:
        """Lookup table label -> class index + 1 (0 = background)."""
        table = np.zeros(int(self.labels.max()) + 1, np.uint8)
        for region in self.regions:
            table[region.label] = region.class_index + 1
        return table


def analyse(gray: np.ndarray) -> Analysis:
    """Find, measure and classify the defects of an 8-bit greyscale image."""
    pitches = pattern_pitches(gray)
    if any(pitches):
        return periodic_analysis(gray, pitches)
    return background_analysis(gray)


def background_analysis(gray: np.ndarray) -> Analysis:
    """Defects as departures from a smooth background (no repeated pattern)."""
    background = estimate_background(gray)
    thresholds = choose_thresholds(gray)
    strong, weak = defect_masks(gray, background, thresholds)
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(
        weak, connectivity=8, ltype=cv2.CV_32S
    )
    regions = [
        build_region(label, labels, stats[label], centroids[label], gray, background, thresholds)
        for label in kept_labels(labels, count, strong, stats)
    ]
    height, width = gray.shape
    return Analysis(height=height, width=width, labels=labels, regions=regions)


# --- periodic patterns ---------------------------------------------------------


def pattern_pitches(gray: np.ndarray) -> tuple[int | None, int | None]:
    """The pattern's repeat in pixels along x and y (None: no clear period)."""
    height, width = gray.shape
    small_size = (max(1, width // PITCH_SCALE), max(1, height // PITCH_SCALE))
    small = cv2.resize(gray, small_size, interpolation=cv2.INTER_AREA).astype(np.float32)
    small -= small.mean()
    energy = float((small * small).sum())
    if energy <= 0:
        return None, None
    # Zero padding to twice the size makes the FFT correlation linear, not circular.
    padded = (2 * small.shape[0], 2 * small.shape[1])
    spectrum = np.fft.rfft2(small, s=padded)
    correlation = np.fft.irfft2(spectrum * np.conj(spectrum), s=padded) / energy
    lag_x = best_lag(correlation[0, : small.shape[1] // MIN_PERIODS + 1])
    lag_y = best_lag(correlation[: small.shape[0] // MIN_PERIODS + 1, 0])
    return (
        None if lag_x is None else refine_pitch(gray, 1, lag_x * PITCH_SCALE),
        None if lag_y is None else refine_pitch(gray, 0, lag_y * PITCH_SCALE),
    )


def best_lag(correlation: np.ndarray) -> int | None:
    """The lag of the highest local maximum past PITCH_MIN_LAG, if strong enough."""
    inner = correlation[PITCH_MIN_LAG:-1]
    if inner.size == 0:
        return None
    before = correlation[PITCH_MIN_LAG - 1 : -2]
    after = correlation[PITCH_MIN_LAG + 1 :]
    peaks = np.flatnonzero((inner > before) & (inner >= after))
    if peaks.size == 0:
        return None
    best = peaks[np.argmax(inner[peaks])]
    lag = int(best) + PITCH_MIN_LAG
    # A real period dips before it peaks again; smooth shading only decays,
    # with ripples that must not pass for a pitch.
    dip = float(correlation[:lag].min())
    if inner[best] < PITCH_MIN_CORRELATION or inner[best] - dip < PITCH_MIN_PROMINENCE:
        return None
    return lag


def refine_pitch(gray: np.ndarray, axis: int, guess: int) -> int | None:
    """The shift near ``guess`` that best maps the image onto itself (None: too long)."""
    # Comparing every 4th line across the shift is plenty and keeps it cheap.
    pixels = gray.astype(np.int16)
    if axis == 0:
        pixels = pixels.T
    pixels = pixels[::4]
    scores = [
        (float(np.abs(pixels[:, shift:] - pixels[:, :-shift]).mean()), shift)
        for shift in range(max(1, guess - PITCH_REFINE_SPAN), guess + PITCH_REFINE_SPAN + 1)
        if shift * MIN_PERIODS <= pixels.shape[1]
    ]
    return min(scores)[1] if scores else None


def shifted_copy(gray: np.ndarray, shift: int, axis: int) -> np.ndarray:
    """gray moved by ``shift`` along axis; where that falls off the image, the
    copy shifted the other way stands in (mirroring keeps one pitch's phase)."""
    size = gray.shape[axis]
    source = np.arange(size) + shift
    outside = (source < 0) | (source >= size)
    source[outside] -= 2 * shift
    source = np.clip(source, 0, size - 1)
    return np.take(gray, source, axis=axis)


def axis_reference(gray: np.ndarray, pitch: int, axis: int) -> np.ndarray:
    """Median of the copies -2, -1, +1, +2 pitches away along one axis."""
    far_back, back, ahead, far_ahead = (shifted_copy(gray, k * pitch, axis) for k in (-2, -1, 1, 2))
    # Of min/max within each pair, the larger minimum and the smaller maximum
    # are the middle two of the four: a sorting network, much faster than sort.
    low = cv2.max(cv2.min(far_back, back), cv2.min(ahead, far_ahead))
    high = cv2.min(cv2.max(far_back, back), cv2.max(ahead, far_ahead))
    return ((low.astype(np.uint16) + high) // 2).astype(np.uint8)


def outside_reference(gray: np.ndarray, reference: np.ndarray, tolerance: int) -> np.ndarray:
    window = np.ones((tolerance, tolerance), np.uint8)
    above = cv2.subtract(gray, cv2.dilate(reference, window))
    below = cv2.subtract(cv2.erode(reference, window), gray)
    return np.maximum(above, below)


@dataclass
class PeriodicDifference:
    reference: np.ndarray  # per pixel, the reference of the axis that fits best
    difference: np.ndarray  # outside the REGISTRATION_TOLERANCE window
    displaced: np.ndarray  # outside the DISPLACED_EDGE_TOLERANCE window
    sigma: float  # robust sigma of gray - reference


def periodic_difference(gray: np.ndarray, pitches) -> PeriodicDifference:
    best = None
    for axis, pitch in ((1, pitches[0]), (0, pitches[1])):
        if pitch is None:
            continue
        reference = axis_reference(gray, pitch, axis)
        found = PeriodicDifference(
            reference=reference,
            difference=outside_reference(gray, reference, REGISTRATION_TOLERANCE),
            displaced=outside_reference(gray, reference, DISPLACED_EDGE_TOLERANCE),
            sigma=residual_sigma(gray, reference),
        )
        if best is None:
            best = found
            continue
        # Per pixel, the axis along which the pattern repeats best wins.
        closer = found.difference < best.difference
        best = PeriodicDifference(
            reference=np.where(closer, found.reference, best.reference),
            difference=np.minimum(found.difference, best.difference),
            displaced=np.minimum(found.displaced, best.displaced),
            sigma=max(found.sigma, best.sigma),
        )
    return best


def residual_sigma(gray: np.ndarray, reference: np.ndarray) -> float:
    # Every 4th row is plenty for a median and keeps it cheap.
    residual = gray[::4].astype(np.int16) - reference[::4].astype(np.int16)
    centre = np.median(residual)
    return 1.4826 * float(np.median(np.abs(residual - centre)))


def periodic_analysis(gray: np.ndarray, pitches) -> Analysis:
    found = periodic_difference(gray, pitches)
    thresholds = choose_thresholds(gray)
    strong = max(PERIODIC_THRESHOLD_FLOOR, thresholds.strong, PERIODIC_NOISE_SIGMAS * found.sigma)
    mask = particle_mask(found, strong, strong / 2)
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(
        mask, connectivity=8, ltype=cv2.CV_32S
    )
    regions = [
        build_region(
            label, labels, stats[label], centroids[label], gray, found.reference, thresholds
        )
        for label in reported_labels(labels, count, stats, found.difference)
    ]
    height, width = gray.shape
    return Analysis(height=height, width=width, labels=labels, regions=regions)


def particle_mask(found: PeriodicDifference, strong: float, weak: float) -> np.ndarray:
    """Spots and blobs that differ from the repeated cells (uint8 0/1), not
    the thin lines that displaced edges and layout variants leave."""
    difference = found.difference
    along_lines = None
    for kernel in line_kernels():
        opened = cv2.morphologyEx(difference, cv2.MORPH_OPEN, kernel)
        along_lines = opened if along_lines is None else cv2.max(along_lines, opened)
    spots = cv2.subtract(difference, along_lines)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (BLOB_DISC, BLOB_DISC))
    blobs = cv2.morphologyEx((difference >= weak).astype(np.uint8), cv2.MORPH_OPEN, disc) > 0
    seeds = ((spots >= strong) & (found.displaced >= weak)) | (blobs & (difference >= strong))
    candidates = ((spots >= weak) | blobs).astype(np.uint8)
    cores = cv2.erode(candidates, np.ones((3, 3), np.uint8)) > 0
    count, labels = cv2.connectedComponents(candidates, connectivity=8, ltype=cv2.CV_32S)
    kept = (np.bincount(labels[seeds], minlength=count) > 0) & (
        np.bincount(labels[cores], minlength=count) > 0
    )
    kept[0] = False
    return kept[labels].astype(np.uint8)


def reported_labels(labels, count, stats, difference) -> list[int]:
    """Up to MAX_PERIODIC_REGIONS labels, in label order: by summed difference,
    round-robin over clusters of nearby particles."""
    candidates = [
        label for label in range(1, count) if stats[label, cv2.CC_STAT_AREA] >= MIN_REGION_PIXELS
    ]
    inside = labels > 0
    strength = np.bincount(labels[inside], weights=difference[inside], minlength=count)
    cluster = cluster_of_labels(labels, count)
    # Ties go to the lower label, so the choice is deterministic.
    candidates.sort(key=lambda label: (-strength[label], label))
    # A label's turn is how many stronger labels its cluster has.
    taken = dict.fromkeys(cluster[candidates].tolist(), 0)
    turn = {}
    for label in candidates:
        turn[label] = taken[cluster[label]]
        taken[cluster[label]] += 1
    candidates.sort(key=lambda label: turn[label])  # stable: by strength within a turn
    return sorted(candidates[:MAX_PERIODIC_REGIONS])


def cluster_of_labels(labels: np.ndarray, count: int) -> np.ndarray:
    """label -> number of its cluster (labels whose pixels lie closer than
    PERIODIC_CLUSTER_LINK px share one)."""
    disc = cv2.getStructuringElement(
        cv2.MORPH_ELLIPSE, (PERIODIC_CLUSTER_LINK, PERIODIC_CLUSTER_LINK)
    )
    grown = cv2.dilate((labels > 0).astype(np.uint8), disc)
    _, clusters = cv2.connectedComponents(grown, connectivity=8, ltype=cv2.CV_32S)
    cluster = np.zeros(count, np.int32)
    inside = labels > 0
    cluster[labels[inside]] = clusters[inside]
    return cluster


# --- no repeated pattern --------------------------------------------------------


def estimate_background(gray: np.ndarray) -> np.ndarray:
    # A median ignores small defects and keeps pattern steps; doing it on a
    # downscaled copy makes a large effective window cost almost nothing.
    height, width = gray.shape
    small_size = (max(1, width // BACKGROUND_SCALE), max(1, height // BACKGROUND_SCALE))
    small = cv2.resize(gray, small_size, interpolation=cv2.INTER_AREA)
    kernel = min(BACKGROUND_KERNEL, odd_at_most(min(small.shape)))
    if kernel >= 3:
        small = cv2.medianBlur(small, kernel)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def odd_at_most(value: int) -> int:
    return value if value % 2 else value - 1


def choose_thresholds(gray: np.ndarray) -> Thresholds:
    # Noisy images raise the bar so grain is not reported; clean images fall
    # back to fixed floors.
    sigma = robust_noise_sigma(gray)
    strong = max(STRONG_THRESHOLD_FLOOR, NOISE_SIGMAS * sigma)
    return Thresholds(
        strong=strong,
        weak=max(WEAK_THRESHOLD_FLOOR, strong / 2),
        large=max(LARGE_DEFECT_FLOOR, NOISE_SIGMAS * sigma),
    )


def robust_noise_sigma(gray: np.ndarray) -> float:
    # A central crop is plenty for a noise estimate and keeps it cheap.
    height, width = gray.shape
    top, left = max(0, height // 2 - 256), max(0, width // 2 - 256)
    gray = gray[top : top + 512, left : left + 512]
    if min(gray.shape) < 3:
        return 0.0
    detail = gray.astype(np.int16) - cv2.medianBlur(gray, 3).astype(np.int16)
    return 1.4826 * float(np.median(np.abs(detail)))


def small_defect_residuals(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dark and bright residuals of oriented line closings/openings."""
    # Padding first lets pattern lines that run off the image edge continue,
    # so they still fit a segment and are not mistaken for short defects.
    pad = LINE_LENGTH
    padded = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    closed_min = None
    opened_max = None
    for kernel in line_kernels():
        closed = cv2.morphologyEx(padded, cv2.MORPH_CLOSE, kernel)
        opened = cv2.morphologyEx(padded, cv2.MORPH_OPEN, kernel)
        closed_min = closed if closed_min is None else np.minimum(closed_min, closed)
        opened_max = opened if opened_max is None else np.maximum(opened_max, opened)
    inner = (slice(pad, -pad), slice(pad, -pad))
    return cv2.subtract(closed_min[inner], gray), cv2.subtract(gray, opened_max[inner])


_LINE_KERNELS: list[np.ndarray] = []


def line_kernels() -> list[np.ndarray]:
    if not _LINE_KERNELS:
        _LINE_KERNELS.extend(line_kernel(LINE_LENGTH, angle) for angle in LINE_ANGLES)
    return _LINE_KERNELS


def line_kernel(length: int, angle_degrees: float) -> np.ndarray:
    kernel = np.zeros((length, length), np.uint8)
    centre = length // 2
    dx = math.cos(math.radians(angle_degrees)) * centre
    dy = math.sin(math.radians(angle_degrees)) * centre
    start = (round(centre - dx), round(centre - dy))
    end = (round(centre + dx), round(centre + dy))
    cv2.line(kernel, start, end, 1, 1)
    return kernel


def defect_masks(gray, background, thresholds: Thresholds):
    """Strong (seed) and weak (extent) masks as uint8 0/1 images."""
    dark, bright = small_defect_residuals(gray)
    residual = np.maximum(dark, bright)
    large = large_defect_mask(cv2.absdiff(gray, background), thresholds.large)
    strong = (residual >= thresholds.strong).astype(np.uint8) | large
    weak = (residual >= thresholds.weak).astype(np.uint8) | large
    # Closing joins the fragments of one ragged defect into one region.
    weak = cv2.morphologyEx(weak, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    return strong, weak


def large_defect_mask(deviation: np.ndarray, threshold: float) -> np.ndarray:
    far = (deviation >= threshold).astype(np.uint8)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (LARGE_DEFECT_DISC, LARGE_DEFECT_DISC))
    return cv2.morphologyEx(far, cv2.MORPH_OPEN, disc)


def kept_labels(labels, count, strong, stats) -> list[int]:
    """Hysteresis and noise removal: labels with a strong pixel and enough size."""
    seeded = np.bincount(labels[strong > 0], minlength=count) > 0
    big_enough = stats[:, cv2.CC_STAT_AREA] >= MIN_REGION_PIXELS
    return [int(label) for label in np.flatnonzero(seeded & big_enough) if label != 0]


def build_region(label, labels, stats, centroid, gray, background, thresholds) -> Region:
    x, y, width, height = (int(v) for v in stats[:4])
    box = (slice(y, y + height), slice(x, x + width))
    window = labels[box] == label
    contour = outer_contour(window, x, y)
    measurements = measure_contour(contour, float(centroid[0]), float(centroid[1]))
    contrast = gray[box][window].astype(np.int16) - background[box][window].astype(np.int16)
    class_index = classify_region(measurements, contrast, thresholds)
    return Region(class_index=class_index, label=label, contour=contour, measurements=measurements)


def outer_contour(window: np.ndarray, offset_x: int, offset_y: int) -> np.ndarray:
    # A one-pixel zero border keeps findContours from touching the edge.
    height, width = window.shape
    padded = np.zeros((height + 2, width + 2), np.uint8)
    padded[1:-1, 1:-1] = window
    contours, _ = cv2.findContours(
        padded,
        cv2.RETR_EXTERNAL,
        cv2.CHAIN_APPROX_SIMPLE,
        offset=(offset_x - 1, offset_y - 1),
    )
    if len(contours) == 1:
        return contours[0]
    return max(contours, key=lambda c: (cv2.contourArea(c), len(c)))


def measure_mask_regions(mask: np.ndarray) -> list[dict]:
    """Measure every 8-connected region of a binary mask, in label order.

    The same measuring code as ``analyse``; handy for checking it against
    the real service's sample mask and for tools.
    """
    binary = (np.asarray(mask) > 0).astype(np.uint8)
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(
        binary, connectivity=8, ltype=cv2.CV_32S
    )
    measured = []
    for label in range(1, count):
        x, y, width, height = (int(v) for v in stats[label, :4])
        window = labels[y : y + height, x : x + width] == label
        contour = outer_contour(window, x, y)
        centroid_x, centroid_y = (float(v) for v in centroids[label])
        measured.append(measure_contour(contour, centroid_x, centroid_y))
    return measured


def measure_contour(contour: np.ndarray, centroid_x: float, centroid_y: float) -> dict:
    """Region fields exactly as the reference service computes them."""
    area = float(cv2.contourArea(contour))
    perimeter = float(cv2.arcLength(contour, True))
    box_x, box_y, box_w, box_h = cv2.boundingRect(contour)
    major, minor = ellipse_axes(contour)
    # perimeter * perimeter (not **2) reproduces the service to the last bit.
    circularity = 4 * math.pi * area / (perimeter * perimeter) if perimeter > 0 else 0.0
    return {
        "centroid": {"x": centroid_x, "y": centroid_y},
        "bounding_box": {
            "x": int(box_x),
            "y": int(box_y),
            "width": int(box_w),
            "height": int(box_h),
        },
        "area_pixels": int(area),
        "perimeter": perimeter,
        "major_axis": major,
        "minor_axis": minor,
        "circularity": circularity,
        "aspect_ratio": major / minor,
    }


def ellipse_axes(contour: np.ndarray) -> tuple[float, float]:
    if len(contour) < 5:
        return 1.0, 1.0
    # fitEllipse jitters nearly collinear points with OpenCV's per-thread
    # RNG; restarting it from its default state (seed 0 -> 0xffffffff) makes
    # the axes depend on the contour alone, in any thread.
    cv2.setRNGSeed(0)
    (_, _), (first, second), _ = cv2.fitEllipse(contour)
    major, minor = float(max(first, second)), float(min(first, second))
    if math.isfinite(major) and math.isfinite(minor) and minor > 0:
        return major, minor
    # Collinear points give a degenerate ellipse; the rotated box is the
    # closest finite stand-in.
    (_, _), (first, second), _ = cv2.minAreaRect(contour)
    return max(first, second, 1.0), max(min(first, second), 1.0)


def classify_region(measurements: dict, contrast: np.ndarray, thresholds: Thresholds) -> int:
    """Pick a class index (0..3) from shape and grey level.

    - PR_Peeling: large and ragged (contour area >= PEELING_MIN_AREA with
      circularity < PEELING_MAX_CIRCULARITY) or elongated (aspect >=
      PEELING_MIN_ASPECT with major axis >= PEELING_MIN_LENGTH).
    - Copper_Nodule: otherwise, brighter than the background on average.
    - PI_Particle: otherwise dark with a strong core (peak darkness at least
      STRONG_CONTRAST_FACTOR x the strong threshold).
    - Env_Particle: the rest, i.e. faint dark spots such as out-of-focus
      dust lying on the surface.
    """
    if is_peeling(measurements):
        return 1
    if float(contrast.mean()) > 0:
        return 2
    if -float(contrast.min()) >= STRONG_CONTRAST_FACTOR * thresholds.strong:
        return 0
    return 3


def is_peeling(measurements: dict) -> bool:
    if (
        measurements["area_pixels"] >= PEELING_MIN_AREA
        and measurements["circularity"] < PEELING_MAX_CIRCULARITY
    ):
        return True
    return (
        measurements["aspect_ratio"] >= PEELING_MIN_ASPECT
        and measurements["major_axis"] >= PEELING_MIN_LENGTH
    )
