"""The API contract: Flasgger (OpenAPI 3.0.3) at /apidocs, the spec at /apispec.json.

Each view function documents itself in a Flasgger YAML docstring (summary,
description, tags, parameters, request body, every response code). The pieces
those docstrings share live here, in the Flasgger template: `components.schemas`
(response bodies), `components.parameters`, `components.responses` (the error
answers) and `components.examples` (built from the real sample answer of the
model service). tests/test_apidocs.py checks that the spec and the running app
agree; tests/test_schemathesis.py fuzzes every documented operation.

The Swagger UI is served entirely from /flasgger_static: templates/flasgger/head.html
drops Flasgger's Google Fonts link, and a Content-Security-Policy on the docs
pages makes the browser refuse anything from another host (air-gapped fabs).
"""

import copy

from flasgger import Swagger
from flask import Blueprint, redirect, request, url_for

from .models import CLASS_NAMES as CLASS_BY_ID

bp = Blueprint("apidocs", __name__)

CLASS_NAMES = tuple(CLASS_BY_ID.values())
BATCH_STATUSES = ("queued", "running", "done", "partial", "failed")
FILE_STATES = ("queued", "processing", "done", "failed")

# Docs pages run Swagger UI's inline start-up script and styles, nothing from elsewhere.
DOCS_CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "font-src 'self' data:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'self'",
    )
)


# ---- schema helpers -------------------------------------------------------------------


def ref(name, kind="schemas"):
    return {"$ref": f"#/components/{kind}/{name}"}


def string(description=None, **extra):
    return _typed("string", description, extra)


def integer(description=None, **extra):
    return _typed("integer", description, extra)


def number(description=None, **extra):
    return _typed("number", description, extra)


def boolean(description=None, **extra):
    return _typed("boolean", description, extra)


def _typed(kind, description, extra):
    schema = {"type": kind, **extra}
    if description:
        schema["description"] = description
    return schema


def nullable(schema):
    return {**schema, "nullable": True}


def array(items, description=None, **extra):
    return _typed("array", description, {"items": items, **extra})


def obj(properties, *, optional=(), description=None, open_=False):
    """An object whose properties are all required except `optional`; closed
    (no undocumented fields) unless `open_`."""
    schema = {
        "type": "object",
        "required": [name for name in properties if name not in optional],
        "properties": properties,
        "additionalProperties": open_,
    }
    if description:
        schema["description"] = description
    return schema


def url(description):
    return string(description, format="uri")


def utc(description):
    return string(f"{description} (UTC, ISO 8601 with `Z`)", format="date-time")


# ---- components.schemas ----------------------------------------------------------------

IMG_ID = string(
    "Image id `YYYYmmdd_HHMMSS_XXXXXX` (UTC time of the upload and 6 random letters/digits)",
    example="20260224_173819_AB12CD",
)
BATCH_ID = string("Batch id, same form as an image id", example="20260224_180002_Q7M3XK")
PAGING = {
    "total": integer("Matching rows in all pages", minimum=0),
    "page": integer("This page (from 1)", minimum=1),
    "limit": integer("Rows per page", minimum=1, maximum=500),
    "pages": integer("Number of pages (at least 1)", minimum=1),
}
CENTROID = obj({"x": number(), "y": number()}, description="Centre of mass, pixels")
BOUNDING_BOX = obj(
    {
        "x": integer(),
        "y": integer(),
        "width": integer(minimum=0),
        "height": integer(minimum=0),
    },
    description="Axis-aligned box, pixels",
)
REGION_VALUES = {
    "centroid": CENTROID,
    "bounding_box": BOUNDING_BOX,
    "area_pixels": integer("Contour area (a one-pixel region has 0)"),
    "perimeter": number("Contour length, pixels"),
    "major_axis": number("Fitted ellipse, major axis, pixels"),
    "minor_axis": number("Fitted ellipse, minor axis, pixels"),
    "circularity": number("4πA/P² (0 for a one-pixel region)"),
    "aspect_ratio": number("major_axis / minor_axis"),
}
CLASS_ROW = {
    "class_unique_id": string("`<img_unique_id>_<class_id>`"),
    "class_id": integer("1 PI_Particle, 2 PR_Peeling, 3 Copper_Nodule, 4 Env_Particle"),
    "class_name": string("Class name as the model reports it", example="PI_Particle"),
    "total_regions": integer(minimum=0),
    "total_area_pixels": integer(minimum=0),
}
DEFECT_CLASSES = {
    "type": "object",
    "description": "Regions per class, non-empty classes only",
    "additionalProperties": integer(minimum=1),
    "example": {"PI_Particle": 5, "PR_Peeling": 1, "Copper_Nodule": 1},
}
IMAGE_RESULT = {
    "success": boolean(enum=[True]),
    "img_unique_id": IMG_ID,
    "filename": nullable(string("Original file name as uploaded (display form)")),
    "timestamp": utc("When the result was stored"),
    "processing_time_seconds": number("Model time reported by the model service"),
    "total_defects": nullable(integer("Regions over all classes", minimum=0)),
    "defect_classes": ref("DefectClasses"),
    "image_width": integer(minimum=1),
    "image_height": integer(minimum=1),
    "model": nullable(string("Model that produced the result (from /api/model/current)")),
    "batch_id": nullable(string("Batch the image came in, null for single uploads")),
    "images": ref("ImageLinks"),
    "json_url": url("Download of the analysis JSON"),
}
BASE64_IMAGES = {
    f"{name}_image": string(
        f"The {name} PNG, base64 (only with include_images=true)", format="byte"
    )
    for name in ("overlay", "combined", "mask")
}
FAILED_FILE = {
    "filename": string(),
    "success": boolean(enum=[False]),
    "error": nullable(string("What went wrong and what to do")),
    "code": nullable(string("Error code, e.g. UNSUPPORTED_FORMAT")),
}
BATCH_LINKS = {
    "status_url": url("Progress of the batch (GET /batches/{batch_id})"),
    "download_url": url("ZIP of the batch (GET /download/batch/{batch_id})"),
}
BATCH_SUMMARY = {
    "batch_id": BATCH_ID,
    "status": string(enum=list(BATCH_STATUSES)),
    "created_at": utc("When the batch was accepted"),
    "started_at": nullable(utc("When the first file started")),
    "finished_at": nullable(utc("When the last file finished")),
    "total_images": integer(minimum=0),
}
BATCH_PROGRESS = {
    **BATCH_SUMMARY,
    "queued": integer(minimum=0),
    "processing": integer(minimum=0),
    "processed": integer("Files done", minimum=0),
    "failed": integer(minimum=0),
    "percent_done": number("Finished (done or failed) share of the files", minimum=0, maximum=100),
    **BATCH_LINKS,
}

