"""The real sample answer of the model service, shipped once as package data
(aoi_flask/data; the tests read the same files), and the API's documented examples
built from it: sample rows made by the same code that stores real results, dumped
through the same schemas the views use. Error examples: errors.CATALOGUE's messages
filled with sample values, and what the real validation answers a bad input.

Call `examples()` inside a request context (it builds absolute URLs).
"""

import json
from collections import Counter
from datetime import timedelta
from functools import cache
from pathlib import Path
from types import SimpleNamespace

from . import schemas
from .errors import CATALOGUE, ApiError, BadInput, code_of, message
from .models import TRACE_FIELDS, BatchItem, Region, RegionReview
from .services import reviews as review_service
from .services.imaging import EXTENSIONS, disk_name
from .services.queries import encode_cursor
from .services.results import id_moment, image_rows
from .services.storage import RESULT_FILES

DATA = Path(__file__).parent / "data"
SAMPLE_ID = "20260224_173819_AB12CD"
SAMPLE_BATCH = "20260224_180002_Q7M3XK"
BATCH_IMAGE = "20260224_180002_H2K9PL"
MODEL_URL = "http://127.0.0.1:8080"
SAMPLE_REGION = f"{SAMPLE_ID}_1_1"
REVIEWER = "qc-line1"
# What a reviewer said of four of the sample's regions: (region, disposition, class, comment).
SAMPLE_REVIEWS = (
    ("1_1", "true_defect", None, None),
    ("1_2", "false_call", None, "glare on the pad edge"),
    ("1_3", "nuisance", "Env_Particle", "dust, not a PI particle"),
    ("2_1", "true_defect", None, None),
)


def sample_analysis_bytes():
    """analysis_results of the sample answer, byte for byte as the agent stores it."""
    return (DATA / "sample_analysis.json").read_bytes()


@cache
def sample_service():
    """The model service's answers for the sample input: `upload` (without the three
    base64 images and the analysis), `model_current` and `health`."""
    return json.loads((DATA / "sample_answer.json").read_text("utf-8"))


def sample_analysis():
    return json.loads(sample_analysis_bytes())


def sample_image(img_id=SAMPLE_ID, filename=None, batch_id=None):
    """The sample answer as the stored rows (not added to any session)."""
    answer = sample_service()["upload"]
    analysis = sample_analysis()
    moment = id_moment(img_id)
    result_dir = f"results/{moment:%Y%m%d}/{img_id}"
    kinds = ("combined", "mask", "overlay", "json", "thumbnail")
    filename = filename or answer["filename"]
    accepted = SimpleNamespace(
        img_id=img_id,
        input_path=f"uploads/{moment:%Y%m%d}/{img_id}_{disk_name(filename, EXTENSIONS['jpeg'])}",
        display_name=filename,
    )
    shape = analysis["image_shape"]
    model_answer = SimpleNamespace(
        height=shape["height"],
        width=shape["width"],
        processing_time=answer["processing_time"],
        total_defects=answer["total_defects"],
        analysis=analysis,
    )
    paths = {kind: f"{result_dir}/{name}" for kind, name in zip(kinds, RESULT_FILES, strict=True)}
    model = sample_service()["model_current"]["model_name"]
    rows = image_rows(accepted, model_answer, paths, model, batch_id)
    image = rows.view()
    for defect_class in image.classes:
        defect_class.regions = [
            Region(**row)
            for row in rows.regions
            if row["class_unique_id"] == defect_class.class_unique_id
        ]
    image.created_at = moment
    for name, value in schemas.TRACE_EXAMPLES.items():
        setattr(image, name, value)
    return image


def example(summary, value):
    return {"summary": summary, "value": value}


def dump(schema, value):
    return schema().dump(value)


def failed_item(index, name, error):
    return SimpleNamespace(
        file_index=index,
        filename=name,
        state="failed",
        error_code=code_of(error),
        error_message=message(error, **CATALOGUE[error].example),
    )


