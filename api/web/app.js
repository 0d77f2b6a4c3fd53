// imageextract's web page: one script, no library, no request to any other host.
// The API key lives in this tab's sessionStorage only and goes in an Authorization header.
"use strict";

const KEY = "imageextract.key";
const EXAMPLES = {
  Receipt: { company: "Company name", date: "Date", address: "Address", total: "Total amount" },
  "Invoice with line items": {
    invoice_no: "Invoice number", date: "Invoice date", seller: "Seller name",
    items: [{ name: "Item", quantity: "Quantity", total: "Line total" }], total: "Total",
  },
  "Medical report": {
    patient: "Patient name", date: "Report date",
    tests: [{ name: "Test", result: "Result", unit: "Unit", range: "Reference range" }],
  },
};
let timer = null;

function h(tag, attrs, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (value === true) element.setAttribute(name, "");
    else if (value !== false && value !== null && value !== undefined) element.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

function toast(text) {
  const box = document.getElementById("toast");
  box.textContent = text;
  box.classList.add("shown");
  setTimeout(() => box.classList.remove("shown"), 2500);
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}), Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}` };
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) {
    let body;
    try { body = await response.json(); } catch { body = { detail: response.statusText }; }
    const error = new Error(body.detail || body.title || `${response.status}`);
    error.status = response.status;
    error.body = body;
    throw error;
  }
  return response;
}
const json = async (path, options) => (await api(path, options)).json();

function showError(error) {
  const main = document.getElementById("main");
  if (error.status === 401) { signOut(); return; }
  main.append(h("p", { role: "alert", class: "error" }, error.message));
}

function signOut() {
  sessionStorage.removeItem(KEY);
  location.hash = "#/signin";
}

function when(text) { return text ? new Date(text).toLocaleString() : "—"; }

async function download(path, name) {
  const blob = await (await api(path)).blob();
  const link = h("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(link);
  link.click();
  link.remove();
}

// Sign in

async function signIn(main) {
  const input = h("input", { id: "key", type: "password", autocomplete: "off", spellcheck: "false", required: true, size: 48 });
  const message = h("p", { role: "alert", class: "error" });
  const form = h("form", {
    onsubmit: async (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY, input.value.trim());
      try {
        await json("/v1/account");
        location.hash = "#/playground";
      } catch (error) {
        sessionStorage.removeItem(KEY);
        message.textContent = error.status === 401 ? "This key is not valid on this server." : error.message;
      }
    },
  }, h("label", { for: "key" }, "API key"), h("div", { class: "row" }, input, h("button", { type: "submit" }, "Sign in")), message);
  main.append(
    h("h1", {}, "Sign in"),
    h("p", {}, "Paste an API key: ", h("code", {}, "imageextract serve"), " prints one when it first starts. ",
      "It is kept in this tab only, and forgotten when you close it."),
    form,
  );
  input.focus();
}

// Playground

function leaves(value, path, out) {
  if (Array.isArray(value)) value.forEach((item, index) => leaves(item, `${path}[${index}]`, out));
  else if (value && typeof value === "object") {
    for (const [key, item] of Object.entries(value)) leaves(item, path ? `${path}.${key}` : key, out);
  } else out.push([path, value]);
  return out;
}

// A shell word that stands for `text` exactly: in single quotes, each ' written as '\''.
function shellWord(text) {
  return `'${text.replace(/'/g, "'\\''")}'`;
}

