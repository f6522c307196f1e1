"""Review and traceability in the UI (issue #16), in real headless Chromium: a lot is
found by its metadata in History, its regions are reviewed from the keyboard on the
Result page, "next unreviewed image" walks the lot, and the Statistics page shows the
false-call rate those reviews imply. Fixtures: tests/test_ui_browser.py."""

import re

import requests
from test_ui_browser import (  # noqa: F401  (fixtures)
    app_settings,
    browser,
    expect,
    live,
    page,
    save_screenshot,
    session,
    simulator,
)
from ui_support import defect_board

LOT = {"lot_id": "LOT-R7", "wafer_id": "W03", "tool_id": "AOI-1", "operator": "Lin Mei"}


def upload_traced(server, data, name, **fields):
    response = requests.post(
        f"{server.url}/upload", files={"image": (name, data)}, data=fields, timeout=30
    )
    assert response.status_code == 201, response.text
    return response.json()


def region_boxes(server, img_id):
    body = requests.get(f"{server.url}/images/{img_id}/regions", timeout=10).json()
    return {r["region_unique_id"]: r["bounding_box"] for c in body["classes"] for r in c["regions"]}


def test_review_a_lot_with_the_keyboard_and_see_the_false_call_rate(page, live):  # noqa: F811
    first = upload_traced(live, defect_board(shift=0), "first.png", **LOT)
    second = upload_traced(live, defect_board(shift=2), "second.png", **LOT)
    upload_traced(live, defect_board(shift=4), "other.png", lot_id="LOT-X", tool_id="AOI-2")
    assert first["total_defects"] >= 4 and second["total_defects"] >= 1

    # History: the lot is found by its id, each card says lot / wafer / tool.
    page.goto("/history")
    page.fill("#f-lot_id", LOT["lot_id"])
    page.click("#history-filters button[type=submit]")
    expect(page.locator("#gallery-total")).to_have_text("2")
    card = page.locator(f"#gallery li[data-img-id='{first['img_unique_id']}']")
    expect(card.locator(".trace-ref")).to_have_text(
        "Lot LOT-R7 · Wafer W03 · Tool AOI-1 · Operator Lin Mei"
    )
    card.locator("a.result-card").click()
    expect(page).to_have_url(re.compile(rf"/results/{first['img_unique_id']}\?lot_id=LOT-R7"))

    # Result page: metadata, then review from the keyboard.
    expect(page.locator("#result-viewer")).to_have_attribute("data-state", "ready")
    expect(page.locator("#r-trace [data-field=tool_id] dd")).to_have_text("AOI-1")
    total = first["total_defects"]
    progress = page.locator("#review-progress")
    expect(progress).to_have_text(f"0 / {total} reviewed")
    page.keyboard.press("r")
    bar = page.locator("#review-bar")
    expect(bar).to_have_attribute("data-active", "true")
    boxes = region_boxes(live, first["img_unique_id"])
    rows = page.locator("#regions-body tr")
    order = rows.evaluate_all("trs => trs.map(tr => tr.dataset.regionUniqueId)")

    def current_is(index):
        expect(bar).to_have_attribute("data-region", order[index])
        box = boxes[order[index]]
        mark = page.locator("#result-viewer .mark").first
        expect(mark).to_have_attribute(
            "data-box", f"{box['x']},{box['y']},{box['width']},{box['height']}"
        )
        expect(page.locator("#review-current")).to_contain_text(f"Region {index + 1} of {total}")

    current_is(0)
    page.keyboard.press("t")
    expect(progress).to_have_text(f"1 / {total} reviewed")
    current_is(1)
    page.keyboard.press("f")
    expect(progress).to_have_text(f"2 / {total} reviewed")
    page.keyboard.press("f")
    expect(progress).to_have_text(f"3 / {total} reviewed")
    current_is(3)
    page.keyboard.press("k")  # back to the third region, which becomes a nuisance
    current_is(2)
    page.keyboard.press("n")
    current_is(3)
    expect(progress).to_have_text(f"3 / {total} reviewed")
    # The change saves in the background: wait for the row before reading them all.
    expect(rows.nth(2)).to_have_attribute("data-disposition", "nuisance")
    dispositions = rows.evaluate_all("trs => trs.map(tr => tr.dataset.disposition)")
    assert dispositions[:4] == ["true_defect", "false_call", "nuisance", "unreviewed"]
    expect(rows.nth(1).locator(".disposition")).to_have_text("False call")
    save_screenshot(page, "page-result-review")

    log = requests.get(f"{live.url}/images/{first['img_unique_id']}/review-log", timeout=10)
    entries = log.json()["entries"]
    assert [(e["region_unique_id"], e["new"]["disposition"]) for e in entries] == [
        (order[0], "true_defect"),
        (order[1], "false_call"),
        (order[2], "false_call"),
        (order[2], "nuisance"),
    ]
    assert entries[3]["old"]["disposition"] == "false_call"
    assert {e["changed_by"] for e in entries} == {"anonymous"}

    # Next unreviewed image of the lot (walk scope: the history filter it came from).
    expect(page.locator("#review-scope")).to_have_value("url")
    page.keyboard.press("Shift+J")
    expect(page).to_have_url(re.compile(rf"/results/{second['img_unique_id']}\?review=1"))
    expect(page.locator("#review-bar")).to_have_attribute("data-active", "true")
    expect(page.locator("#review-progress")).to_have_text(f"0 / {second['total_defects']} reviewed")
    for _ in range(second["total_defects"]):
        page.keyboard.press("t")
    expect(page.locator("#review-progress")).to_have_text(
        f"{second['total_defects']} / {second['total_defects']} reviewed"
    )
    page.click("#review-next-image")  # all reviewed: marked, then back to the first
    expect(page).to_have_url(re.compile(rf"/results/{first['img_unique_id']}\?review=1"))
    marked = requests.get(f"{live.url}/images/{second['img_unique_id']}", timeout=10).json()
    assert marked["reviewed_at"] and marked["reviewed_by"] == "anonymous"

    # Statistics: the false-call rate the reviews imply, per tool.
    reviewed = 3 + second["total_defects"]
    page.goto("/statistics?all=1&lot_id=LOT-R7&group_by=tool_id")
    expect(page.locator("#q-reviewed")).to_have_text(str(reviewed))
    expect(page.locator("#q-false")).to_have_text(f"{100 / reviewed:.1f}%")
    group = page.locator("#groups-body tr[data-key='AOI-1']")
    expect(group.locator("[data-role=false-call-rate]")).to_have_text(f"{100 / reviewed:.1f}%")
    expect(page.locator("#groups-body tr")).to_have_count(1)  # LOT-X's tool filtered out
    expect(page.locator("#s-images")).to_have_text("2")
    expect(page.locator("#q-tool tr[data-key='AOI-1'] td").nth(2)).to_have_text("1")
    save_screenshot(page, "page-statistics-review")