def batch_examples(image):
    """A finished two-file batch: the sample image done, a text file refused."""
    moment = image.timestamp
    links = schemas.batch_links(SAMPLE_BATCH)
    rejected = failed_item(1, "notes.txt", "UNSUPPORTED_FORMAT")
    done = BatchItem(
        file_index=0,
        filename=image.original_filename,
        state="done",
        img_unique_id=image.img_unique_id,
        attempts=1,
        started_at=moment,
        finished_at=moment,
    )
    files = [
        {
            **schemas.BatchFileSchema().dump(done),
            "total_defects": image.total_defects,
            "processing_time_seconds": image.processing_time_seconds,
            "retryable": False,
        },
        {
            **schemas.BatchFileSchema().dump(
                BatchItem(**vars(rejected), attempts=0, finished_at=moment)
            ),
            "total_defects": None,
            "processing_time_seconds": None,
            "retryable": False,
        },
    ]
    when = schemas.utc_text(moment)
    progress = {
        "batch_id": SAMPLE_BATCH,
        "status": "partial",
        "created_at": when,
        "started_at": when,
        "finished_at": when,
        "total_images": 2,
        "queued": 0,
        "processing": 0,
        "processed": 1,
        "failed": 1,
        "percent_done": 100.0,
        **links,
    }
    time = image.processing_time_seconds
    failed_row = dump(schemas.FailedFileSchema, rejected)
    result_row = {**schemas.ImageResultSchema().dump(image), "analysis_results": sample_analysis()}
    retry = {"success": True, "batch_id": SAMPLE_BATCH, **links}
    return {
        "BatchResult": example(
            "Two files: the sample image and a text file",
            dump(
                schemas.BatchResultSchema,
                {
                    **progress,
                    "processed": 1,
                    "total_processing_time": time,
                    "results": [{"file_index": 0, **result_row}, {"file_index": 1, **failed_row}],
                },
            ),
        ),
        "BatchAccepted": example(
            "Two files: one queued, one refused at once",
            dump(
                schemas.BatchAcceptedSchema,
                {
                    **progress,
                    "status": "queued",
                    "accepted": 1,
                    "rejected": 1,
                    "results": [
                        {"file_index": 0, "filename": done.filename, "state": "queued"},
                        {"file_index": 1, "state": "failed", **failed_row},
                    ],
                },
            ),
        ),
        "BatchList": example(
            "One batch",
            schemas.page_of(
                schemas.BatchListSchema, "batches", [progress], total=1, page=1, limit=20
            ),
        ),
        "Batch": example(
            "A finished batch: one file done, one refused",
            dump(
                schemas.BatchSchema,
                {
                    **progress,
                    "total_processing_time": time,
                    "elapsed_seconds": 1.0,
                    **{name: getattr(image, name) for name in TRACE_FIELDS},
                    "cluster": cluster_example(),
                    "files": files,
                },
            ),
        ),
        "BatchRetried": example(
            "Failed files queued again",
            dump(
                schemas.BatchRetrySchema,
                {**retry, "retried": 1, "message": "1 failed file(s) queued again."},
            ),
        ),
        "BatchNothingToRetry": example(
            "Nothing to retry",
            dump(
                schemas.BatchRetrySchema,
                {**retry, "retried": 0, "message": "No failed files with a stored input to retry."},
            ),
        ),
    }


def stats_example(image):
    time = image.processing_time_seconds
    when = schemas.utc_text(image.timestamp)
    return {
        "totals": {"images": 1, "regions": image.total_defects, "batches": 0},
        "processing_time": {"mean": time, "min": time, "max": time},
        "date_range": {"first": when, "last": when},
        "storage": {"bytes_used": 2490177},
        "classes": [
            {
                "class_id": c.class_id,
                "class_name": c.class_name,
                "images": int(bool(c.total_regions)),
                "regions": c.total_regions,
                "area_pixels": c.total_area_pixels,
            }
            for c in image.classes
        ],
        "daily": [{"date": when[:10], "images": 1, "defects": image.total_defects}],
        "window": {"start_date": when[:10], "end_date": None},
        "filters": {},
        "review": review_stats_example(image),
    }


# ---- review (issue #16) ----------------------------------------------------------------


def sample_reviews(image):
    """The sample reviews as stored rows, by region id."""
    moment = image.timestamp + timedelta(minutes=20)
    return {
        f"{image.img_unique_id}_{suffix}": RegionReview(
            region_unique_id=f"{image.img_unique_id}_{suffix}",
            img_unique_id=image.img_unique_id,
            disposition=disposition,
            reviewer_class_name=reviewer_class,
            comment=comment,
            reviewed_by=REVIEWER,
            reviewed_at=moment,
        )
        for suffix, disposition, reviewer_class, comment in SAMPLE_REVIEWS
    }


def review_input(review):
    return {name: getattr(review, name) for name in review_service.REVIEW_VALUES}


