"""One simulated model run: bytes in, the contract's upload answer out."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from .analysis import CLASS_KEYS, Analysis, analyse
from .filing import CallFiles
from .imaging import decode_image
from .render import answer_images, render_answer_pngs


@dataclass
class ModelCall:
    """One image to analyse, where its files go, and the service-time rules.

    ``started`` is a time.perf_counter() value taken when the request began,
    so processing_time covers the whole service time. ``sleep(seconds)`` is
    injected so a shutting-down server can cut waits short.
    """

    data: bytes
    filename: str
    files: CallFiles
    started: float
    latency: float
    collision_delay: float
    sleep: object


def run_model(call: ModelCall) -> dict:
    """Save, read back, analyse, save and read back results, like the real service.

    What is analysed and returned is what is on disk at the moment of reading,
    so a same-named call in the same second can have replaced it.
    """
    try:
        call.files.save_input(call.data)
        pause(call)
        decoded = decode_image(call.files.read_input())
        analysis = analyse(decoded.gray)
        call.files.save_results(render_answer_pngs(decoded.display_rgb, analysis))
        pause(call)
        images = answer_images(call.files.read_results())
    finally:
        call.files.clean_up()
    remaining = call.latency - (time.perf_counter() - call.started)
    if remaining > 0:
        call.sleep(remaining)
    processing_time = time.perf_counter() - call.started
    return {
        "success": True,
        "filename": call.filename,
        **images,
        "total_defects": len(analysis.regions),
        "processing_time": processing_time,
        "analysis_results": analysis_results(analysis, processing_time),
        "timestamp": call.files.stamp,
    }


def pause(call: ModelCall) -> None:
    if call.collision_delay > 0:
        call.sleep(call.collision_delay)


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
