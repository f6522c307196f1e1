"""The UI in a real headless Chromium (Debian's /usr/bin/chromium, Playwright's
sync API): the live app on a loopback port, talking to the model-service
simulator on another loopback port. Every request the pages make is recorded
and must stay on 127.0.0.1; a failing test leaves a screenshot in
test-reports/screenshots/, and passing tests leave one of each page for review."""

import io
import re
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from PIL import Image
from ui_support import LiveServer, defect_board

from aoi_flask.simulator import SimulatorOptions, serve_in_thread

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(
        f"{CHROMIUM} is missing (apt-get install chromium); browser tests skipped",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")
expect = sync_api.expect

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-reports" / "screenshots"
XSS_NAME = "<img src=x onerror=alert(1)>.png"
API_KEY = "ui-browser-test-key-0123456789"
TIMEOUT_MS = 15_000
READOUT = re.compile(r"x (\d+) · y (\d+) · grey (\d+)")


# ---- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulator():
    handle = serve_in_thread(SimulatorOptions())
    yield handle
    handle.shutdown()


@pytest.fixture(scope="module")
def browser():
    playwright = sync_api.sync_playwright().start()
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()
    playwright.stop()


@pytest.fixture
def app_settings():
    """Extra settings for the live app (a test may override this fixture's result)."""
    return {}


@pytest.fixture
def live(make_app, simulator, app_settings):
    """The real app, served on a free loopback port, using the simulator."""
    simulator.options.update({"failure_rate": 0.0, "latency": 0.0})
    server = LiveServer(make_app(**{"MODEL_SERVICE_URL": simulator.url, **app_settings}))
    yield server
    server.shutdown()


class Session:
    """One browser context: its page plus everything it did."""

    def __init__(self, context, live):
        self.context = context
        self.live = live
        self.requests = []
        self.dialogs = []
        self.errors = []
        self.console_errors = []
        self.allowed_console = [re.compile("status of 404")]
        context.on("request", lambda request: self.requests.append(request.url))
        self.page = context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.on("dialog", self._on_dialog)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on(
            "console",
            lambda message: message.type == "error" and self.console_errors.append(message.text),
        )

    def _on_dialog(self, dialog):
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def off_machine_requests(self):
        return [url for url in self.requests if urlsplit(url).hostname != "127.0.0.1"]

    def unexpected_console_errors(self):
        return [
            text
            for text in self.console_errors
            if not any(pattern.search(text) for pattern in self.allowed_console)
        ]


@pytest.fixture
def session(browser, live, request):
    context = browser.new_context(
        base_url=live.url,
        viewport={"width": 1400, "height": 1000},
        accept_downloads=True,
        reduced_motion="reduce",  # no transitions: screenshots show the final state
    )
    state = Session(context, live)
    failed_before = request.session.testsfailed
    yield state
    failed = request.session.testsfailed > failed_before
    if failed:
        save_screenshot(state.page, request.node.name)
    context.close()
    if not failed:
        # Checked for every test: nothing left the machine, no script broke, no alert().
        assert state.off_machine_requests() == []
        assert state.errors == []
        assert state.unexpected_console_errors() == []
        assert state.dialogs == []


@pytest.fixture
def page(session):
    return session.page


def save_screenshot(page, name):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^\w.-]+", "_", name)
    try:
        page.screenshot(path=str(SCREENSHOTS / f"{safe}.png"), full_page=True)
    except Exception as exc:  # a crashed page must not hide the test's own failure
        print(f"screenshot of {name} failed: {exc}")


# ---- helpers --------------------------------------------------------------------------


def api_upload(live, data, name="board.png", headers=None):
    response = requests.post(
        f"{live.url}/upload", files={"image": (name, data)}, headers=headers, timeout=30
    )
    assert response.status_code == 201, response.text
    return response.json()


def mask_colour_at(mask, region):
    """The mask colour of a region: at its centroid, else the commonest painted pixel
    of its bounding box (a ring's centroid can fall outside it)."""
    x, y = round(region["centroid"]["x"]), round(region["centroid"]["y"])
    colour = mask.getpixel((x, y))
    if colour != (0, 0, 0):
        return colour
    box = region["bounding_box"]
    crop = mask.crop((box["x"], box["y"], box["x"] + box["width"], box["y"] + box["height"]))
    painted = [(n, c) for n, c in crop.getcolors(maxcolors=1 << 20) if c != (0, 0, 0)]
    return max(painted)[1]