CLUSTER = obj(
    {
        "mode": string(
            "embedded (one process, in-process pool) or distributed (Celery workers, "
            "AOI_BROKER_URL)",
            enum=["embedded", "distributed"],
        ),
        "reachable": boolean("Redis answered (always true when embedded)"),
        "model_slots": integer("AOI_MODEL_MAX_CONCURRENCY: the cap for all processes", minimum=1),
        "model_slots_in_use": nullable(
            integer("Model calls running now, all processes", minimum=0)
        ),
        "queue_depth": nullable(integer("Batch files waiting for a worker", minimum=0)),
        "taken_by_workers": nullable(
            integer("Batch files taken by workers, not finished", minimum=0)
        ),
        "error": string(),
    },
    optional=("error",),
    description="Model slots and batch queue of the whole cluster",
)

SCHEMAS = {
    "Cluster": CLUSTER,
    "Error": obj(
        {
            "success": boolean(enum=[False]),
            "error": string("Human message: what went wrong and what to do"),
            "code": string("Stable machine code, UPPER_SNAKE", pattern="^[A-Z][A-Z0-9_]*$"),
            "details": {"type": "object", "description": "Optional particulars (fields, limits)"},
        },
        optional=("details",),
        description="The one error shape of every failure (404, 405, 413 and 500 included).",
    ),
    "DefectClasses": DEFECT_CLASSES,
    "ImageLinks": obj(
        {
            kind: url(f"Download of the {kind} image")
            for kind in ("input", "combined", "mask", "overlay", "thumbnail")
        },
        description="Absolute download URLs",
    ),
    "Region": obj(
        {
            "region_unique_id": string("`<class_unique_id>_<region_id>`"),
            "region_id": integer("1-based within its class", minimum=0),
            **REGION_VALUES,
        }
    ),
    "ModelRegion": obj(
        {"region_id": integer(), **REGION_VALUES},
        open_=True,
        description="A region as the model service reports it",
    ),
    "AnalysisResults": obj(
        {
            "image_shape": obj({"height": integer(), "width": integer()}, open_=True),
            "classes": {
                "type": "object",
                "description": "Keyed `<class_id>_<class_name>`; all four classes, even empty",
                "additionalProperties": obj(
                    {
                        "class_id": integer(),
                        "total_regions": integer(minimum=0),
                        "total_area_pixels": integer(minimum=0),
                        "regions": array(ref("ModelRegion")),
                    },
                    open_=True,
                ),
            },
            "performance": {"type": "object", "description": "Timing as the model reports it"},
        },
        optional=("performance",),
        open_=True,
        description="The model's analysis, exactly as the model service returned it",
    ),
    "ImageResult": obj(IMAGE_RESULT, description="A stored result (PRD Example 1)"),
    "UploadResult": obj(
        {**IMAGE_RESULT, "analysis_results": ref("AnalysisResults"), **BASE64_IMAGES},
        optional=tuple(BASE64_IMAGES),
        description="Answer of POST /upload: the stored result and the model's analysis",
    ),
    "ClassRow": obj(CLASS_ROW),
    "ImageDetail": obj(
        {
            **IMAGE_RESULT,
            "created_at": nullable(utc("When the row was written")),
            "input_image_path": string("Stored input, relative to the storage root"),
            "result_image_1_path": nullable(string("combined.png, relative")),
            "result_image_2_path": nullable(string("mask.png, relative")),
            "result_image_3_path": nullable(string("overlay.png, relative")),
            "analysis_json_path": nullable(string("analysis.json, relative")),
            "thumbnail_path": nullable(string("thumbnail.jpg, relative")),
            "purged_at": nullable(
                utc("When retention deleted the files (downloads then answer 410)")
            ),
            "files_missing_at": nullable(utc("When `flask aoi fsck` found stored files gone")),
            "classes": array(ref("ClassRow"), "All four class rows"),
        },
        description="Metadata, stored paths, download URLs and the per-class summary",
    ),
    "ClassList": obj(
        {
            "success": boolean(enum=[True]),
            "img_unique_id": IMG_ID,
            "classes": array(ref("ClassRow")),
        }
    ),
    "Regions": obj(
        {
            "success": boolean(enum=[True]),
            "img_unique_id": IMG_ID,
            "total_regions": integer(minimum=0),
            "classes": array(obj({**CLASS_ROW, "regions": array(ref("Region"))})),
        },
        description="Every region of one image grouped by class (PRD Example 3)",
    ),
    "Deleted": obj(
        {"success": boolean(enum=[True]), "img_unique_id": IMG_ID, "deleted": boolean(enum=[True])}
    ),
    "HistoryImage": obj(
        {
            "img_unique_id": IMG_ID,
            "timestamp": utc("When the result was stored"),
            "filename": nullable(string()),
            "batch_id": nullable(string()),
            "image_height": integer(),
            "image_width": integer(),
            "processing_time_seconds": number(),
            "total_defects": nullable(integer(minimum=0)),
            "defect_classes": ref("DefectClasses"),
            "input_image_path": string(),
            "model": nullable(string()),
            "thumbnail_url": url("Gallery thumbnail"),
            "detail_url": url("GET /images/{img_id}"),
        }
    ),
    "HistoryPage": obj(
        {"success": boolean(enum=[True]), **PAGING, "images": array(ref("HistoryImage"))}
    ),
    "DefectRow": obj(
        {
            "region_unique_id": string(),
            "img_unique_id": IMG_ID,
            "class_id": integer(),
            "class_name": string(),
            "region_id": integer(),
            **REGION_VALUES,
            "timestamp": utc("When the image was stored"),
            "batch_id": nullable(string()),
            "filename": nullable(string()),
        }
    ),
    "DefectPage": obj(
        {"success": boolean(enum=[True]), **PAGING, "regions": array(ref("DefectRow"))}
    ),
    "Stats": obj(
        {
            "success": boolean(enum=[True]),
            "totals": obj(
                {
                    "images": integer(minimum=0),
                    "regions": integer(minimum=0),
                    "batches": integer(minimum=0),
                }
            ),
            "processing_time": obj(
                {"mean": nullable(number()), "min": nullable(number()), "max": nullable(number())},
                description="Seconds; null when there are no images",
            ),
            "date_range": obj(
                {"first": nullable(utc("Oldest image")), "last": nullable(utc("Newest image"))}
            ),
            "storage": obj({"bytes_used": integer("Inputs and results, bytes", minimum=0)}),
            "classes": array(
                obj(
                    {
                        "class_id": integer(),
                        "class_name": string(),
                        "images": integer("Images with at least one region", minimum=0),
                        "regions": integer(minimum=0),
                        "area_pixels": integer(minimum=0),
                    }
                )
            ),
            "daily": array(
                obj(
                    {
                        "date": string("UTC day", format="date"),
                        "images": integer(minimum=0),
                        "defects": integer(minimum=0),
                    }
                )
            ),
            "window": obj(
                {
                    "start_date": nullable(string("As given")),
                    "end_date": nullable(string("As given")),
                }
            ),
        },
        description="Totals, per-class counts, processing times, storage and the daily trend",
    ),
    "BatchAccepted": obj(
        {
            "success": boolean(enum=[True]),
            **{k: BATCH_SUMMARY[k] for k in ("batch_id", "status", "total_images")},
            "accepted": integer("Files saved and queued", minimum=0),
            "rejected": integer("Files refused at once (bad type, empty, too large)", minimum=0),
            **BATCH_LINKS,
            "results": array(
                obj(
                    {
                        "file_index": integer(minimum=0),
                        "filename": string(),
                        "state": string(enum=list(FILE_STATES)),
                        **{k: FAILED_FILE[k] for k in ("success", "error", "code")},
                    },
                    optional=("success", "error", "code"),
                    description="One row per file; refused files carry success, error, code",
                )
            ),
        },
        description="Answer of POST /upload/batch?async=true: inputs saved, work queued",
    ),
    "BatchResult": obj(
        {
            "success": boolean(enum=[True]),
            **{k: BATCH_SUMMARY[k] for k in ("batch_id", "status", "total_images")},
            "processed": integer(minimum=0),
            "failed": integer(minimum=0),
            "total_processing_time": number("Sum of model times, seconds", minimum=0),
            **BATCH_LINKS,
            "results": array(
                {
                    "oneOf": [
                        obj(
                            {"file_index": integer(minimum=0), **IMAGE_RESULT}
                            | {"analysis_results": ref("AnalysisResults")},
                            description="A file that was analysed and stored",
                        ),
                        obj(
                            {"file_index": integer(minimum=0), **FAILED_FILE},
                            description="A file that failed; the others are unaffected",
                        ),
                    ]
                }
            ),
        },
        description="Answer of POST /upload/batch (waited for): one result per file",
    ),
    "BatchProgress": obj(BATCH_PROGRESS),
    "BatchList": obj(
        {"success": boolean(enum=[True]), **PAGING, "batches": array(ref("BatchProgress"))}
    ),
    "BatchFile": obj(
        {
            "file_index": integer(minimum=0),
            "filename": string(),
            "state": string(enum=list(FILE_STATES)),
            "success": boolean("state is done"),
            "img_unique_id": nullable(string("The stored image, once done")),
            "error": nullable(string()),
            "code": nullable(string()),
            "attempts": integer(minimum=0),
            "started_at": nullable(utc("Last start")),
            "finished_at": nullable(utc("Finished or failed")),
            "total_defects": nullable(integer(minimum=0)),
            "processing_time_seconds": nullable(number()),
            "retryable": boolean("Failed with its input still stored"),
        }
    ),
    "Batch": obj(
        {
            "success": boolean(enum=[True]),
            **BATCH_PROGRESS,
            "total_processing_time": number(minimum=0),
            "elapsed_seconds": number(minimum=0),
            "files": array(ref("BatchFile")),
            "cluster": ref("Cluster"),
        },
        description="One batch: progress, counts and per-file state",
    ),
    "BatchRetry": obj(
        {
            "success": boolean(enum=[True]),
            "batch_id": BATCH_ID,
            "retried": integer("Failed files queued again", minimum=0),
            "message": string(),
            **BATCH_LINKS,
        }
    ),
    "Health": obj(
        {
            "status": string(
                "ok, degraded (model service or storage) or down (database)",
                enum=["ok", "degraded", "down"],
            ),
            "service": string(enum=["aoi-inference-agent"]),
            "uptime_seconds": number(minimum=0),
            "limits": obj(
                {
                    "max_upload_mb": integer(),
                    "max_batch_files": integer(),
                    "supported_formats": array(string()),
                }
            ),
            "database": obj(
                {
                    "reachable": boolean(),
                    "backend": string("sqlite, mysql, …"),
                    "latency_ms": number(),
                    "error": string(),
                },
                optional=("latency_ms", "error"),
            ),
            "model_service": obj(
                {
                    "url": string(),
                    "reachable": boolean(),
                    "latency_ms": number(),
                    "error": string(),
                    "model_loaded": boolean(),
                    "device": nullable(string()),
                    "model_name": nullable(string()),
                    "current_model": nullable(string()),
                    "simulator": boolean("The bundled simulator, not the real model"),
                    "active_calls": integer(minimum=0),
                    "max_concurrent_calls": integer(minimum=1),
                    "breaker": obj(
                        {
                            "state": string(
                                "closed; open: uploads fail fast with 503 MODEL_UNAVAILABLE "
                                "without calling the model service; half_open: one probe "
                                "call is let through; disabled",
                                enum=["closed", "open", "half_open", "disabled"],
                            ),
                            "consecutive_failures": integer(minimum=0),
                            "threshold": integer(minimum=0),
                            "cooldown_seconds": number(minimum=0),
                            "retry_in_seconds": number(minimum=0),
                            "opened_total": integer(minimum=0),
                            "rejected_total": integer(minimum=0),
                        },
                        description="Circuit breaker in front of the model service",
                    ),
                },
                optional=("latency_ms", "error"),
            ),
            "storage": obj({"writable": boolean(), "free_bytes": nullable(integer())}),
            "cluster": ref("Cluster"),
        }
    ),
}