// The file name in curl's `-F images=@name`: curl ends a name at ; or , and unquotes one that
// starts with " (or trims spaces), so such a name goes in curl's own quotes, \ and " escaped.
function curlFileName(name) {
  return /[;,]|^["\s]|\s$/.test(name) ? `"${name.replace(/[\\"]/g, "\\$&")}"` : name;
}

// A Python string literal that evaluates to `text`: printable characters as they are, and
// control, invisible or lone surrogate characters escaped, so none hides in the snippet.
function pythonString(text) {
  const escapes = { "\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t" };
  const hex = (code, width) => code.toString(16).padStart(width, "0");
  let literal = "";
  for (const character of text) {
    const code = character.codePointAt(0);
    if (escapes[character]) literal += escapes[character];
    else if (!/\p{C}/u.test(character)) literal += character;
    else if (code < 0x100) literal += `\\x${hex(code, 2)}`;
    else if (code < 0x10000) literal += `\\u${hex(code, 4)}`;
    else literal += `\\U${hex(code, 8)}`;
  }
  return `"${literal}"`;
}

function snippets(origin, prompt, jsonMode, scene, name, documentMode) {
  // Only what differs from the API's defaults, as someone would write it.
  const pages = documentMode && documentMode !== "document";
  // --form-string: curl would read a prompt that starts with @ or < as a file's name.
  const curl = [
    `curl -s ${shellWord(`${origin}/v1/jobs?wait=60`)} -H "Authorization: Bearer $IMAGEEXTRACT_API_KEY" \\`,
    `  -F ${shellWord(`images=@${curlFileName(name)}`)} --form-string ${shellWord(`prompt=${prompt}`)} \\`,
    `  -F json_mode=${jsonMode} -F scene=${scene} -F grounding=true${pages ? ` -F document_mode=${documentMode}` : ""}`,
  ].join("\n");
  const python = [
    "from imageextract import Client",
    "",
    `client = Client(${pythonString(origin)})  # the key from IMAGEEXTRACT_API_KEY`,
    `job = client.jobs.create(images=[${pythonString(name)}], prompt=${pythonString(prompt)},`,
    `                         json_mode=${jsonMode ? "True" : "False"}, scene="${scene}", grounding=True${pages ? `, document_mode="${documentMode}"` : ""})`,
    "for item in job.wait(timeout=60).results():",
    "    print(item.parsed, item.evidence)",
  ].join("\n");
  return { curl, python };
}

function copyable(label, text) {
  const code = h("pre", {}, h("code", {}, text));
  const button = h("button", {
    type: "button", class: "quiet",
    onclick: async () => {
      try { await navigator.clipboard.writeText(text); toast(`${label} copied`); } catch { toast("Select the text to copy it"); }
    },
  }, `Copy ${label}`);
  return h("div", {}, h("div", { class: "row" }, h("h2", {}, label), button), code);
}

async function isPdf(file) {
  if (file.type === "application/pdf") return true;
  if (file.type.startsWith("image/")) return false;
  // As the API tells: a %PDF- header within the first 1024 bytes.
  return (await file.slice(0, 1024).text()).includes("%PDF-");
}

async function previewPage(file, page) {
  const body = new FormData();
  body.append("file", file, file.name);
  body.append("page", String(page));
  const response = await api("/v1/previews", { method: "POST", body });
  return { blob: await response.blob(), count: Number(response.headers.get("X-Page-Count")) || 1 };
}

// What the playground shows of the chosen file, in `pane`: the image itself, or a PDF's pages
// one under the other. Browsers draw nothing of a PDF in an <img>, so the API draws each page
// (POST /v1/previews) when it comes near the screen, one request at a time: each sends the
// PDF again. figure(page) is where that page's evidence boxes go.
function viewerFor(pane, file, pdf) {
  const figures = [];
  const urls = [];
  const viewer = { pane, pdf, closed: false, observer: null };
  viewer.figure = (page) => figures[(page || 1) - 1] || null;
  viewer.close = () => {
    viewer.closed = true;
    if (viewer.observer) viewer.observer.disconnect();
    urls.forEach((url) => URL.revokeObjectURL(url));
  };
  const show = (image, blob) => {
    const url = URL.createObjectURL(blob);
    urls.push(url);
    image.src = url;
  };
  pane.classList.toggle("document", pdf);
  if (!pdf) {
    const image = h("img", { alt: "The image sent", id: "preview" });
    show(image, file);
    figures.push(h("div", { class: "figure" }, image));
    pane.replaceChildren(figures[0]);
    viewer.ready = Promise.resolve();
    return viewer;
  }
  const status = h("p", { role: "status" }, "Drawing the PDF's pages…");
  pane.replaceChildren(status);
  viewer.ready = (async () => {
    let first;
    try {
      first = await previewPage(file, 1);
    } catch (error) {
      if (!viewer.closed) { status.textContent = `This PDF cannot be shown: ${error.message}`; status.classList.add("error"); }
      return;
    }
    if (viewer.closed) return;
    const firstImage = new Image();
    show(firstImage, first.blob);
    await firstImage.decode().catch(() => null);
    // Until a page is drawn it holds the first page's shape: most documents keep one size.
    const ratio = `${firstImage.naturalWidth || 612} / ${firstImage.naturalHeight || 792}`;
    let queue = Promise.resolve();
    const load = (figure, image, number) => {
      queue = queue.then(async () => {
        if (viewer.closed) return;
        try {
          show(image, (await previewPage(file, number)).blob);
        } catch (error) {
          figure.after(h("p", { class: "error" }, `Page ${number} cannot be shown: ${error.message}`));
        }
      });
    };
    viewer.observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        viewer.observer.unobserve(entry.target);
        load(entry.target, entry.target.querySelector("img"), Number(entry.target.dataset.page));
      }
    }, { rootMargin: "400px 0px" });
    const pages = [];
    for (let number = 1; number <= first.count; number += 1) {
      const label = `Page ${number} of ${first.count}`;
      const image = h("img", { alt: label, hidden: true });
      const figure = h("div", { class: "figure pending", "data-page": number }, image);
      figure.style.aspectRatio = ratio;
      image.addEventListener("load", () => {
        image.hidden = false;
        figure.classList.remove("pending");
        figure.style.aspectRatio = "";
      });
      figures.push(figure);
      pages.push(h("div", { class: "page" }, h("p", { class: "page-label" }, label), figure));
      if (number === 1) image.src = firstImage.src;
      else viewer.observer.observe(figure);
    }
    pane.replaceChildren(...pages);
  })();
  return viewer;
}