def stage_box(page, viewer):
    return page.locator(f"{viewer} [data-role=stage]").bounding_box()


# ---- analyse page: single image ---------------------------------------------------------


def test_single_upload_shows_the_result_with_true_legend_colours(page, live):
    page.goto("/")
    expect(page.locator("#st-state")).to_have_text("Model service up")
    expect(page.locator("#st-sim")).to_be_visible()  # the simulator is labelled as such
    expect(page.locator("#service-sim")).to_be_visible()
    expect(page.locator("#st-size")).to_have_text("50 MB per file")

    page.set_input_files(
        "#file-input",
        files=[{"name": "board.png", "mimeType": "image/png", "buffer": defect_board()}],
    )
    expect(page.locator("#file-items li")).to_have_count(1)
    with page.expect_response(
        lambda r: r.url.endswith("/upload") and r.request.method == "POST"
    ) as answer_info:
        page.keyboard.press("Control+Enter")
    answer = answer_info.value.json()
    assert answer_info.value.status == 201

    expect(page.locator("#single-result")).to_be_visible()
    expect(page.locator("#single-total")).to_have_text(str(answer["total_defects"]))
    expect(page.locator("#single-size")).to_have_text(
        f"{answer['image_width']} × {answer['image_height']}"
    )
    expect(page.locator("#single-detail-link")).to_have_attribute(
        "href", f"/results/{answer['img_unique_id']}"
    )
    expect(page.locator("#single-viewer")).to_have_attribute("data-state", "ready")
    expect(page.locator("#banner")).to_be_visible()

    # The legend's swatches are the mask's own colours at each region.
    legend = dict(
        page.eval_on_selector_all(
            "#single-legend .legend-row",
            "rows => rows.map(r => [r.dataset.className,"
            " getComputedStyle(r.querySelector('.swatch')).backgroundColor])",
        )
    )
    mask = Image.open(io.BytesIO(requests.get(answer["images"]["mask"], timeout=10).content))
    mask = mask.convert("RGB")
    regions = requests.get(f"{live.url}/images/{answer['img_unique_id']}/regions", timeout=10)
    seen = set()
    for cls in regions.json()["classes"]:
        for region in cls["regions"]:
            red, green, blue = mask_colour_at(mask, region)
            assert legend[cls["class_name"]] == f"rgb({red}, {green}, {blue})", cls["class_name"]
            seen.add(cls["class_name"])
    assert seen == {"PI_Particle", "PR_Peeling", "Copper_Nodule", "Env_Particle"}
    counts = page.eval_on_selector_all(
        "#single-legend .legend-row",
        "rows => rows.map(r => r.querySelector('.legend-count').textContent)",
    )
    expected = answer["analysis_results"]["classes"]
    assert counts == [
        f"{item['total_regions']} region{'' if item['total_regions'] == 1 else 's'}"
        for item in expected.values()
    ]
    save_screenshot(page, "page-analyse-single")

    # Keyboard: Esc hides the banner, Ctrl+Delete clears the page.
    page.keyboard.press("Escape")
    expect(page.locator("#banner")).to_be_hidden()
    page.keyboard.press("Control+Delete")
    expect(page.locator("#single-result")).to_be_hidden()
    expect(page.locator("#file-list")).to_be_hidden()
    expect(page.locator("#analyse-button")).to_be_disabled()