# ---- components.examples: the real sample answer -----------------------------------------

BASE_URL = "http://127.0.0.1:5000"
SAMPLE_ID = "20260224_173819_AB12CD"
SAMPLE_BATCH = "20260224_180002_Q7M3XK"
SAMPLE_TIME = "2026-02-24T17:38:19Z"
SAMPLE_MODEL = "nvidia/segformer-b2-aoi"
# The model's answer for tests/data/segformer_input.jpeg, per class:
# (class_id, total_area_pixels, regions); a region is (region_id, centroid x, y,
# bbox x, y, width, height, area, perimeter, major, minor, circularity, aspect ratio).
SAMPLE_CLASSES = {
    "PI_Particle": (
        1,
        213,
        [
            (1, 1655.904761904762, 1508.0, 1653, 1506, 7, 5, 14, 15.313708305358887,
             5.750073432922363, 3.9162988662719727, 0.750200171090617, 1.4682417326326294),
            (2, 1679.5074626865671, 1511.365671641791, 1674, 1506, 12, 12, 114,
             40.485281229019165, 13.842240333557129, 12.72724723815918, 0.8740180355817377,
             1.0876067758041932),
            (3, 1710.5714285714287, 1507.857142857143, 1702, 1506, 19, 5, 58, 39.31370830535889,
             18.6237850189209, 5.100595474243164, 0.47157398162293573, 3.6512962286397217),
            (4, 976.0, 1669.0, 976, 1669, 1, 1, 0, 0.0, 1.0, 1.0, 0.0, 1.0),
            (5, 969.8947368421053, 1682.7368421052631, 966, 1680, 10, 7, 27, 23.55634880065918,
             8.439270973205566, 5.43703556060791, 0.622768453566985, 1.5521824124803),
        ],
    ),
    "PR_Peeling": (
        2,
        649,
        [
            (1, 1773.5097765363128, 738.4441340782123, 1753, 706, 39, 61, 649,
             157.92388093471527, 66.02536010742188, 14.265690803527832, 0.32726035954525895,
             4.628262382575553),
        ],
    ),
    "Copper_Nodule": (
        3,
        4,
        [
            (1, 1138.090909090909, 717.3636363636364, 1136, 716, 6, 4, 4, 13.071067690849304,
             5.962521076202393, 2.891087293624878, 0.3309788558529266, 2.0623801603467036),
        ],
    ),
    "Env_Particle": (4, 0, []),
}  # fmt: skip