// Scrolls the pages' pane (and only it) to bring `element` into view, when it is out of view.
function reveal(pane, element) {
  const outer = pane.getBoundingClientRect();
  const inner = element.getBoundingClientRect();
  if (inner.top >= outer.top && inner.bottom <= outer.bottom) return;
  pane.scrollTop += (inner.top + inner.bottom) / 2 - (outer.top + outer.bottom) / 2;
}

function showResult(panel, viewer, item) {
  panel.replaceChildren();
  viewer.pane.querySelectorAll(".box").forEach((box) => box.remove());
  if (item.error) panel.append(h("p", { role: "alert", class: "error" }, `${item.error.code}: ${item.error.message || ""}`));
  if (item.parsed === null || item.parsed === undefined) {
    panel.append(h("pre", {}, item.content || ""));
    return;
  }
  const evidence = item.evidence || {};
  const list = h("ul", { class: "fields", "aria-label": "Extracted values" });
  for (const [path, value] of leaves(item.parsed, "", [])) {
    const found = evidence[path];
    // In a PDF, bbox is a fraction of the page the evidence names.
    const figure = found && found.bbox ? viewer.figure(found.page) : null;
    let box = null;
    if (figure) {
      const [x0, y0, x1, y1] = found.bbox;
      box = h("div", { class: `box${found.grounded ? "" : " ungrounded"}`, "data-path": path });
      box.style.left = `${x0 * 100}%`;
      box.style.top = `${y0 * 100}%`;
      box.style.width = `${(x1 - x0) * 100}%`;
      box.style.height = `${(y1 - y0) * 100}%`;
      figure.append(box);
    }
    const where = viewer.pdf ? (found && found.page ? `on page ${found.page}` : "in the document") : "on the image";
    const badge = found && !found.grounded
      ? h("span", { class: "badge" }, viewer.pdf ? "not found in the document" : "not found on the image")
      : found ? h("span", { class: "badge ok" }, where) : null;
    const light = (on) => {
      if (box) {
        box.classList.toggle("active", on);
        if (on) reveal(viewer.pane, box);
      }
      button.classList.toggle("active", on);
    };
    const button = h("button", {
      type: "button", class: "field", "data-path": path,
      onmouseenter: () => light(true), onmouseleave: () => light(false),
      onfocus: () => light(true), onblur: () => light(false),
    }, h("span", { class: "path" }, path), h("span", { class: "value" }, value === null ? "—" : String(value), badge));
    list.append(h("li", {}, button));
  }
  panel.append(list, h("h2", {}, "JSON"), h("pre", { id: "result-json" }, JSON.stringify(item.parsed, null, 2)));
}