def review_stats_example(image):
    """/stats `review` for the sample reviews (what the SQL of services/reviews.py sums)."""
    found = sample_reviews(image)
    model_class = {r.region_unique_id: c.class_name for c in image.classes for r in c.regions}
    by_class, confusion = {}, Counter()
    for region_id, review in found.items():
        name = model_class[region_id]
        by_class.setdefault(name, Counter())[review.disposition] += 1
        if review.disposition == "false_call":
            corrected = review_service.FALSE_CALL_COLUMN
        else:
            corrected = review.reviewer_class_name or name
        confusion[name, corrected] += 1
    totals = review_service.rates(Counter(r.disposition for r in found.values()))
    return {
        "totals": totals,
        "by_class": [{"class_name": n, **review_service.rates(c)} for n, c in by_class.items()],
        "by_tool": [{"tool_id": image.tool_id, **totals}],
        "by_model": [{"model": image.model_name, **totals}],
        "confusion": [
            {"model_class": model, "reviewer_class": corrected, "regions": number}
            for (model, corrected), number in sorted(confusion.items())
        ],
        "daily": [{"date": schemas.utc_text(image.timestamp)[:10], **totals}],
    }


def review_examples(image):
    found = sample_reviews(image)
    first, *others = found.values()
    moment = first.reviewed_at
    log = []
    for review in found.values():
        new = review_input(review)
        old = review_service.review_values(None)
        log.append(
            review_service.log_entry(
                image.img_unique_id, review.region_unique_id, REVIEWER, moment, old, new
            )
        )
    mark = ({"reviewed": False, "reviewed_by": None}, {"reviewed": True, "reviewed_by": REVIEWER})
    log.append(review_service.log_entry(image.img_unique_id, None, REVIEWER, moment, *mark))
    for number, entry in enumerate(log, 1):
        entry.id = number
    stats = stats_example(image)
    tool = image.tool_id
    group = {
        "tool_id": tool,
        "images": 1,
        "regions": image.total_defects,
        **stats["review"]["totals"],
    }
    return {
        "RegionDisposition": example("A region confirmed as a real defect", review_input(first)),
        "RegionReviewed": example(
            "The region's review now",
            dump(
                schemas.RegionReviewedSchema,
                {
                    "img_unique_id": image.img_unique_id,
                    "region_unique_id": first.region_unique_id,
                    "review": schemas.dump_review(first),
                },
            ),
        ),
        "ImageReview": example(
            "Three more regions, and the image marked reviewed",
            {
                "regions": [
                    {"region_unique_id": r.region_unique_id, **review_input(r)} for r in others
                ],
                "reviewed": True,
            },
        ),
        "ImageReviewed": example(
            "Three dispositions and the reviewed mark written",
            dump(
                schemas.ImageReviewedSchema,
                {
                    "img_unique_id": image.img_unique_id,
                    "changes": len(others) + 1,
                    "reviewed_at": moment,
                    "reviewed_by": REVIEWER,
                    "progress": {"regions": image.total_defects, "reviewed": len(found)},
                },
            ),
        ),
        "ReviewLog": example(
            "Four dispositions, then the reviewed mark",
            dump(
                schemas.ReviewLogSchema,
                {"img_unique_id": image.img_unique_id, "total": len(log), "entries": log},
            ),
        ),
        "StatsGrouped": example(
            f"The sample, reviewed, grouped by tool (?group_by=tool_id&tool_id={tool})",
            dump(
                schemas.StatsSchema,
                {**stats, "filters": {"tool_id": tool}, "group_by": "tool_id", "groups": [group]},
            ),
        ),
    }


def cluster_example():
    """`cluster` of /health and GET /batches/{id}: distributed mode under load."""
    return {
        "mode": "distributed",
        "reachable": True,
        "model_slots": 4,
        "model_slots_in_use": 4,
        "queue_depth": 37,
        "taken_by_workers": 12,
    }


def health_example(status):
    service = sample_service()
    breaker = {
        "state": "closed",
        "consecutive_failures": 0,
        "threshold": 3,
        "cooldown_seconds": 15.0,
        "retry_in_seconds": 0.0,
        "opened_total": 0,
        "rejected_total": 0,
    }
    model = {
        "url": MODEL_URL,
        "reachable": True,
        "latency_ms": 3.1,
        "model_loaded": service["health"]["model_loaded"],
        "device": service["health"]["device"],
        "model_name": service["model_current"]["model_name"],
        "current_model": service["model_current"]["current_model"],
        "simulator": False,
        "active_calls": 0,
        "max_concurrent_calls": 4,
        "breaker": breaker,
    }
    database = {"reachable": True, "backend": "mysql", "latency_ms": 0.8}
    if status == "degraded":
        model = {
            **{k: v for k, v in model.items() if k != "latency_ms"},
            "reachable": False,
            "error": "ConnectionError: connection refused",
            "model_loaded": False,
            **dict.fromkeys(("device", "model_name", "current_model")),
            "breaker": {
                **breaker,
                "state": "open",
                "consecutive_failures": 3,
                "retry_in_seconds": 11.4,
                "opened_total": 1,
                "rejected_total": 5,
            },
        }
    if status == "down":
        error = "(2003, \"Can't connect to MySQL server on '127.0.0.1'\")"
        database = {"reachable": False, "backend": "mysql", "error": error}
    body = {
        "status": status,
        "service": "aoi-inference-agent",
        "uptime_seconds": 3605.2,
        "limits": {
            "max_upload_mb": 50,
            "max_batch_files": 500,
            "supported_formats": ["jpeg", "png", "tiff", "bmp"],
        },
        "database": database,
        "model_service": model,
        "storage": {"writable": True, "free_bytes": 84192153600},
        "cluster": cluster_example(),
    }
    return dump(schemas.HealthSchema, body)