def sample_region(values):
    rid, cx, cy, bx, by, bw, bh, area, perimeter, major, minor, circ, aspect = values
    return {
        "region_id": rid,
        "centroid": {"x": cx, "y": cy},
        "bounding_box": {"x": bx, "y": by, "width": bw, "height": bh},
        "area_pixels": area,
        "perimeter": perimeter,
        "major_axis": major,
        "minor_axis": minor,
        "circularity": circ,
        "aspect_ratio": aspect,
    }


def sample_analysis():
    return {
        "image_shape": {"height": 1792, "width": 1792},
        "classes": {
            f"{class_id}_{name}": {
                "class_id": class_id,
                "total_regions": len(regions),
                "total_area_pixels": area,
                "regions": [sample_region(r) for r in regions],
            }
            for name, (class_id, area, regions) in SAMPLE_CLASSES.items()
        },
        "performance": {"processing_time_seconds": 0.6743, "timestamp": "2026-02-24 17:38:20"},
    }


def sample_class_rows(img_id=SAMPLE_ID):
    return [
        {
            "class_unique_id": f"{img_id}_{class_id}",
            "class_id": class_id,
            "class_name": name,
            "total_regions": len(regions),
            "total_area_pixels": area,
        }
        for name, (class_id, area, regions) in SAMPLE_CLASSES.items()
    ]


def sample_image_result(img_id=SAMPLE_ID, filename="segformer_input.jpeg", batch_id=None):
    return {
        "success": True,
        "img_unique_id": img_id,
        "filename": filename,
        "timestamp": SAMPLE_TIME,
        "processing_time_seconds": 0.6743,
        "total_defects": 7,
        "defect_classes": {"PI_Particle": 5, "PR_Peeling": 1, "Copper_Nodule": 1},
        "image_width": 1792,
        "image_height": 1792,
        "model": SAMPLE_MODEL,
        "batch_id": batch_id,
        "images": {
            kind: f"{BASE_URL}/download/image/{img_id}/{kind}"
            for kind in ("input", "combined", "mask", "overlay", "thumbnail")
        },
        "json_url": f"{BASE_URL}/download/json/{img_id}",
    }


def sample_paths(img_id=SAMPLE_ID):
    folder = f"results/20260224/{img_id}"
    return {
        "input_image_path": f"uploads/20260224/{img_id}_segformer_input.jpg",
        "result_image_1_path": f"{folder}/combined.png",
        "result_image_2_path": f"{folder}/mask.png",
        "result_image_3_path": f"{folder}/overlay.png",
        "analysis_json_path": f"{folder}/analysis.json",
        "thumbnail_path": f"{folder}/thumbnail.jpg",
    }


def sample_defect_row(name="PI_Particle", index=0):
    class_id, _, regions = SAMPLE_CLASSES[name]
    region = sample_region(regions[index])
    return {
        "region_unique_id": f"{SAMPLE_ID}_{class_id}_{region['region_id']}",
        "img_unique_id": SAMPLE_ID,
        "class_id": class_id,
        "class_name": name,
        **region,
        "timestamp": SAMPLE_TIME,
        "batch_id": None,
        "filename": "segformer_input.jpeg",
    }


def batch_links(batch_id=SAMPLE_BATCH):
    return {
        "status_url": f"{BASE_URL}/batches/{batch_id}",
        "download_url": f"{BASE_URL}/download/batch/{batch_id}",
    }


REJECTED_FILE = {
    "filename": "notes.txt",
    "success": False,
    "error": "The file is not a JPEG, PNG, TIFF or BMP image (checked by its content, not its "
    "name). Export the image in one of these formats and upload it again.",
    "code": "UNSUPPORTED_FORMAT",
}
BATCH_IMAGE = "20260224_180002_H2K9PL"