async function playground(main) {
  let file = null;
  let viewer = null;
  const picker = h("input", { id: "image", type: "file", accept: "image/*,application/pdf,.pdf" });
  const chosen = h("span", { id: "chosen" }, "No file yet.");
  const drop = h("div", { class: "drop" },
    h("label", { for: "image" }, "Image or PDF"), h("p", {}, "Drop an image or a PDF here, or choose one: "), picker, " ", chosen);
  const prompt = h("textarea", { id: "prompt", "aria-describedby": "prompt-help" });
  prompt.value = JSON.stringify(EXAMPLES.Receipt, null, 2);
  const scene = h("select", { id: "scene" }, h("option", { value: "general" }, "general"), h("option", { value: "medical" }, "medical"));
  const jsonMode = h("input", { id: "json-mode", type: "checkbox", checked: true });
  const documentMode = h("select", { id: "document-mode" },
    h("option", { value: "document" }, "one result per document"), h("option", { value: "pages" }, "one result per page"));
  const documentChoice = h("label", { class: "inline", for: "document-mode", hidden: true }, "PDF", documentMode);
  const run = h("button", { type: "submit", id: "run" }, "Run");
  const status = h("p", { role: "status", id: "run-status" });
  const pane = h("div", { class: "pages", id: "pages" });
  const panel = h("div", { id: "result" });
  const code = h("div", { id: "code" });
  const take = async (chosenFile) => {
    if (!chosenFile) return;
    file = chosenFile;
    chosen.textContent = `${file.name} (${Math.round(file.size / 1024)} KB)`;
    const pdf = await isPdf(file);
    if (file !== chosenFile) return;  // another file was chosen meanwhile
    documentChoice.hidden = !pdf;
    panel.replaceChildren();
    code.replaceChildren();
    if (viewer) viewer.close();
    viewer = viewerFor(pane, file, pdf);
  };
  picker.addEventListener("change", () => take(picker.files[0]));
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => { event.preventDefault(); drop.classList.remove("over"); take(event.dataTransfer.files[0]); });
  const examples = h("div", { class: "row", role: "group", "aria-label": "Examples" },
    Object.keys(EXAMPLES).map((name) => h("button", {
      type: "button", class: "quiet", onclick: () => { prompt.value = JSON.stringify(EXAMPLES[name], null, 2); prompt.focus(); },
    }, name)));
  const form = h("form", {
    onsubmit: async (event) => {
      event.preventDefault();
      if (!file || !viewer) { status.textContent = "Choose an image or a PDF first."; picker.focus(); return; }
      const shown = viewer;
      const mode = shown.pdf ? documentMode.value : null;
      const body = new FormData();
      body.append("images", file, file.name);
      body.append("prompt", prompt.value);
      body.append("json_mode", jsonMode.checked ? "true" : "false");
      body.append("scene", scene.value);
      body.append("grounding", "true");
      if (mode) body.append("document_mode", mode);
      run.disabled = true;
      status.textContent = "Running…";
      try {
        let job = await json("/v1/jobs?wait=120", { method: "POST", body });
        while (!job.finished_at) {
          await new Promise((resolve) => setTimeout(resolve, 1000));
          job = await json(`/v1/jobs/${job.id}`);
        }
        const items = job.results || (await json(`/v1/jobs/${job.id}/items`)).items;
        status.replaceChildren(`Job ${job.status}. `, h("a", { href: `#/job/${job.id}` }, "See the job"));
        await shown.ready;
        showResult(panel, shown, items[0]);
        const { curl, python } = snippets(location.origin, prompt.value, jsonMode.checked, scene.value, file.name, mode);
        code.replaceChildren(copyable("curl", curl), copyable("Python", python));
      } catch (error) {
        status.textContent = error.message;
      } finally {
        run.disabled = false;
      }
    },
  },
  drop,
  h("label", { for: "prompt" }, "Prompt or JSON template"),
  h("p", { id: "prompt-help" }, "Start from an example:"), examples, prompt,
  h("div", { class: "row" },
    h("label", { class: "inline", for: "scene" }, "Scene", scene),
    h("label", { class: "inline", for: "json-mode" }, jsonMode, "JSON mode"),
    documentChoice,
    run),
  status);
  main.append(h("h1", {}, "Playground"), form,
    h("div", { class: "columns" }, h("section", { "aria-label": "The file sent" }, pane), h("section", { "aria-label": "Result" }, panel)),
    code);
}