def test_upload_form_sends_traceability_and_batch_page_shows_it(page, live):  # noqa: F811
    page.goto("/")
    page.locator(".trace-details summary").click()
    page.fill("#u-lot_id", "LOT-U1")
    page.fill("#u-tool_id", "AOI-5")
    page.click("[data-mode=batch]")
    page.set_input_files(
        "#file-input",
        files=[
            {"name": f"b{i}.png", "mimeType": "image/png", "buffer": defect_board(shift=i)}
            for i in range(2)
        ],
    )
    with page.expect_response(lambda r: "/upload/batch" in r.url) as info:
        page.keyboard.press("Control+Enter")
    batch_id = info.value.json()["batch_id"]
    monitor = page.locator("#batch-monitor")
    expect(monitor).to_have_attribute("data-status", "done")
    expect(monitor.locator("[data-role=trace]")).to_have_text("Lot LOT-U1 · Tool AOI-5")
    page.goto(f"/batch/{batch_id}")
    expect(page.locator("#batch-monitor [data-role=trace]")).to_have_text("Lot LOT-U1 · Tool AOI-5")
    found = requests.get(f"{live.url}/images", params={"tool_id": "AOI-5"}, timeout=10).json()
    assert found["total"] == 2 and {i["lot_id"] for i in found["images"]} == {"LOT-U1"}
