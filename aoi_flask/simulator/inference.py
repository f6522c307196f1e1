"""One simulated model run: bytes in, the contract's upload answer out."""

from __future__ import annotations

import time
from datetime import datetime

from .analysis import CLASS_KEYS, Analysis, analyse
from .imaging import decode_image
from .render import render_answer_images


def run_model(data: bytes, filename: str, started: float, latency: float, sleep) -> dict:
    """Analyse and render one image; pad the service time up to ``latency``.

    ``started`` is a time.perf_counter() value taken when the request began,
    so processing_time covers the whole service time. ``sleep(seconds)`` is
    injected so a shutting-down server can cut the wait short.
    """
    decoded = decode_image(data)
    analysis = analyse(decoded.gray)
    images = render_answer_images(decoded.display_rgb, analysis)
    remaining = latency - (time.perf_counter() - started)
    if remaining > 0:
        sleep(remaining)
    processing_time = time.perf_counter() - started
    results = analysis_results(analysis, processing_time)
    return {
        "success": True,
        "filename": filename,
        **images,
        "total_defects": len(analysis.regions),
        "processing_time": processing_time,
        "analysis_results": results,
        "timestamp": datetime.now().strftime("%Y%m%d_%H%M%S"),
    }


def analysis_results(analysis: Analysis, processing_time: float) -> dict:
    return {
        "image_shape": {"height": analysis.height, "width": analysis.width},
        "classes": class_summaries(analysis),
        "performance": {
            "processing_time_seconds": round(processing_time, 4),
            "timestamp": datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
        },
    }


def class_summaries(analysis: Analysis) -> dict:
    summaries = {}
    for class_index, key in enumerate(CLASS_KEYS):
        members = [r for r in analysis.regions if r.class_index == class_index]
        regions = [
            {"region_id": region_id, **region.measurements}
            for region_id, region in enumerate(members, 1)
        ]
        summaries[key] = {
            "class_id": class_index + 1,
            "total_regions": len(regions),
            "total_area_pixels": sum(r["area_pixels"] for r in regions),
            "regions": regions,
        }
    return summaries