// Jobs

const ACTIVE = new Set(["queued", "running"]);

async function jobs(main) {
  const body = h("tbody");
  const table = h("div", { class: "table" }, h("table", {},
    h("caption", { class: "skip" }, "Your jobs, newest first"),
    h("thead", {}, h("tr", {}, ["Job", "Status", "Progress", "Images", "Created", ""].map((name) => h("th", { scope: "col" }, name)))),
    body));
  main.append(h("h1", {}, "Jobs"), table);
  const refresh = async () => {
    const page = await json("/v1/jobs?limit=50");
    body.replaceChildren(...page.jobs.map((job) => {
      const done = job.items_succeeded + job.items_failed + job.items_cancelled;
      const cancel = ACTIVE.has(job.status)
        ? h("button", {
          type: "button", class: "quiet", "data-cancel": job.id,
          onclick: async () => { await api(`/v1/jobs/${job.id}`, { method: "DELETE" }); toast("Cancelled"); refresh(); },
        }, "Cancel")
        : null;
      return h("tr", { "data-job": job.id },
        h("td", {}, h("a", { href: `#/job/${job.id}` }, job.id.slice(0, 8))),
        h("td", { class: `status-${job.status}`, "data-status": job.status }, job.status),
        h("td", {}, h("progress", { max: job.item_count, value: done, "aria-label": `${done} of ${job.item_count}` })),
        h("td", {}, `${done} / ${job.item_count}`),
        h("td", {}, when(job.created_at)),
        h("td", {}, cancel));
    }));
    if (page.jobs.length === 0) body.append(h("tr", {}, h("td", { colspan: 6 }, "No jobs yet: try the playground.")));
  };
  await refresh();
  timer = setInterval(() => refresh().catch(showError), 2000);
}

const SOURCES = { text_layer: "text layer", ocr: "OCR", image: "read as a picture" };

// How a PDF's pages were read, runs of pages read alike together: "pages 1–3: text layer; page 4: OCR".
function pageSources(pages) {
  const runs = [];
  for (const { page, source } of pages || []) {
    const last = runs[runs.length - 1];
    if (last && last.source === source && last.to === page - 1) last.to = page;
    else runs.push({ from: page, to: page, source });
  }
  return runs.map(({ from, to, source }) =>
    `${from === to ? `page ${from}` : `pages ${from}–${to}`}: ${SOURCES[source] || source}`).join("; ");
}

function pagesCell(item) {
  if (!item.page_count) return h("td", {}, "—");
  return h("td", { "data-pages": item.page_count },
    item.page_count === 1 ? "1 page" : `${item.page_count} pages`,
    item.pages && item.pages.length ? h("span", { class: "sources" }, pageSources(item.pages)) : null);
}