def test_client_side_checks_drag_and_drop_and_banner_timeout(page, live):
    page.clock.install()  # lets the test skip the banner's 5 s
    page.goto("/")
    expect(page.locator("#st-state")).to_have_text("Model service up")
    page.set_input_files(
        "#file-input",
        files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}],
    )
    banner = page.locator("#banner")
    expect(page.locator("#banner-text")).to_contain_text("notes.txt: not a JPEG, PNG, TIFF or BMP")
    expect(page.locator("#file-list")).to_be_hidden()
    expect(page.locator("#analyse-button")).to_be_disabled()
    page.clock.fast_forward(5100)
    expect(banner).to_be_hidden()

    # Dropping files: the oversize one is refused before anything is sent.
    page.evaluate(
        """() => {
          const files = new DataTransfer();
          const big = new Uint8Array(51 * 1024 * 1024);
          files.items.add(new File([big], 'big.png', {type: 'image/png'}));
          files.items.add(new File([new Uint8Array(64)], 'small.png', {type: 'image/png'}));
          document.querySelector('#drop-zone').dispatchEvent(
            new DragEvent('drop', {dataTransfer: files, bubbles: true, cancelable: true}));
        }"""
    )
    expect(page.locator("#banner-text")).to_contain_text("big.png: larger than 50 MB")
    expect(page.locator("#file-items .filename")).to_have_text(["small.png"])
    expect(page.locator("#analyse-button")).to_be_enabled()


# ---- analyse page: batch ------------------------------------------------------------------


def test_async_batch_shows_progress_rows_and_downloads_the_zip(page, live, simulator):
    simulator.options.latency = 0.3  # long enough to watch the rows fill in
    names = ["晶圓_01.png", "board-02.png", XSS_NAME]
    page.goto("/")
    page.click(".mode[data-mode=batch]")
    page.set_input_files(
        "#file-input",
        files=[
            {"name": name, "mimeType": "image/png", "buffer": defect_board(shift=index)}
            for index, name in enumerate(names)
        ],
    )
    expect(page.locator("#file-items li")).to_have_count(3)
    # Record every text the progress counter shows.
    page.evaluate(
        """() => {
          const el = document.querySelector('#batch-monitor [data-role=progress-text]');
          window.progressSeen = [];
          new MutationObserver(() => window.progressSeen.push(el.textContent))
            .observe(el, {childList: true, characterData: true, subtree: true});
        }"""
    )
    with page.expect_response(lambda r: "/upload/batch" in r.url) as submit_info:
        page.click("#analyse-button")
    submitted = submit_info.value
    assert submitted.status == 202
    assert "async=true" in submitted.request.url or b"async" in (
        submitted.request.post_data_buffer or b""
    )
    batch_id = submitted.json()["batch_id"]

    monitor = page.locator("#batch-monitor")
    expect(monitor).to_have_attribute("data-status", "done", timeout=20_000)
    expect(page.locator("#batch-monitor [data-role=progress-text]")).to_have_text("3 / 3")
    seen = page.evaluate("window.progressSeen")
    assert seen[0] == "0 / 3" and seen[-1] == "3 / 3"
    finished = [int(text.split(" / ")[0]) for text in seen]
    assert finished == sorted(finished)  # the bar only moves forward

    status = requests.get(f"{live.url}/batches/{batch_id}", timeout=10).json()
    rows = page.locator("#batch-monitor tbody tr")
    expect(rows).to_have_count(3)
    for index, file in enumerate(status["files"]):
        row = rows.nth(index)
        expect(row).to_have_attribute("data-state", "done")
        expect(row.locator("td.filename")).to_have_text(file["filename"])
        expect(row.locator("a")).to_have_attribute("href", f"/results/{file['img_unique_id']}")
    assert [f["filename"] for f in status["files"]] == names
    expect(rows.nth(2).locator("td.filename")).to_have_text(XSS_NAME)  # text, not markup
    assert page.locator("img[src='x']").count() == 0

    zip_link = page.locator("#batch-monitor [data-role=zip]")
    expect(zip_link).to_have_attribute("aria-disabled", "false")
    save_screenshot(page, "page-analyse-batch")
    probe = requests.get(f"{live.url}/download/batch/{batch_id}", stream=True, timeout=10)
    probe.close()
    if probe.status_code == 404 and "NOT_FOUND" in probe.headers.get("Content-Type", "json"):
        pytest.skip("GET /download/batch/<id> is not implemented yet")
    with page.expect_download() as download_info:
        zip_link.click()
    archive = zipfile.ZipFile(download_info.value.path())
    assert archive.testzip() is None
    names_in_zip = archive.namelist()
    assert sum(name.endswith("analysis.json") for name in names_in_zip) == 3


