"""Client for the external SegFormer model service (SEGFORMER_SERVICE.md, SPEC §4).

Every answer is validated completely before anything is stored, so a model
that answers garbage can never leave a half-stored result behind.
"""

import contextlib
import io
import json
import logging
import math
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import msgspec
import pybase64
import requests
from PIL import Image
from werkzeug.utils import secure_filename

from ..errors import ApiError
from .breaker import CircuitBreaker
from .imaging import png_size

log = logging.getLogger(__name__)

RETRY_STATUSES = {502, 503, 504}
CLASS_KEY = re.compile(r"^(\d+)_(\w+)$")
REGION_FLOATS = ("perimeter", "major_axis", "minor_axis", "circularity", "aspect_ratio")
RESULT_IMAGES = {"combined": "combined_image", "mask": "mask_image", "overlay": "overlay_image"}
IMAGE_KEYS = frozenset(RESULT_IMAGES.values())
# An answer's top-level fields, each left as its JSON text (a view, not a copy).
ANSWER_FIELDS = msgspec.json.Decoder(dict[str, msgspec.Raw])
QUOTE = ord('"')
# Inflating the three PNGs to check their size is most of an answer's cost; zlib-ng
# releases the GIL, so the three run side by side (one upload's latency, not its CPU).
PNG_CHECKS = ThreadPoolExecutor(max(2, os.cpu_count() or 2), thread_name_prefix="aoi-png")


class ModelServiceError(ApiError):
    status = 502
    code = "MODEL_ERROR"


class ModelUnavailable(ModelServiceError):
    status = 503
    code = "MODEL_UNAVAILABLE"


class ModelNotLoaded(ModelServiceError):
    status = 503
    code = "MODEL_NOT_LOADED"


class ModelTimeout(ModelServiceError):
    status = 504
    code = "MODEL_TIMEOUT"


class ModelBadResponse(ModelServiceError):
    status = 502
    code = "MODEL_BAD_RESPONSE"


@dataclass
class Reply:
    """The model service's answer as read off the wire: its status and parsed JSON."""

    status_code: int
    body: object  # the parsed JSON, or None when the body is not JSON


@dataclass
class ModelAnswer:
    """A validated answer: decoded PNGs, the analysis dict, and its timing."""

    analysis: dict
    images: dict  # combined / mask / overlay -> PNG bytes
    processing_time: float
    total_defects: int
    width: int
    height: int
    elapsed: float  # wall time of the HTTP exchange, seconds
    filename: object = None  # the name the service says it analysed
    checks: dict = field(default_factory=dict, repr=False)  # PNG checks still running
    staged: object = None  # what analyse()'s `while_checking` returned

    def wait_checked(self):
        """Wait for the PNG checks; the first broken image (answer order) raises."""
        checks, self.checks = self.checks, {}
        wait_for_checks(checks)


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def all_ints(mapping, keys):
    return isinstance(mapping, dict) and all(is_int(mapping.get(key)) for key in keys)


def all_numbers(mapping, keys):
    return isinstance(mapping, dict) and all(is_number(mapping.get(key)) for key in keys)