async function job(main, id) {
  const summary = h("dl", { class: "summary" });
  const actions = h("div", { class: "row" });
  const body = h("tbody");
  main.append(h("h1", {}, `Job ${id.slice(0, 8)}`), summary, actions,
    h("h2", {}, "Images and PDFs"),
    h("div", { class: "table" }, h("table", {},
      h("thead", {}, h("tr", {}, ["#", "Name", "Pages", "Status", "Error", "Result"].map((name) => h("th", { scope: "col" }, name)))),
      body)));
  const refresh = async () => {
    const data = await json(`/v1/jobs/${id}`);
    const done = data.counts.succeeded + data.counts.failed + data.counts.cancelled;
    summary.replaceChildren(...[
      ["Status", data.status], ["Mode", data.mode], ["Images", `${done} of ${data.item_count} ended`],
      ["Succeeded / failed", `${data.counts.succeeded} / ${data.counts.failed}`],
      ["Credits", `${data.credits.captured || data.credits.reserved} (${data.credits.refunded} refunded)`],
      ["Created", when(data.created_at)], ["Finished", when(data.finished_at)],
    ].flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]));
    const buttons = [
      h("button", { type: "button", class: "quiet", onclick: () => download(`/v1/jobs/${id}/results`, `${id}.jsonl`) }, "Download JSONL"),
      h("button", { type: "button", class: "quiet", onclick: () => download(`/v1/jobs/${id}/results.csv`, `${id}.csv`) }, "Download CSV"),
    ];
    if (ACTIVE.has(data.status)) {
      buttons.push(h("button", { type: "button", onclick: async () => { await api(`/v1/jobs/${id}`, { method: "DELETE" }); toast("Cancelled"); refresh(); } }, "Cancel"));
    } else if (data.counts.failed > 0 && !data.purged_at) {
      buttons.push(h("button", {
        type: "button",
        onclick: async () => {
          try { await api(`/v1/jobs/${id}/retry`, { method: "POST" }); toast("Failed images run again"); } catch (error) { toast(error.message); }
          refresh();
        },
      }, "Retry failed images"));
    }
    actions.replaceChildren(...buttons);
    const items = (await json(`/v1/jobs/${id}/items?limit=100`)).items;
    body.replaceChildren(...items.map((item) => h("tr", {},
      h("td", {}, item.index), h("td", {}, item.source_name || "—"), pagesCell(item),
      h("td", { class: `status-${item.status}` }, item.status),
      h("td", {}, item.error ? `${item.error.code}: ${item.error.message || ""}` : ""),
      h("td", {}, h("code", {}, item.parsed !== null && item.parsed !== undefined ? JSON.stringify(item.parsed) : (item.content || ""))))));
    if (!ACTIVE.has(data.status) && timer) { clearInterval(timer); timer = null; }
  };
  await refresh();
  timer = setInterval(() => refresh().catch(showError), 2000);
}

// Account