def sample_batch_progress():
    return {
        "batch_id": SAMPLE_BATCH,
        "status": "partial",
        "created_at": "2026-02-24T18:00:02Z",
        "started_at": "2026-02-24T18:00:02Z",
        "finished_at": "2026-02-24T18:00:03Z",
        "total_images": 2,
        "queued": 0,
        "processing": 0,
        "processed": 1,
        "failed": 1,
        "percent_done": 100.0,
        **batch_links(),
    }


def example(summary, value):
    return {"summary": summary, "value": value}


def build_examples():
    regions = {
        "success": True,
        "img_unique_id": SAMPLE_ID,
        "total_regions": 7,
        "classes": [
            {
                **row,
                "regions": [
                    {
                        "region_unique_id": f"{row['class_unique_id']}_{r[0]}",
                        **sample_region(r),
                    }
                    for r in SAMPLE_CLASSES[row["class_name"]][2]
                ],
            }
            for row in sample_class_rows()
        ],
    }
    history_image = {
        key: value
        for key, value in sample_image_result().items()
        if key not in ("success", "images", "json_url")
    }
    history_image.update(
        input_image_path=sample_paths()["input_image_path"],
        thumbnail_url=f"{BASE_URL}/download/image/{SAMPLE_ID}/thumbnail",
        detail_url=f"{BASE_URL}/images/{SAMPLE_ID}",
    )
    return {
        "AnalysisResults": example("analysis.json of the sample image", sample_analysis()),
        "UploadResult": example(
            "The sample image: 7 defects in 3 classes",
            {**sample_image_result(), "analysis_results": sample_analysis()},
        ),
        "ImageDetail": example(
            "The sample image",
            {
                **sample_image_result(),
                "created_at": SAMPLE_TIME,
                **sample_paths(),
                "purged_at": None,
                "files_missing_at": None,
                "classes": sample_class_rows(),
            },
        ),
        "ClassList": example(
            "The four classes of the sample image",
            {"success": True, "img_unique_id": SAMPLE_ID, "classes": sample_class_rows()},
        ),
        "Regions": example("All 7 regions of the sample image", regions),
        "Deleted": example(
            "Rows and files removed", {"success": True, "img_unique_id": SAMPLE_ID, "deleted": True}
        ),
        "HistoryPage": example(
            "First page, one image",
            {
                "success": True,
                "total": 1,
                "page": 1,
                "limit": 20,
                "pages": 1,
                "images": [history_image],
            },
        ),
        "DefectPage": example(
            "PI_Particle regions of the sample, largest first",
            {
                "success": True,
                "total": 5,
                "page": 1,
                "limit": 2,
                "pages": 3,
                "regions": [
                    sample_defect_row("PI_Particle", 1),
                    sample_defect_row("PI_Particle", 2),
                ],
            },
        ),
        "Stats": example(
            "One stored image (the sample)",
            {
                "success": True,
                "totals": {"images": 1, "regions": 7, "batches": 0},
                "processing_time": {"mean": 0.6743, "min": 0.6743, "max": 0.6743},
                "date_range": {"first": SAMPLE_TIME, "last": SAMPLE_TIME},
                "storage": {"bytes_used": 2490177},
                "classes": [
                    {
                        "class_id": class_id,
                        "class_name": name,
                        "images": 1 if regions else 0,
                        "regions": len(regions),
                        "area_pixels": area,
                    }
                    for name, (class_id, area, regions) in SAMPLE_CLASSES.items()
                ],
                "daily": [{"date": "2026-02-24", "images": 1, "defects": 7}],
                "window": {"start_date": "2026-02-24", "end_date": None},
            },
        ),
        "BatchResult": example(
            "Two files: the sample image and a text file",
            {
                "success": True,
                "batch_id": SAMPLE_BATCH,
                "status": "partial",
                "total_images": 2,
                "processed": 1,
                "failed": 1,
                "total_processing_time": 0.6743,
                **batch_links(),
                "results": [
                    {
                        "file_index": 0,
                        **sample_image_result(BATCH_IMAGE, "wafer_01.jpeg", SAMPLE_BATCH),
                        "analysis_results": sample_analysis(),
                    },
                    {"file_index": 1, **REJECTED_FILE},
                ],
            },
        ),
        "BatchAccepted": example(
            "Two files: one queued, one refused at once",
            {
                "success": True,
                "batch_id": SAMPLE_BATCH,
                "status": "queued",
                "total_images": 2,
                "accepted": 1,
                "rejected": 1,
                **batch_links(),
                "results": [
                    {"file_index": 0, "filename": "wafer_01.jpeg", "state": "queued"},
                    {"file_index": 1, "state": "failed", **REJECTED_FILE},
                ],
            },
        ),
        "BatchList": example(
            "One batch",
            {
                "success": True,
                "total": 1,
                "page": 1,
                "limit": 20,
                "pages": 1,
                "batches": [sample_batch_progress()],
            },
        ),
        "Batch": example(
            "A finished batch: one file done, one refused",
            {
                "success": True,
                **sample_batch_progress(),
                "total_processing_time": 0.6743,
                "elapsed_seconds": 1.0,
                "files": [
                    {
                        "file_index": 0,
                        "filename": "wafer_01.jpeg",
                        "state": "done",
                        "success": True,
                        "img_unique_id": BATCH_IMAGE,
                        "error": None,
                        "code": None,
                        "attempts": 1,
                        "started_at": "2026-02-24T18:00:02Z",
                        "finished_at": "2026-02-24T18:00:03Z",
                        "total_defects": 7,
                        "processing_time_seconds": 0.6743,
                        "retryable": False,
                    },
                    {
                        "file_index": 1,
                        **REJECTED_FILE,
                        "state": "failed",
                        "img_unique_id": None,
                        "attempts": 0,
                        "started_at": None,
                        "finished_at": "2026-02-24T18:00:02Z",
                        "total_defects": None,
                        "processing_time_seconds": None,
                        "retryable": False,
                    },
                ],
                "cluster": CLUSTER_EXAMPLE,
            },
        ),
        "BatchRetried": example(
            "Failed files queued again",
            {
                "success": True,
                "batch_id": SAMPLE_BATCH,
                "retried": 1,
                "message": "1 failed file(s) queued again.",
                **batch_links(),
            },
        ),
        "BatchNothingToRetry": example(
            "Nothing to retry",
            {
                "success": True,
                "batch_id": SAMPLE_BATCH,
                "retried": 0,
                "message": "No failed files with a stored input to retry.",
                **batch_links(),
            },
        ),
        "HealthOk": example("Everything works", health_example("ok")),
        "HealthDegraded": example("Model service down", health_example("degraded")),
        "HealthDown": example("Database down", health_example("down")),
    }