def examples():
    """components.examples: every documented success answer, from the sample."""
    image = sample_image()
    analysis = sample_analysis()
    history = [schemas.HistoryImageSchema().dump(image)]
    largest = sorted(image.classes[0].regions, key=lambda r: -r.area_pixels)[:2]
    return {
        "AnalysisResults": example("analysis.json of the sample image", analysis),
        "UploadResult": example(
            "The sample image: 7 defects in 3 classes",
            {**schemas.ImageResultSchema().dump(image), "analysis_results": analysis},
        ),
        "ImageDetail": example("The sample image", dump(schemas.ImageDetailSchema, image)),
        "ClassList": example(
            "The four classes of the sample image",
            dump(schemas.ClassListSchema, {"img_unique_id": SAMPLE_ID, "classes": image.classes}),
        ),
        "Regions": example(
            "All 7 regions of the sample image, 4 of them reviewed",
            schemas.dump_regions(SAMPLE_ID, image.classes, sample_reviews(image)),
        ),
        "Deleted": example(
            "Rows and files removed", dump(schemas.DeletedSchema, {"img_unique_id": SAMPLE_ID})
        ),
        "HistoryPage": example(
            "First page, one image",
            schemas.page_of(
                schemas.HistoryPageSchema,
                "images",
                history,
                total=1,
                page=1,
                limit=20,
                total_is_lower_bound=False,
                next_cursor=None,
            ),
        ),
        "DefectPage": example(
            "PI_Particle regions of the sample, largest first",
            schemas.page_of(
                schemas.DefectPageSchema,
                "regions",
                [
                    schemas.dump_region_row(
                        search_row(region, image),
                        {name: getattr(image, name) for name in TRACE_FIELDS},
                        sample_reviews(image).get(region.region_unique_id),
                    )
                    for region in largest
                ],
                total=5,
                page=1,
                limit=2,
                total_is_lower_bound=False,
                next_cursor=encode_cursor(
                    "area_desc", [largest[-1].area_pixels, largest[-1].region_unique_id]
                ),
            ),
        ),
        "Stats": example(
            "One stored image (the sample)",
            dump(schemas.StatsSchema, stats_example(image)),
        ),
        **batch_examples(sample_image(BATCH_IMAGE, "wafer_01.jpeg", SAMPLE_BATCH)),
        **review_examples(image),
        "HealthOk": example("Everything works", health_example("ok")),
        "HealthDegraded": example("Model service down", health_example("degraded")),
        "HealthDown": example("Database down", health_example("down")),
    }


def search_row(region, image):
    """A region-search result row, as services.queries returns it."""
    return SimpleNamespace(
        Region=region,
        class_id=region.defect_class.class_id,
        class_name=region.defect_class.class_name,
        timestamp=image.timestamp,
        batch_id=image.batch_id,
        original_filename=image.original_filename,
    )


# ---- error examples: the catalogue's messages, and what validation answers bad input ----

ERROR_VALUES = {
    "img_id": SAMPLE_ID,
    "batch_id": SAMPLE_BATCH,
    "url": MODEL_URL,
}


def error_example(case):
    """(key, example) of a catalogue entry, or of what the real validation answers a bad input."""
    if isinstance(case, BadInput):
        try:
            schemas.load_or_400(getattr(schemas, case.schema)(), case.data)
        except ApiError as error:
            body = {"success": False, "error": error.message, "code": error.code}
            key = f"{error.code}_{'_'.join(case.data).upper()}"
            return key, {"summary": case.summary, "value": {**body, "details": error.details or {}}}
        raise AssertionError(f"{case} is valid input")
    entry = CATALOGUE[case]
    values = {**ERROR_VALUES, **entry.example}
    # `details` is always there; its string values are templates too.
    details = {
        k: v.format(**values) if isinstance(v, str) else v for k, v in (entry.details or {}).items()
    }
    body = {
        "success": False,
        "error": message(case, **values),
        "code": code_of(case),
        "details": details,
    }
    return case, {"summary": entry.summary, "value": body}