async function account(main) {
  const data = await json("/v1/account");
  main.append(h("h1", {}, `Account ${data.name}`),
    h("dl", { class: "summary" },
      h("dt", {}, "Balance"), h("dd", { id: "balance" }, `${data.balance} credits`),
      h("dt", {}, "Price"), h("dd", {}, `${data.price.per_job} per job + ${data.price.per_image} per image`),
      h("dt", {}, "Limits"), h("dd", {}, `${data.limits.max_images_per_job} images, ${Math.round(data.limits.max_job_bytes / 1048576)} MB per job`)));

  const ledger = (await json("/v1/account/ledger?limit=20")).entries;
  main.append(h("h2", {}, "Ledger"), h("div", { class: "table" }, h("table", {},
    h("thead", {}, h("tr", {}, ["When", "Kind", "Change", "Balance after", "Job"].map((name) => h("th", { scope: "col" }, name)))),
    h("tbody", {}, ledger.map((entry) => h("tr", {},
      h("td", {}, when(entry.created_at)), h("td", {}, entry.kind), h("td", {}, entry.delta),
      h("td", {}, entry.balance_after), h("td", {}, entry.job_id ? h("a", { href: `#/job/${entry.job_id}` }, entry.job_id.slice(0, 8)) : "")))))));

  const keys = h("tbody");
  const secret = h("output", { id: "new-key" });
  const listKeys = async () => {
    const list = (await json("/v1/account/keys")).keys;
    keys.replaceChildren(...list.map((key) => h("tr", {},
      h("td", {}, h("code", {}, `${key.prefix}…`)), h("td", {}, when(key.created_at)),
      h("td", {}, key.revoked_at ? `revoked ${when(key.revoked_at)}` : "active"),
      h("td", {}, key.revoked_at ? "" : h("button", {
        type: "button", class: "quiet",
        onclick: async () => {
          try { await api(`/v1/account/keys/${key.id}`, { method: "DELETE" }); toast("Key revoked"); } catch (error) { toast(error.message); }
          listKeys();
        },
      }, "Revoke")))));
  };
  main.append(h("h2", {}, "API keys"),
    h("div", { class: "row" }, h("button", {
      type: "button",
      onclick: async () => {
        const made = await json("/v1/account/keys", { method: "POST" });
        secret.replaceChildren("New key, shown this once: ", h("code", { class: "secret" }, made.key));
        listKeys();
      },
    }, "Create a key"), secret),
    h("div", { class: "table" }, h("table", {}, h("thead", {}, h("tr", {}, ["Key", "Created", "State", ""].map((name) => h("th", { scope: "col" }, name)))), keys)));
  await listKeys();

  const endpoints = (await json("/v1/webhook-endpoints")).endpoints;
  const deliveries = (await json("/v1/account/webhook-deliveries?limit=20")).deliveries;
  main.append(h("h2", {}, "Webhook endpoints"),
    endpoints.length === 0
      ? h("p", {}, "None. Add one with POST /v1/webhook-endpoints (see the README).")
      : h("ul", {}, endpoints.map((endpoint) => h("li", {}, h("code", {}, endpoint.url), endpoint.enabled ? "" : ` (disabled: ${endpoint.disabled_reason || ""})`))),
    h("h2", {}, "Recent deliveries"),
    h("div", { class: "table" }, h("table", {},
      h("thead", {}, h("tr", {}, ["When", "Event", "URL", "Status", "Attempts", ""].map((name) => h("th", { scope: "col" }, name)))),
      h("tbody", {}, deliveries.map((delivery) => h("tr", {},
        h("td", {}, when(delivery.created_at)), h("td", {}, delivery.event_type), h("td", {}, h("code", {}, delivery.url)),
        h("td", {}, delivery.status), h("td", {}, delivery.attempt_count),
        h("td", {}, h("button", {
          type: "button", class: "quiet",
          onclick: async () => { await api(`/v1/webhook-deliveries/${delivery.id}/replay`, { method: "POST" }); toast("Sent again"); },
        }, "Replay"))))))));
}

// Pages

const PAGES = { signin: signIn, playground, jobs, job, account };
const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// The address names a page and, for a job's page, the job's id and nothing more: whatever
// follows the id (a ?purge=true, say) is dropped, so no link can change what a button does.
async function route() {
  if (timer) { clearInterval(timer); timer = null; }
  const [name, argument] = location.hash.replace(/^#\/?/, "").split(/[/?]/);
  const signedIn = Boolean(sessionStorage.getItem(KEY));
  let page = signedIn ? (Object.hasOwn(PAGES, name) && name !== "signin" ? name : "playground") : "signin";
  const id = page === "job" && JOB_ID.test(argument || "") ? argument.toLowerCase() : null;
  if (page === "job" && !id) page = "jobs";
  const address = id ? `#/job/${id}` : `#/${page}`;
  if (location.hash !== address) { location.replace(address); return; }
  document.getElementById("nav").hidden = !signedIn;
  document.querySelectorAll("#nav a").forEach((link) => {
    if (link.getAttribute("href") === `#/${page}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  });
  const main = document.getElementById("main");
  main.replaceChildren();
  document.title = `imageextract: ${page}`;
  try {
    await PAGES[page](main, id);
  } catch (error) {
    showError(error);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("sign-out").addEventListener("click", signOut);
  window.addEventListener("hashchange", route);
  route();
});