CLUSTER_EXAMPLE = {
    "mode": "distributed",
    "reachable": True,
    "model_slots": 4,
    "model_slots_in_use": 4,
    "queue_depth": 37,
    "taken_by_workers": 12,
}


def health_example(status):
    database = {"reachable": True, "backend": "mysql", "latency_ms": 0.8}
    model = {
        "url": "http://127.0.0.1:8080",
        "reachable": True,
        "latency_ms": 3.1,
        "model_loaded": True,
        "device": "cuda",
        "model_name": SAMPLE_MODEL,
        "current_model": "segformer",
        "simulator": False,
        "active_calls": 0,
        "max_concurrent_calls": 4,
        "breaker": {
            "state": "closed",
            "consecutive_failures": 0,
            "threshold": 3,
            "cooldown_seconds": 15.0,
            "retry_in_seconds": 0.0,
            "opened_total": 0,
            "rejected_total": 0,
        },
    }
    if status == "degraded":
        model = {
            **model,
            "reachable": False,
            "error": "ConnectionError: connection refused",
            "model_loaded": False,
            "device": None,
            "model_name": None,
            "current_model": None,
            "breaker": {
                **model["breaker"],
                "state": "open",
                "consecutive_failures": 3,
                "retry_in_seconds": 11.4,
                "opened_total": 1,
                "rejected_total": 5,
            },
        }
        del model["latency_ms"]
    if status == "down":
        database = {
            "reachable": False,
            "backend": "mysql",
            "error": "(2003, \"Can't connect to MySQL server on '127.0.0.1'\")",
        }
    return {
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
        "cluster": CLUSTER_EXAMPLE,
    }


# ---- components.responses: the error answers -------------------------------------------


def error_example(code, message, details=None):
    body = {"success": False, "error": message, "code": code}
    if details:
        body["details"] = details
    return body


def error_response(description, *cases, headers=None):
    """An error answer; each case is (code, summary, message[, details])."""
    examples = {}
    for code, summary, *rest in cases:
        key = code if code not in examples else f"{code}_{len(examples) + 1}"
        examples[key] = example(summary, error_example(code, *rest))
    response = {
        "description": description,
        "content": {"application/json": {"schema": ref("Error"), "examples": examples}},
    }
    if headers:
        response["headers"] = headers
    return response


