// What every page shares: the status banner, the confirm dialog, the model
// service pill in the header (from /health) and the API key button.
import { changeKey, get } from "./api.js";
import { $, icon, setText } from "./dom.js";

const BANNER_MS = 5000;
let bannerTimer = null;

/** Show a banner: kind is "info", "success", "warning" or "error"; hides after 5 s. */
export function banner(kind, text, { sticky = false } = {}) {
  const box = $("#banner");
  if (!box) return;
  box.className = `banner-area banner-${kind}`;
  const iconSlot = $(".banner-icon", box);
  iconSlot.replaceChildren(
    icon({ success: "check", error: "alert", warning: "alert" }[kind] || "info"),
  );
  setText("banner-text", text);
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  box.hidden = false;
  clearTimeout(bannerTimer);
  if (!sticky) bannerTimer = setTimeout(hideBanner, BANNER_MS);
}

export function hideBanner() {
  clearTimeout(bannerTimer);
  const box = $("#banner");
  if (box) box.hidden = true;
}

/** Error banner text from an ApiError (message plus its code). */
export function errorText(error) {
  if (!error) return "Unknown error";
  const code = error.code && !String(error.code).startsWith("HTTP_") ? ` (${error.code})` : "";
  return `${error.message || error}${code}`;
}

/** A modal yes/no question; resolves true when confirmed. */
export function confirmDialog({ title = "Are you sure?", text = "", confirm = "Confirm" } = {}) {
  const dialog = $("#confirm-dialog");
  setText("confirm-heading", title);
  setText("confirm-text", text);
  setText("confirm-yes", confirm);
  return new Promise((resolve) => {
    const yes = $("#confirm-yes");
    const no = $("#confirm-no");
    const done = (answer) => {
      yes.removeEventListener("click", onYes);
      no.removeEventListener("click", onNo);
      dialog.removeEventListener("cancel", onNo);
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    const onYes = () => done(true);
    const onNo = (event) => {
      event.preventDefault();
      done(false);
    };
    yes.addEventListener("click", onYes);
    no.addEventListener("click", onNo);
    dialog.addEventListener("cancel", onNo);
    dialog.showModal();
    no.focus();
  });
}

let healthPromise = null;

/** GET /health once per page (refresh=true asks again). */
export function health(refresh = false) {
  if (!healthPromise || refresh) {
    healthPromise = get("/health").catch((error) => {
      // /health answers 503 with a full body when the database is down.
      healthPromise = null;
      throw error;
    });
  }
  return healthPromise;
}

/** Is the model service usable, according to a /health body? */
export function modelState(body) {
  const model = (body && body.model_service) || {};
  if (!model.reachable) return { ok: false, text: "Model service unreachable" };
  if (!model.model_loaded) return { ok: false, text: "No model loaded" };
  return { ok: true, text: "Model service up" };
}

async function fillServicePill() {
  const dot = $("#service-dot");
  try {
    const body = await health();
    const state = modelState(body);
    dot.className = `dot ${state.ok ? "dot-up" : "dot-down"}`;
    const name = body.model_service && body.model_service.model_name;
    setText("service-text", name && state.ok ? `${state.text} · ${name}` : state.text);
    $("#service-sim").hidden = !(body.model_service && body.model_service.simulator);
  } catch (error) {
    dot.className = "dot dot-down";
    setText("service-text", `Status unknown: ${error.message}`);
  }
}

/** Call once from each page module. */
export function initPage() {
  $("#banner-close")?.addEventListener("click", hideBanner);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !document.querySelector("dialog[open]")) hideBanner();
  });
  $("#api-key-button")?.addEventListener("click", async () => {
    const key = await changeKey();
    if (key) banner("success", "API key saved in this browser. Reloading data…");
    if (key) setTimeout(() => window.location.reload(), 600);
  });
  fillServicePill();
}