class SegformerClient:
    def __init__(
        self,
        base_url,
        *,
        connect_timeout=3.0,
        read_timeout=120.0,
        retries=2,
        backoff=0.5,
        info_ttl=30.0,
        health_timeout=2.0,
        retry_after=30,
        breaker_threshold=3,
        breaker_cooldown=15.0,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        self.retries = retries
        self.backoff = backoff
        self.info_ttl = info_ttl
        self.health_timeout = health_timeout
        self.retry_after = retry_after
        self._local = threading.local()
        self._info = None
        self._info_time = 0.0
        self._info_lock = threading.Lock()
        self.breaker = CircuitBreaker(
            breaker_threshold,
            breaker_cooldown,
            open_error=self._breaker_open_error,
            failures=(ModelUnavailable, ModelTimeout),
        )

    @property
    def session(self):
        """One Session per thread: connection reuse without sharing a pool across threads."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    # -- analysis ---------------------------------------------------------------

    def analyse(
        self, data, filename, mime_type, slot=None, *, size=None, label=None, while_checking=None
    ):
        """`slot` (a context manager, e.g. a ModelGate slot) is held only while the
        request is on the wire; the answer is decoded and checked after it is freed.

        `while_checking(answer)`, when given, is called once the answer is decoded and
        all but its PNG checks passed, while those run; what it returns is kept as
        `answer.staged` and, if a check then fails, its `discard()` is called. The
        caller uses it to write the result files meanwhile (renamed in place later).

        `filename` is the name sent, unique to the image: the service names its files
        by second + that name, so a shared name lets concurrent calls swap answers.
        The answer must echo it and, when `size` (width, height) is given, describe an
        image of that size. `label` (the user's file name) is what the log shows."""
        started = time.monotonic()
        shown = f"{label} (sent as {filename})" if label else filename
        try:
            # The breaker fails fast while the service is known to be down.
            with slot or contextlib.nullcontext(), self.breaker.call():
                reply = self._post_with_retries(data, filename, mime_type)
            answer = self._validate(reply)
            confirm(answer, filename, expected_sizes(data, size), while_checking)
        except ModelServiceError as error:
            elapsed = time.monotonic() - started
            log.warning(
                "model call %s: failed %s (%s) in %.3fs",
                shown,
                error.code,
                error.status,
                elapsed,
                extra={"model_outcome": error.code, "duration_ms": round(elapsed * 1000, 1)},
            )
            raise
        answer.elapsed = time.monotonic() - started
        log.info(
            "model call %s: %s in %.3fs (model %.3fs)",
            shown,
            reply.status_code,
            answer.elapsed,
            answer.processing_time,
            extra={"model_outcome": "ok", "duration_ms": round(answer.elapsed * 1000, 1)},
        )
        return answer

    def _post_with_retries(self, data, filename, mime_type):
        url = f"{self.base_url}/upload"
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self.session.post(
                    url,
                    files={"image": (filename, data, mime_type)},
                    timeout=self.timeout,
                    stream=True,
                )
                with response:
                    reply = Reply(response.status_code, parse_json(read_body(response)))
            except requests.Timeout as exc:
                if last:
                    raise self._timeout_error(exc) from None
            except requests.RequestException as exc:
                if last:
                    raise self._unreachable_error(exc) from None
            else:
                if reply.status_code not in RETRY_STATUSES or last:
                    return reply
            self._drop_session()
            time.sleep(self.backoff * (2**attempt))
        raise AssertionError("unreachable")

    def _drop_session(self):
        session = getattr(self._local, "session", None)
        if session is not None:
            session.close()
            self._local.session = None

    def _timeout_error(self, exc):
        kind = "connect" if isinstance(exc, requests.ConnectTimeout) else "read"
        if kind == "connect":
            return self._unreachable_error(exc)
        return ModelTimeout.of(
            "MODEL_TIMEOUT",
            seconds=self.timeout[1],
            attempts=self.retries + 1,
            details={"model_service_url": self.base_url},
        )

    def _unreachable_error(self, exc):
        log.warning("model service unreachable: %s", exc)
        return ModelUnavailable.of(
            "MODEL_UNAVAILABLE",
            url=self.base_url,
            attempts=self.retries + 1,
            details={"model_service_url": self.base_url, "reason": type(exc).__name__},
            headers={"Retry-After": self.retry_after},
        )

    def _breaker_open_error(self, retry_in):
        breaker = self.breaker
        return ModelUnavailable.of(
            "MODEL_BREAKER_OPEN",
            url=self.base_url,
            threshold=breaker.threshold,
            cooldown=breaker.cooldown,
            retry_in=retry_in,
            details={"model_service_url": self.base_url, "breaker": "open"},
            headers={"Retry-After": retry_in},
        )

    def _validate(self, reply):
        status, body = reply.status_code, reply.body
        if status == 503:
            raise ModelNotLoaded.of(
                "MODEL_NOT_LOADED",
                details={"model_service_error": _error_text(body)},
                headers={"Retry-After": self.retry_after},
            )
        if status != 200:
            raise ModelServiceError.of(
                "MODEL_ERROR",
                status=status,
                message=_error_text(body) or "no message",
                details={"model_status": status, "model_service_error": _error_text(body)},
            )
        if not isinstance(body, dict):
            raise bad_response("the answer is not a JSON object")
        if body.get("success") is not True:
            raise bad_response(f"success is not true ({_error_text(body) or 'no message'})")
        images, checks = decode_images(body)
        try:
            analysis = body.get("analysis_results")
            width, height = validate_analysis(analysis)
            total = sum(item["total_regions"] for item in analysis["classes"].values())
            timing = body.get("processing_time")
            if not is_number(timing):
                timing = analysis.get("performance", {}).get("processing_time_seconds")
            if not is_number(timing):
                raise bad_response("processing_time is missing")
        except ModelBadResponse:
            wait_for_checks(checks)  # a broken image is reported first
            raise
        echoed = body.get("filename")
        answer = ModelAnswer(analysis, images, float(timing), total, width, height, 0.0, echoed)
        answer.checks = checks
        return answer

    # -- service information -------------------------------------------------------

    def current_model(self):
        """The model's identity, cached for `info_ttl` seconds; None when unknown."""
        with self._info_lock:
            if self._info is not None and time.monotonic() - self._info_time < self.info_ttl:
                return self._info
        info = self._get_json("/api/model/current")
        if info is not None and info.get("success") is not False:
            with self._info_lock:
                self._info, self._info_time = info, time.monotonic()
        return info

    def model_label(self):
        info = self.current_model() or {}
        return info.get("model_name") or info.get("current_model")

    def health(self):
        """The service's /health plus the round-trip latency, or why it failed."""
        started = time.monotonic()
        try:
            response = self.session.get(
                f"{self.base_url}/health", timeout=(self.health_timeout, self.health_timeout)
            )
            body = response.json()
        except (requests.RequestException, ValueError) as exc:
            return {"reachable": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        return {
            "reachable": response.ok,
            "latency_ms": round((time.monotonic() - started) * 1000, 1),
            "body": body if isinstance(body, dict) else {},
        }

    def _get_json(self, path):
        try:
            response = self.session.get(
                f"{self.base_url}{path}", timeout=(self.health_timeout, self.health_timeout)
            )
            body = response.json()
        except (requests.RequestException, ValueError):
            return None
        return body if isinstance(body, dict) and response.ok else None


def upload_body_size(filename, mime_type, size):
    """Bytes of the request body `analyse` sends for a file of `size` bytes: the
    multipart form is built the same way (without the file) and measured."""
    empty = requests.Request(
        "POST", "http://model/upload", files={"image": (filename, b"", mime_type)}
    ).prepare()
    return len(empty.body) + size


def bad_response(reason):
    return ModelBadResponse.of(
        "MODEL_BAD_RESPONSE",
        reason=reason,
        details={"reason": reason},
    )


def _error_text(body):
    if isinstance(body, dict):
        return str(body.get("error") or "")[:500]
    return ""


def expected_sizes(data, size):
    """The (width, height) pairs an answer for this input may state: the stored size,
    and the transposed one when EXIF says the picture is turned 90° (a decoder may
    apply the orientation). Empty when no size is given (nothing to compare)."""
    if size is None:
        return set()
    sizes = {tuple(size)}
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.getexif().get(0x0112) in (5, 6, 7, 8):
                sizes.add((size[1], size[0]))
    except Exception:  # already decoded once; an odd EXIF block only costs the extra size
        pass
    return sizes


def confirm(answer, sent_name, sizes, while_checking=None):
    """The last checks of a decoded answer: that it is ours, then its PNGs, with
    `while_checking(answer)` (see SegformerClient.analyse) run while those finish."""
    try:
        check_belongs(answer, sent_name, sizes)
    except ModelBadResponse:
        answer.wait_checked()  # a broken image is reported first
        raise
    answer.staged = while_checking(answer) if while_checking else None
    try:
        answer.wait_checked()
    except ModelBadResponse:
        if answer.staged is not None:
            answer.staged.discard()
        raise


def check_belongs(answer, sent_name, sizes):
    """Refuse an answer that belongs to another call (the service mixes up calls that
    share a name within one second): its filename and image size must be ours."""
    expected_name = secure_filename(sent_name)
    if answer.filename != expected_name:
        raise bad_response(
            f"it names the file {str(answer.filename)[:100]!r}, not {expected_name!r} "
            "that was sent (an answer for another image)"
        )
    if sizes and (answer.width, answer.height) not in sizes:
        raise bad_response(
            f"its image_shape is {answer.width}x{answer.height}, the image sent is "
            f"{min(sizes)[0]}x{min(sizes)[1]} (an answer for another image)"
        )


def read_body(response):
    """The whole body. `iter_content(None)` has urllib3 read a sized body in one piece
    straight off the socket (fixed-size pieces are copied through its buffer twice),
    and still turns read errors into requests' exceptions."""
    return b"".join(response.iter_content(None))


def parse_json(body):
    """The body's JSON, or None when it is not JSON.

    msgspec splits the top-level object into its fields without copying them: the
    three base64 images stay views into `body` (decode_base64 reads them from there;
    no 13 MB of text is built), every other field is parsed. Whatever msgspec refuses
    (not an object, NaN, a byte-order mark, UTF-16 ...) goes to the standard json,
    so what is accepted and how it reads stay json's."""
    try:
        fields = ANSWER_FIELDS.decode(body)
        return {
            key: raw if key in IMAGE_KEYS else msgspec.json.decode(raw)
            for key, raw in fields.items()
        }
    except msgspec.DecodeError:
        pass
    try:
        return json.loads(body)
    except ValueError:  # UnicodeDecodeError included
        return None


def decode_base64(value, field):
    """A base64 field's bytes: strict (only the alphabet, correct padding), with
    pybase64's SIMD decoder (~50x binascii). A field still in its JSON form (a
    msgspec.Raw view into the answer) is decoded in place when it is a plain string;
    anything else (escapes, another type) is read as JSON first."""
    if isinstance(value, msgspec.Raw):
        text = memoryview(value)
        if len(text) > 2 and text[0] == text[-1] == QUOTE:
            with contextlib.suppress(ValueError):
                return pybase64.b64decode(text[1:-1], validate=True)
        try:
            value = msgspec.json.decode(value)
        except msgspec.DecodeError:
            raise bad_response(f"{field} is not valid base64") from None
    if not isinstance(value, str) or not value:
        raise bad_response(f"{field} is missing")
    try:
        return pybase64.b64decode(value, validate=True)
    except ValueError:  # binascii.Error is one
        raise bad_response(f"{field} is not valid base64") from None


def decode_images(body):
    """The three PNGs of an answer, decoded, and their checks started: structure, CRCs
    and inflated size (png_size), never a pixel decode. Returns (images, checks):
    the checks run side by side while the next image is decoded (and whatever the
    caller does next); the first problem in answer order is the one reported. Each
    base64 field is popped, so it is freed once decoded."""
    images, checks = {}, {}
    try:
        for name, key in RESULT_IMAGES.items():
            images[name] = decode_base64(body.pop(key, None), key)
            checks[name] = PNG_CHECKS.submit(png_size, images[name])
    except ModelBadResponse:
        wait_for_checks(checks)  # an earlier image's problem comes first
        raise
    return images, checks


def wait_for_checks(checks):
    for name, check in checks.items():
        try:
            check.result()
        except Exception:
            raise bad_response(f"{RESULT_IMAGES[name]} is not a complete PNG image") from None


def validate_analysis(analysis):
    """Check the structure the database needs; returns (width, height)."""
    if not isinstance(analysis, dict):
        raise bad_response("analysis_results is missing")
    shape = analysis.get("image_shape")
    if not all_ints(shape, ("width", "height")):
        raise bad_response("analysis_results.image_shape needs integer width and height")
    classes = analysis.get("classes")
    if not isinstance(classes, dict) or not classes:
        raise bad_response("analysis_results.classes is missing")
    seen = set()
    for key, item in classes.items():
        class_id = validate_class(key, item)
        if class_id in seen:
            raise bad_response(f"class id {class_id} appears twice")
        seen.add(class_id)
    return shape["width"], shape["height"]


def validate_class(key, item):
    match = CLASS_KEY.match(key)
    if not match or not isinstance(item, dict):
        raise bad_response(f"class key {key!r} is not '<id>_<name>'")
    fields = ("class_id", "total_regions", "total_area_pixels")
    if not all_ints(item, fields):
        raise bad_response(f"class {key} needs integer {', '.join(fields)}")
    if item["class_id"] != int(match.group(1)):
        raise bad_response(f"class {key} has class_id {item['class_id']}")
    regions = item.get("regions")
    if not isinstance(regions, list) or len(regions) != item["total_regions"]:
        raise bad_response(f"class {key} lists a different number of regions than total_regions")
    for region in regions:
        validate_region(key, region)
    return item["class_id"]


def validate_region(key, region):
    problem = None
    if not isinstance(region, dict):
        problem = "is not an object"
    elif not all_ints(region, ("region_id", "area_pixels")):
        problem = "needs integer region_id and area_pixels"
    elif not all_numbers(region.get("centroid"), ("x", "y")):
        problem = "needs numeric centroid x and y"
    elif not all_ints(region.get("bounding_box"), ("x", "y", "width", "height")):
        problem = "needs an integer bounding_box"
    elif not all_numbers(region, REGION_FLOATS):
        problem = f"needs finite numbers for {', '.join(REGION_FLOATS)}"
    if problem:
        raise bad_response(f"a region of class {key} {problem}")