HOW_TO_SEND = (
    "Send it in the X-API-Key header (curl -H 'X-API-Key: <key>') or as "
    "'Authorization: Bearer <key>'."
)
MODEL_URL = "http://127.0.0.1:8080"
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
}
INVALID_PAGE = (
    "INVALID_PARAMETER",
    "A parameter out of range",
    "Invalid request parameters — page: must be a whole number from 1 to 1000000",
    {"fields": {"page": ["must be a whole number from 1 to 1000000"]}},
)
CLASS_CHOICES = ", ".join(CLASS_NAMES)
UNKNOWN_CLASS = (
    "INVALID_PARAMETER",
    "An unknown class name",
    f"Invalid request parameters — class_name: must be one of {CLASS_CHOICES}",
    {"fields": {"class_name": [f"must be one of {CLASS_CHOICES}"]}},
)
IMAGE_NOT_FOUND = (
    "IMAGE_NOT_FOUND",
    "Unknown id",
    f"No image with id '{SAMPLE_ID}'. Check the id, or list images with GET /images.",
)
RESPONSES = {
    "HtmlPage": {
        "description": "The HTML page; its script fills it from the JSON API",
        "headers": {
            "Content-Security-Policy": {
                "description": "Only this server's own scripts, styles and images",
                "schema": {"type": "string"},
            }
        },
        "content": {
            "text/html": {
                "schema": {"type": "string"},
                "example": '<!DOCTYPE html><html lang="en">…</html>',
            }
        },
    },
    "InvalidParameter": error_response(
        "Bad query parameter: the message names each field and the accepted values",
        INVALID_PAGE,
    ),
    "InvalidFilter": error_response(
        "Bad query parameter: the message names each field and the accepted values",
        INVALID_PAGE,
        UNKNOWN_CLASS,
    ),
    "UploadRejected": error_response(
        "The upload was refused; nothing was stored",
        (
            "NO_FILE",
            "No file in the form",
            "No file in field 'image'. Send the image as multipart/form-data field 'image' "
            "(curl: -F image=@wafer.jpg).",
        ),
        ("UNSUPPORTED_FORMAT", "Not an image", REJECTED_FILE["error"]),
        (
            "EMPTY_FILE",
            "An empty file",
            "The file is empty (0 bytes). Choose a non-empty image file.",
        ),
        (
            "INVALID_PARAMETER",
            "A bad option",
            "Invalid request parameters — include_images: Not a valid boolean.",
            {"fields": {"include_images": ["Not a valid boolean."]}},
        ),
    ),
    "BatchRejected": error_response(
        "The batch was refused as a whole; nothing was stored",
        (
            "NO_FILES",
            "No file in the form",
            "No files in field 'images'. Send each image as a multipart/form-data field "
            "'images' (curl: -F images=@a.jpg -F images=@b.jpg).",
        ),
        (
            "TOO_MANY_FILES",
            "Over the per-batch limit",
            "501 files sent; a batch takes at most 500. Split it into several batches.",
            {"max_batch_files": 500, "received": 501},
        ),
        (
            "INVALID_PARAMETER",
            "A bad option",
            "Invalid request parameters — async: Not a valid boolean.",
            {"fields": {"async": ["Not a valid boolean."]}},
        ),
    ),
    "Unauthorized": error_response(
        "API keys are configured and the request carries no valid one",
        (
            "AUTH_REQUIRED",
            "No key sent",
            f"This endpoint needs an API key. {HOW_TO_SEND} Ask the administrator for a key.",
        ),
        (
            "AUTH_INVALID",
            "Wrong key",
            "The API key is not valid. Check it for typos or ask the administrator for a "
            f"current key. {HOW_TO_SEND}",
        ),
        headers={
            "WWW-Authenticate": {
                "description": 'The scheme: `Bearer realm="AOI Inference Agent"`',
                "schema": {"type": "string"},
            }
        },
    ),
    "SignatureInvalid": error_response(
        "The link's signature is wrong or expired (and no valid API key was sent)",
        (
            "SIGNATURE_INVALID",
            "A changed link",
            "The link's signature is not valid (it was changed, or it belongs to another "
            "file). Get a fresh link from the API (e.g. GET /images/<id>), or send your API "
            f"key instead. {HOW_TO_SEND}",
        ),
        (
            "SIGNATURE_EXPIRED",
            "An old link",
            "This download link has expired. Get a fresh link from the API (e.g. GET "
            "/images/<id> or GET /batches/<id>), or send your API key instead.",
            {"expired_at": 1771958340},
        ),
    ),
    "ImageNotFound": error_response("No image with this id", IMAGE_NOT_FOUND),
    "BatchNotFound": error_response(
        "No batch with this id",
        (
            "BATCH_NOT_FOUND",
            "Unknown id",
            f"No batch with id '{SAMPLE_BATCH}'. List batches with GET /batches.",
        ),
    ),
    "ImagesPurged": error_response(
        "Retention purged the image's files (`flask aoi cleanup`); its rows stay readable",
        (
            "IMAGES_PURGED",
            "Files deleted by retention",
            f"images purged by retention on 2026-05-25T02:00:00Z: the input and result files "
            f"of image {SAMPLE_ID} were deleted to free space. Its classes and regions are "
            f"still available (GET /images/{SAMPLE_ID}/regions).",
            {"img_unique_id": SAMPLE_ID, "purged_at": "2026-05-25T02:00:00Z"},
        ),
    ),
    "FileNotFound": error_response(
        "No image with this id, or its file is gone from storage",
        IMAGE_NOT_FOUND,
        (
            "FILE_MISSING",
            "The file was removed from disk",
            f"The overlay file of image {SAMPLE_ID} is missing from storage. Run `flask aoi "
            "fsck` or ask the administrator to restore it from backup.",
        ),
    ),
    "PayloadTooLarge": error_response(
        "A file, or the whole request, is over the size limit; nothing was stored",
        (
            "FILE_TOO_LARGE",
            "A file over the per-file limit",
            "wafer.tif is larger than 50 MB. Reduce its size, then upload again.",
        ),
        (
            "PAYLOAD_TOO_LARGE",
            "The request body over the limit",
            "The request body is too large. Send files of at most 50 MB each.",
        ),
    ),
    "DatabaseError": error_response(
        "The database refused the write; nothing was stored",
        (
            "DATABASE_ERROR",
            "Write refused",
            "The database refused the write; nothing was stored. Try again; if it persists, "
            "report it with the time of the request.",
        ),
    ),
    "ModelError": error_response(
        "The model service answered an error or something unusable; nothing was stored",
        (
            "MODEL_BAD_RESPONSE",
            "A malformed answer",
            "The model service sent an answer the agent cannot use: the answer is not a JSON "
            "object. Nothing was stored. Try again; if it persists, check the model service.",
            {"reason": "the answer is not a JSON object"},
        ),
        (
            "MODEL_ERROR",
            "The model failed",
            "The model service answered HTTP 500: no message. Check the image, or the model "
            "service's log if it persists.",
            {"model_status": 500, "model_service_error": ""},
        ),
    ),
    "Unavailable": error_response(
        "The model service is unreachable or has no model loaded, every model slot is busy, "
        "or the database is down; nothing was stored. Try again after Retry-After seconds.",
        (
            "MODEL_UNAVAILABLE",
            "The model service is unreachable",
            f"The model service at {MODEL_URL} cannot be reached (after 3 attempt(s)). Check "
            "that it is running and that AOI_MODEL_SERVICE_URL points to it, then try again.",
            {"model_service_url": MODEL_URL, "reason": "ConnectionError"},
        ),
        (
            "MODEL_UNAVAILABLE",
            "The circuit breaker is open after 3 failures in a row",
            f"The model service at {MODEL_URL} failed 3 times in a row (connection errors or "
            "timeouts); the agent stops calling it for 15 s. Try again in 12 s; queries and "
            "downloads keep working meanwhile.",
            {"model_service_url": MODEL_URL, "breaker": "open"},
        ),
        (
            "MODEL_NOT_LOADED",
            "No model loaded",
            "The model service has no model loaded (it may be starting or switching models). "
            "Try again in a minute.",
        ),
        (
            "MODEL_BUSY",
            "All model slots busy",
            "All 4 model slots are busy. Try again shortly, or send many images as one batch "
            "(POST /upload/batch), which queues them.",
        ),
        (
            "DATABASE_UNAVAILABLE",
            "The database is down",
            "The database is not reachable right now; nothing was stored. Try again in a "
            "moment; if it persists, check the database server (see /health).",
        ),
        headers=RETRY_AFTER,
    ),
    "DatabaseUnavailable": error_response(
        "The database is not reachable (writes store nothing); try again after Retry-After "
        "seconds. The agent reconnects by itself.",
        (
            "DATABASE_UNAVAILABLE",
            "The database is down",
            "The database is not reachable right now. Try again in a moment; if it persists, "
            "check the database server (see /health).",
        ),
        (
            "DATABASE_UNAVAILABLE",
            "The database went down during a write",
            "The database is not reachable right now; nothing was stored. Try again in a "
            "moment; if it persists, check the database server (see /health).",
        ),
        headers=RETRY_AFTER,
    ),
    "ModelTimeout": error_response(
        "The model service did not answer in time; nothing was stored",
        (
            "MODEL_TIMEOUT",
            "A read timeout",
            "The model service did not answer within 120 s (after 3 attempt(s)). It may be "
            "overloaded; try again later or raise AOI_MODEL_READ_TIMEOUT.",
            {"model_service_url": MODEL_URL},
        ),
    ),
    "StorageError": error_response(
        "Result files could not be written to disk; nothing was stored",
        (
            "STORAGE_ERROR",
            "The disk is full",
            "Files could not be written to disk (No space left on device). Check free space "
            "and permissions of the storage folder; nothing was stored.",
        ),
    ),
}


# ---- components.parameters -------------------------------------------------------------


def parameter(name, where, schema, description, *, required=False, example=None):
    param = {
        "name": name,
        "in": where,
        "required": required or where == "path",
        "description": description,
        "schema": schema,
    }
    if example is not None:
        param["example"] = example
    return param


DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$"
PARAMETERS = {
    "ImgId": parameter(
        "img_id",
        "path",
        string(maxLength=255),
        "Image id (`img_unique_id`) as returned by POST /upload or GET /images",
        example=SAMPLE_ID,
    ),
    "BatchId": parameter(
        "batch_id",
        "path",
        string(maxLength=64),
        "Batch id as returned by POST /upload/batch or GET /batches",
        example=SAMPLE_BATCH,
    ),
    "Page": parameter(
        "page", "query", integer(minimum=1, maximum=1_000_000, default=1), "Page, from 1"
    ),
    "Limit": parameter(
        "limit", "query", integer(minimum=1, maximum=500, default=20), "Rows per page, 1–500"
    ),
    "StartDate": parameter(
        "start_date",
        "query",
        string(pattern=DATE_PATTERN),
        "From this moment on (inclusive): a date `2026-02-24` or an ISO 8601 datetime "
        "`2026-02-24T10:30:00Z` (years 1900–9998); times without an offset are UTC",
        example="2026-02-24",
    ),
    "EndDate": parameter(
        "end_date",
        "query",
        string(pattern=DATE_PATTERN),
        "Up to this moment (inclusive); a bare date means the whole day",
        example="2026-02-24",
    ),
    "ClassName": parameter(
        "class_name",
        "query",
        string(enum=list(CLASS_NAMES)),
        "Only this defect class",
    ),
    "BatchFilter": parameter(
        "batch_id", "query", string(maxLength=64), "Only images of this batch"
    ),
    "Expires": parameter(
        "expires",
        "query",
        integer(minimum=0),
        "Signed links only: expiry of the link, Unix time. The API adds it (with "
        "`signature`) to every download URL it hands out while API keys are configured, so "
        "the link works without a key header.",
    ),
    "Signature": parameter(
        "signature",
        "query",
        string(pattern="^[0-9a-f]{64}$"),
        "Signed links only: HMAC-SHA256 of the path and `expires` (hex)",
    ),
}


# ---- the template and the Flasgger configuration -------------------------------------------

TAGS = [
    ("upload", "Send images to the model service and store the results"),
    (
        "images",
        "Images and queries: stored results, their classes and regions, region search "
        "and statistics",
    ),
    ("batches", "Progress of batch uploads, retries, the batch list"),
    ("download", "Stored inputs, result images, analysis JSON and batch ZIPs, byte for byte"),
    ("system", "Health of the agent and everything it depends on; the docs"),
    ("ui", "Web pages for QC engineers (HTML; each page's script calls the JSON API)"),
]

DESCRIPTION = """\
Sends AOI wafer images to the SegFormer model service, stores every result
(analysis JSON, combined / mask / overlay images) and lets you find, view and
download them later.

**Errors** have one shape everywhere (404, 405, 413 and unexpected 500s too):
`{"success": false, "error": "<what to do>", "code": "UPPER_SNAKE", "details": {…}}`.
Model service unreachable or not loaded → 503 with `Retry-After`; model timeout →
504; malformed model answer → 502; bad input → 400; too large → 413; bad or
missing API key → 401.

**API keys**: when the administrator configured keys, every API route needs one
as `X-API-Key: <key>` or `Authorization: Bearer <key>` (button *Authorize*).
Health, these docs, the web pages and static files stay open.

**Times** are UTC, ISO 8601 with `Z`. Try it out: upload
`tests/data/segformer_input.jpeg` with POST /upload.
"""


def build_template(title):
    return {
        "info": {"title": title, "version": "1.0.0", "description": DESCRIPTION},
        "servers": [{"url": "/", "description": "This agent"}],
        "tags": [{"name": name, "description": text} for name, text in TAGS],
        "security": [{"ApiKeyHeader": []}, {"BearerAuth": []}],
        "components": {
            "schemas": copy.deepcopy(SCHEMAS),
            "responses": copy.deepcopy(RESPONSES),
            "parameters": copy.deepcopy(PARAMETERS),
            "examples": build_examples(),
            "securitySchemes": {
                "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "BearerAuth": {"type": "http", "scheme": "bearer"},
            },
        },
    }


def documented(rule):
    """Rules that belong in the spec: everything but static files and Flasgger's own."""
    return rule.endpoint != "static" and not rule.endpoint.startswith("flasgger.")


def swagger_config(app):
    return {
        "openapi": "3.0.3",
        "uiversion": 3,
        "title": app.config.get("SWAGGER_TITLE", "AOI Inference Agent API"),
        "specs": [
            {
                "endpoint": "apispec",
                "route": "/apispec.json",
                "rule_filter": documented,
                "model_filter": lambda tag: True,
            }
        ],
        "specs_route": "/apidocs/",
        "static_url_path": "/flasgger_static",
        "headers": [],
        "doc_expansion": "list",
        # Rendered into the page's script as-is: without it the page runs `initOAuth(None)`.
        "auth": {},
        "ui_params": {
            "displayRequestDuration": True,
            "defaultModelsExpandDepth": 0,
            "showCommonExtensions": True,
        },
        **app.config.get("SWAGGER", {}),
    }


def keep_text(text):
    """Docstring summaries and descriptions go to the spec as Markdown, unchanged."""
    return text.strip() if text else text


@bp.get("/docs")
def docs():
    """Redirect to the Swagger UI.

    The interactive API documentation lives at /apidocs/ (Flasgger); the
    OpenAPI 3 spec it shows is at /apispec.json.
    ---
    tags: [system]
    operationId: docs
    security: []
    responses:
      302:
        description: Redirect to /apidocs/
        headers:
          Location:
            description: The Swagger UI
            required: true
            schema: {type: string}
        content:
          text/html:
            schema: {type: string}
            example: <a href="/apidocs/">/apidocs/</a>
    """
    return redirect(url_for("flasgger.apidocs"))


def docs_headers(response):
    if request.blueprint == "flasgger" and response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", DOCS_CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def register_apidocs(app):
    """Swagger UI at /apidocs/, the OpenAPI 3 spec at /apispec.json, /docs → /apidocs/."""
    config = swagger_config(app)
    app.config["SWAGGER"] = config
    Swagger(app, config=config, template=build_template(config["title"]), sanitizer=keep_text)
    app.register_blueprint(bp)
    app.after_request(docs_headers)
