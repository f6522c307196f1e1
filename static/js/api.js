// The one way pages talk to the JSON API.
//
// - Sends the API key (localStorage "aoi.apiKey") as X-API-Key on every call.
// - On 401 it asks for the key once (a <dialog>, shared by concurrent calls),
//   stores it and repeats the call; a refused key is forgotten and asked again.
// - Errors become ApiError with the API's {error, code, details}.
// - upload() uses XMLHttpRequest to report upload progress.
import { appUrl } from "./dom.js";

const KEY_STORAGE = "aoi.apiKey";
const MAX_KEY_PROMPTS = 3;

export class ApiError extends Error {
  constructor(message, { status = 0, code = "ERROR", details = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export function storedKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

function storeKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // Private mode without storage: the key lives for this page only.
  }
  memoryKey = key;
}

let memoryKey = "";
let pendingPrompt = null;
let declined = false;

const currentKey = () => storedKey() || memoryKey;

/**
 * Show the key dialog; resolves with the key, or null when cancelled.
 * Concurrent callers share one dialog.
 */
export function askForKey(reason) {
  if (pendingPrompt) return pendingPrompt;
  const dialog = document.getElementById("key-dialog");
  if (!dialog || typeof dialog.showModal !== "function") return Promise.resolve(null);
  const input = document.getElementById("key-input");
  const reasonText = document.getElementById("key-reason");
  if (reasonText && reason) reasonText.textContent = reason;
  input.value = "";
  pendingPrompt = new Promise((resolve) => {
    const form = document.getElementById("key-form");
    const cancel = document.getElementById("key-cancel");
    const forget = document.getElementById("key-forget");
    const finish = (key) => {
      form.removeEventListener("submit", onSubmit);
      cancel.removeEventListener("click", onCancel);
      forget.removeEventListener("click", onForget);
      dialog.removeEventListener("cancel", onCancel);
      if (dialog.open) dialog.close();
      pendingPrompt = null;
      resolve(key);
    };
    const onSubmit = (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      storeKey(key);
      declined = false;
      finish(key);
    };
    const onCancel = (event) => {
      event.preventDefault();
      declined = true;
      finish(null);
    };
    const onForget = () => {
      storeKey("");
      input.value = "";
      input.focus();
    };
    form.addEventListener("submit", onSubmit);
    cancel.addEventListener("click", onCancel);
    forget.addEventListener("click", onForget);
    dialog.addEventListener("cancel", onCancel);
    dialog.showModal();
    input.focus();
  });
  return pendingPrompt;
}

/** Called by the nav's "API key" button: lets the user enter or change the key. */
export function changeKey() {
  return askForKey("Enter the API key for this AOI agent (leave the stored one to keep using it).");
}

function buildUrl(path, query) {
  const url = new URL(/^https?:/.test(path) ? path : appUrl(path), window.location.href);
  for (const [name, value] of Object.entries(query || {})) {
    if (value === undefined || value === null || value === "") continue;
    url.searchParams.set(name, String(value));
  }
  return url.toString();
}

function parseText(text, contentType) {
  if (!text) return null;
  if ((contentType || "").includes("json")) {
    try {
      return JSON.parse(text);
    } catch {
      return { error: text };
    }
  }
  return { error: text };
}

function errorFrom(status, data) {
  const body = data && typeof data === "object" ? data : {};
  let message = body.error || body.message;
  if (!message) {
    message =
      status === 0
        ? "Cannot reach the AOI agent. Check the network connection and try again."
        : `The AOI agent answered HTTP ${status}.`;
  }
  return new ApiError(message, {
    status,
    code: body.code || (status === 0 ? "NETWORK_ERROR" : `HTTP_${status}`),
    details: body.details || null,
  });
}

/** Run send(headers) (which returns {status, data}), asking for the key on 401. */
async function withKey(send) {
  for (let attempt = 0; attempt <= MAX_KEY_PROMPTS + 2; attempt += 1) {
    const sentKey = currentKey();
    const { status, data } = await send(sentKey ? { "X-API-Key": sentKey } : {});
    if (status !== 401) {
      if (status >= 200 && status < 300) return { status, data };
      throw errorFrom(status, data);
    }
    // Another call may have obtained a new key while this one was under way.
    if (currentKey() && currentKey() !== sentKey) continue;
    if (declined || attempt >= MAX_KEY_PROMPTS) throw errorFrom(status, data);
    if (sentKey) storeKey("");
    const reason = sentKey
      ? "The stored API key was refused. Enter a valid key."
      : (data && data.error) || "This AOI agent requires an API key.";
    const key = await askForKey(reason);
    if (!key) throw errorFrom(status, data);
  }
  throw new ApiError("The API key was refused.", { status: 401, code: "AUTH_REQUIRED" });
}

/**
 * fetch() the API. Options: method, query (object), json (body), body, signal.
 * Resolves with the parsed JSON; rejects with ApiError.
 */
export async function request(path, { method = "GET", query, json, body, signal } = {}) {
  const url = buildUrl(path, query);
  const { data } = await withKey(async (headers) => {
    let response;
    try {
      response = await fetch(url, {
        method,
        signal,
        credentials: "same-origin",
        headers: {
          Accept: "application/json",
          ...(json !== undefined ? { "Content-Type": "application/json" } : {}),
          ...headers,
        },
        body: json !== undefined ? JSON.stringify(json) : body,
      });
    } catch (error) {
      if (error && error.name === "AbortError") throw error;
      return { status: 0, data: null };
    }
    const text = await response.text();
    return { status: response.status, data: parseText(text, response.headers.get("Content-Type")) };
  });
  return data;
}

export const get = (path, query, options = {}) => request(path, { ...options, query });
export const post = (path, options = {}) => request(path, { ...options, method: "POST" });
export const del = (path, options = {}) => request(path, { ...options, method: "DELETE" });

/**
 * POST multipart form data with upload progress.
 * onProgress(loaded, total) fires while the body is sent; resolves {status, data}.
 */
export async function upload(path, formData, { query, onProgress, onSent } = {}) {
  const url = buildUrl(path, query);
  return withKey(
    (headers) =>
      new Promise((resolve) => {
        const xhr = new XMLHttpRequest();
        xhr.open("POST", url);
        xhr.setRequestHeader("Accept", "application/json");
        for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
        xhr.upload.addEventListener("progress", (event) => {
          if (onProgress && event.lengthComputable) onProgress(event.loaded, event.total);
        });
        xhr.upload.addEventListener("load", () => onSent && onSent());
        xhr.addEventListener("load", () =>
          resolve({
            status: xhr.status,
            data: parseText(xhr.responseText, xhr.getResponseHeader("Content-Type")),
          }),
        );
        xhr.addEventListener("error", () => resolve({ status: 0, data: null }));
        xhr.addEventListener("abort", () => resolve({ status: 0, data: { error: "Upload cancelled." } }));
        xhr.send(formData);
      }),
  );
}