def test_batch_pages_show_failures_and_retry_them(page, live, simulator):
    simulator.options.update({"failure_rate": 1.0, "failure_kinds": ["500"], "seed": 1})
    files = [("a.png", defect_board(shift=1)), ("b.png", defect_board(shift=2))]
    response = requests.post(
        f"{live.url}/upload/batch",
        files=[("images", item) for item in files],
        data={"async": "true"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    batch_id = response.json()["batch_id"]

    page.goto(f"/batch/{batch_id}")
    monitor = page.locator("#batch-monitor")
    expect(monitor).to_have_attribute("data-status", re.compile("failed|partial"), timeout=20_000)
    rows = page.locator("#batch-monitor tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_attribute("data-state", "failed")
    expect(rows.nth(0).locator(".error-text")).to_contain_text("MODEL_")
    expect(page.locator("#batch-monitor [data-role=zip]")).to_have_attribute(
        "aria-disabled", "true"
    )

    simulator.options.update({"failure_rate": 0.0})
    retry = page.get_by_role("button", name="Retry failed files")
    expect(retry).to_be_visible()
    retry.click()
    expect(monitor).to_have_attribute("data-status", "done", timeout=20_000)
    expect(page.locator("#batch-monitor [data-role=progress-text]")).to_have_text("2 / 2")
    expect(rows.nth(0)).to_have_attribute("data-state", "done")
    expect(retry).to_be_hidden()
    save_screenshot(page, "page-batch")

    page.get_by_role("link", name="Show in history").click()
    expect(page.locator("#f-batch")).to_have_value(batch_id)
    expect(page.locator("#gallery li")).to_have_count(2)

    page.goto("/batches-list")
    row = page.locator(f"#batches-body tr[data-batch-id='{batch_id}']")
    expect(row).to_have_attribute("data-status", "done")
    expect(row.locator("a")).to_have_attribute("href", f"/batch/{batch_id}")
    save_screenshot(page, "page-batches-list")


# ---- history --------------------------------------------------------------------------------


def test_history_filters_by_class_and_pages(session, page, live):
    with_particles = [api_upload(live, defect_board(shift=s), f"full-{s}.png") for s in (0, 1)]
    nodules_only = [
        api_upload(live, defect_board(shift=s, dots=False, dust=False, streak=False), f"n-{s}.png")
        for s in (2, 3, 4)
    ]
    assert all(item["defect_classes"].get("PI_Particle") for item in with_particles)
    assert not any(item["defect_classes"].get("PI_Particle") for item in nodules_only)
    all_ids = {item["img_unique_id"] for item in with_particles + nodules_only}

    page.goto("/history?limit=2")
    cards = page.locator("#gallery li")
    expect(cards).to_have_count(2)
    expect(page.locator("#gallery-total")).to_have_text("5")
    expect(page.locator("#pagination .page-info")).to_have_text("Page 1 of 3")
    first_page = set(cards.evaluate_all("items => items.map(i => i.dataset.imgId)"))

    page.click("#pagination [data-role=next]")
    expect(page.locator("#pagination .page-info")).to_have_text("Page 2 of 3")
    expect(page).to_have_url(re.compile(r"page=2"))
    second_page = set(cards.evaluate_all("items => items.map(i => i.dataset.imgId)"))
    assert len(second_page) == 2 and first_page.isdisjoint(second_page)
    assert first_page | second_page <= all_ids

    page.select_option("#f-class", "PI_Particle")
    expect(page.locator("#gallery-total")).to_have_text("2")
    expect(cards).to_have_count(2)
    expect(page.locator("#pagination")).to_be_hidden()
    shown = set(cards.evaluate_all("items => items.map(i => i.dataset.imgId)"))
    assert shown == {item["img_unique_id"] for item in with_particles}
    expect(cards.first.locator(".defect-badge")).to_have_text(
        re.compile(r"^\d+$"), use_inner_text=True
    )
    hrefs = cards.locator("a.result-card").evaluate_all("links => links.map(a => a.pathname)")
    assert sorted(hrefs) == sorted(f"/results/{i}" for i in shown)
    images = cards.locator(".thumb img")
    expect(images.first).to_have_js_property("complete", True)
    save_screenshot(page, "page-history")

    # The gallery loads thumbnails only, never the full-size PNGs.
    image_requests = [url for url in session.requests if "/download/image/" in url]
    assert image_requests
    assert all(url.split("?")[0].endswith("/thumbnail") for url in image_requests)


# ---- result detail --------------------------------------------------------------------------


def test_result_page_viewer_regions_and_delete(page, live, sample_input):
    answer = api_upload(live, sample_input, "segformer_input.jpeg")
    img_id = answer["img_unique_id"]
    page.goto(f"/results/{img_id}")
    viewer = "#result-viewer"
    expect(page.locator(viewer)).to_have_attribute("data-state", "ready")
    expect(page.locator("#r-total")).to_have_text(f"{answer['total_defects']:,}")
    expect(page.locator("#result-name")).to_have_text("segformer_input.jpeg")
    expect(page.locator("#regions-count")).to_have_text(f"{answer['total_defects']:,}")

    # zoom buttons and wheel change the zoom level
    zoom = page.locator(f"{viewer} [data-role=zoom]")
    before = zoom.inner_text()
    page.click(f"{viewer} [data-act=zoom-in]")
    expect(zoom).not_to_have_text(before)
    after_button = int(zoom.inner_text().rstrip("%"))
    assert after_button > int(before.rstrip("%"))
    box = stage_box(page, viewer)
    centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.move(*centre)
    page.mouse.wheel(0, -400)
    expect(zoom).not_to_have_text(f"{after_button}%")
    assert int(zoom.inner_text().rstrip("%")) > after_button
    page.click(f"{viewer} [data-act=reset]")
    expect(zoom).to_have_text(before)

    # the readout follows the pointer and reads the real pixel (original tab)
    page.click(f"{viewer} .tab[data-kind=input]")
    expect(page.locator(viewer)).to_have_attribute("data-state", "ready")
    readout = page.locator(f"{viewer} [data-role=readout]")
    original = Image.open(io.BytesIO(sample_input)).convert("L")
    coordinates = []
    for dx, dy in ((-120, -80), (90, 60)):
        page.mouse.move(centre[0] + dx, centre[1] + dy)
        expect(readout).to_have_text(READOUT)
        x, y, grey = (int(v) for v in READOUT.search(readout.inner_text()).groups())
        assert abs(grey - original.getpixel((x, y))) <= 3  # JPEG decoders differ slightly
        coordinates.append((x, y))
    assert coordinates[0][0] < coordinates[1][0] and coordinates[0][1] < coordinates[1][1]

    # dragging pans: the pixel under the pointer moves with it
    start = (centre[0] - 50, centre[1] - 40)
    page.mouse.move(*start)
    x0, y0 = (int(v) for v in READOUT.search(readout.inner_text()).groups()[:2])
    page.mouse.down()
    page.mouse.move(start[0] + 120, start[1] + 70, steps=5)
    page.mouse.up()
    x1, y1 = (int(v) for v in READOUT.search(readout.inner_text()).groups()[:2])
    assert abs(x1 - x0) <= 2 and abs(y1 - y0) <= 2

    # greyscale toggle
    grey = page.locator(f"{viewer} [data-act=grey]")
    grey.click()
    expect(grey).to_have_attribute("aria-pressed", "true")
    expect(page.locator(f"{viewer} canvas")).to_have_class(re.compile("greyscale"))

    # a region row outlines its bounding box and centres it
    page.click(f"{viewer} .tab[data-kind=overlay]")
    expect(page.locator(viewer)).to_have_attribute("data-state", "ready")
    row = page.locator("#regions-body tr").nth(3)
    region_id = row.get_attribute("data-region-id")
    class_name = row.get_attribute("data-class-name")
    regions = requests.get(f"{live.url}/images/{img_id}/regions", timeout=10).json()
    region = next(
        r
        for c in regions["classes"]
        if c["class_name"] == class_name
        for r in c["regions"]
        if str(r["region_id"]) == region_id
    )
    row.click()
    expect(row).to_have_class(re.compile("is-selected"))
    bbox = region["bounding_box"]
    mark = page.locator(f"{viewer} .viewer-marks .mark")
    expect(mark).to_have_count(1)
    expect(mark).to_have_attribute(
        "data-box", f"{bbox['x']},{bbox['y']},{bbox['width']},{bbox['height']}"
    )
    drawn = page.locator(f"{viewer} .viewer-marks .mark-box").bounding_box()
    stage = stage_box(page, viewer)
    assert abs(drawn["x"] + drawn["width"] / 2 - (stage["x"] + stage["width"] / 2)) < 3
    assert abs(drawn["y"] + drawn["height"] / 2 - (stage["y"] + stage["height"] / 2)) < 3
    assert drawn["width"] > 20  # zoomed in far enough to see a small region

    # sorting by area puts the largest region first when sorted descending
    page.click("#regions-table th[data-sort=area_pixels] button")
    page.click("#regions-table th[data-sort=area_pixels] button")
    expect(page.locator("#regions-table th[data-sort=area_pixels]")).to_have_attribute(
        "aria-sort", "descending"
    )
    areas = page.locator("#regions-body tr td:nth-child(5)").all_inner_texts()
    values = [int(a.replace(",", "")) for a in areas]
    assert values == sorted(values, reverse=True)

    downloads = page.locator("#r-downloads a")
    expect(downloads).to_have_count(5)
    assert downloads.nth(4).get_attribute("href") == answer["json_url"]
    page.locator("#r-downloads").scroll_into_view_if_needed()
    save_screenshot(page, "page-result-detail")

    # delete, confirm, back to history
    page.click("#r-delete")
    expect(page.locator("#confirm-dialog")).to_be_visible()
    page.click("#confirm-yes")
    page.wait_for_url(re.compile(r"/history"))
    expect(page.locator("#banner-text")).to_contain_text(f"Result {img_id} deleted")
    assert requests.get(f"{live.url}/images/{img_id}", timeout=10).status_code == 404


def test_unknown_result_and_batch_show_not_found(page):
    page.goto("/results/20990101_000000_NOSUCH")
    expect(page.locator("#result-missing")).to_be_visible()
    expect(page.locator("#result-missing-text")).to_contain_text("20990101_000000_NOSUCH")
    expect(page.locator("#result-body")).to_be_hidden()
    page.goto("/batch/20990101_000000_NOBTCH")
    expect(page.locator("#batch-monitor [data-role=missing]")).to_contain_text(
        "20990101_000000_NOBTCH"
    )


# ---- escaping ---------------------------------------------------------------------------------


def test_a_file_name_with_markup_is_shown_as_text_everywhere(page, live):
    page.goto("/")
    page.set_input_files(
        "#file-input",
        files=[{"name": XSS_NAME, "mimeType": "image/png", "buffer": defect_board(shift=3)}],
    )
    expect(page.locator("#file-items .filename")).to_have_text(XSS_NAME)
    page.click("#analyse-button")
    expect(page.locator("#single-name")).to_have_text(XSS_NAME)
    expect(page.get_by_text(XSS_NAME).first).to_be_visible()
    img_id = page.locator("#single-result").get_attribute("data-img-id")

    page.goto("/history")
    expect(page.locator("#gallery .filename")).to_have_text(XSS_NAME)
    page.goto(f"/results/{img_id}")
    expect(page.locator("#result-name")).to_have_text(XSS_NAME)
    assert page.locator("img[src='x']").count() == 0
    # no dialog fired: checked by the session fixture for every test


# ---- statistics --------------------------------------------------------------------------------


def test_statistics_page_draws_pareto_and_trend(page, live):
    api_upload(live, defect_board(shift=0), "one.png")
    api_upload(live, defect_board(shift=1, dots=False, dust=False), "two.png")
    stats = requests.get(f"{live.url}/stats", timeout=10).json()
    page.goto("/statistics")
    expect(page.locator("#s-images")).to_have_text("2")
    bars = page.locator("#pareto-chart svg rect.bar")
    expect(bars).to_have_count(4)
    values = [int(v) for v in bars.evaluate_all("rs => rs.map(r => r.dataset.value)")]
    assert values == sorted(values, reverse=True)
    expected = sorted((c["regions"] for c in stats["classes"] if c["regions"]), reverse=True)
    assert values == expected
    colours = bars.evaluate_all("rs => rs.map(r => [r.dataset.class, r.getAttribute('fill')])")
    palette = {
        "PI_Particle": "rgb(255, 0, 0)",
        "PR_Peeling": "rgb(0, 255, 0)",
        "Copper_Nodule": "rgb(0, 0, 255)",
        "Env_Particle": "rgb(255, 255, 0)",
    }
    assert all(palette[name] == fill for name, fill in colours)
    expect(page.locator("#pareto-chart .point-label").last).to_have_text("100%")
    expect(page.locator("#trend-chart svg")).to_have_attribute("data-days", "30")
    today_bar = page.locator("#trend-chart rect.bar").last
    assert float(today_bar.get_attribute("height")) > 0
    save_screenshot(page, "page-statistics")

    page.click("[data-days='7']")
    expect(page.locator("#trend-chart svg")).to_have_attribute("data-days", "7")


# ---- model service down ---------------------------------------------------------------------


@pytest.mark.parametrize("app_settings", [{"MODEL_SERVICE_URL": "http://127.0.0.1:9"}])
def test_model_service_down_is_shown_and_history_still_works(page, app_settings):
    page.goto("/")
    expect(page.locator("#st-state")).to_have_text("Model service unreachable")
    expect(page.locator("#st-dot")).to_have_class(re.compile("dot-down"))
    expect(page.locator("#banner-text")).to_contain_text("history still works")
    page.click("nav >> text=History")
    expect(page.locator("#gallery-empty")).to_be_visible()


# ---- API keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize("app_settings", [{"API_KEYS": [API_KEY]}])
def test_the_api_key_is_asked_once_stored_and_sent(session, page, live, app_settings):
    api_upload(live, defect_board(), "keyed.png", headers={"X-API-Key": API_KEY})
    session.allowed_console.append(re.compile("status of 401"))
    page.goto("/history")
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    page.fill("#key-input", API_KEY)
    with page.expect_response(lambda r: "/images?" in r.url and r.status == 200) as info:
        page.click("#key-save")
    assert info.value.request.headers.get("x-api-key") == API_KEY
    expect(page.locator("#gallery li")).to_have_count(1)
    # the thumbnail's signed URL works without the header
    expect(page.locator("#gallery .thumb img")).to_have_js_property("complete", True)
    assert page.locator("#gallery .thumb img").evaluate("img => img.naturalWidth") > 0
    assert page.evaluate("localStorage.getItem('aoi.apiKey')") == API_KEY

    # next page: the stored key is sent at once, no second prompt
    with page.expect_response(lambda r: "/images/" in r.url and "/regions" in r.url) as info:
        page.click("#gallery a.result-card")
    assert info.value.status == 200
    assert info.value.request.headers.get("x-api-key") == API_KEY
    expect(page.locator("#result-viewer")).to_have_attribute("data-state", "ready")
    expect(dialog).to_be_hidden()


def test_apidocs_try_it_out_uploads_single_and_batch(page, live):
    """Swagger UI, served offline, sends real uploads from its *Try it out* forms."""
    page.goto("/apidocs/")
    boards = [
        {"name": f"board{i}.png", "mimeType": "image/png", "buffer": defect_board(i)}
        for i in range(2)
    ]
    single = page.locator("#operations-upload-upload_image")
    single.locator(".opblock-summary").click()
    single.locator("button.try-out__btn").click()
    single.locator("input[type=file]").set_input_files(boards[0])
    single.locator("button.execute").click()
    expect(single.locator(".live-responses-table tbody .response-col_status").first).to_have_text(
        re.compile("201"), timeout=TIMEOUT_MS
    )
    batch = page.locator("#operations-upload-upload_batch")
    batch.locator(".opblock-summary").click()
    batch.locator("button.try-out__btn").click()
    for index, board in enumerate(boards):
        batch.get_by_role("button", name=re.compile("Add (string )?item")).click()
        batch.locator("input[type=file]").nth(index).set_input_files(board)
    batch.locator("button.execute").click()
    expect(batch.locator(".live-responses-table tbody .response-col_status").first).to_have_text(
        re.compile("200"), timeout=TIMEOUT_MS
    )
    body = batch.locator(".live-responses-table .microlight").first.inner_text()
    assert '"total_images": 2' in body and '"processed": 2' in body
