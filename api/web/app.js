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

function snippets(origin, prompt, jsonMode, scene, name) {
  const quoted = prompt.replace(/'/g, "'\\''");
  const curl = [
    `curl -s '${origin}/v1/jobs?wait=60' -H "Authorization: Bearer $IMAGEEXTRACT_API_KEY" \\`,
    `  -F images=@${name} -F 'prompt=${quoted}' \\`,
    `  -F json_mode=${jsonMode} -F scene=${scene} -F grounding=true`,
  ].join("\n");
  const python = [
    "from imageextract import Client",
    "",
    `client = Client("${origin}")  # the key from IMAGEEXTRACT_API_KEY`,
    `job = client.jobs.create(images=["${name}"], prompt=${JSON.stringify(prompt)},`,
    `                         json_mode=${jsonMode ? "True" : "False"}, scene="${scene}", grounding=True)`,
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

function showResult(panel, figure, item) {
  panel.replaceChildren();
  figure.querySelectorAll(".box").forEach((box) => box.remove());
  if (item.error) panel.append(h("p", { role: "alert", class: "error" }, `${item.error.code}: ${item.error.message || ""}`));
  if (item.parsed === null || item.parsed === undefined) {
    panel.append(h("pre", {}, item.content || ""));
    return;
  }
  const evidence = item.evidence || {};
  const list = h("ul", { class: "fields", "aria-label": "Extracted values" });
  for (const [path, value] of leaves(item.parsed, "", [])) {
    const found = evidence[path];
    let box = null;
    if (found && found.bbox) {
      const [x0, y0, x1, y1] = found.bbox;
      box = h("div", { class: `box${found.grounded ? "" : " ungrounded"}`, "data-path": path });
      box.style.left = `${x0 * 100}%`;
      box.style.top = `${y0 * 100}%`;
      box.style.width = `${(x1 - x0) * 100}%`;
      box.style.height = `${(y1 - y0) * 100}%`;
      figure.append(box);
    }
    const badge = found && !found.grounded
      ? h("span", { class: "badge" }, "not found on the image")
      : found ? h("span", { class: "badge ok" }, "on the image") : null;
    const light = (on) => { if (box) box.classList.toggle("active", on); button.classList.toggle("active", on); };
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
  const picker = h("input", { id: "image", type: "file", accept: "image/*" });
  const chosen = h("span", { id: "chosen" }, "No image yet.");
  const drop = h("div", { class: "drop" },
    h("label", { for: "image" }, "Image"), h("p", {}, "Drop an image here, or choose one: "), picker, " ", chosen);
  const prompt = h("textarea", { id: "prompt", "aria-describedby": "prompt-help" });
  prompt.value = JSON.stringify(EXAMPLES.Receipt, null, 2);
  const scene = h("select", { id: "scene" }, h("option", { value: "general" }, "general"), h("option", { value: "medical" }, "medical"));
  const jsonMode = h("input", { id: "json-mode", type: "checkbox", checked: true });
  const run = h("button", { type: "submit", id: "run" }, "Run");
  const status = h("p", { role: "status", id: "run-status" });
  const image = h("img", { alt: "The image sent", id: "preview", hidden: true });
  const figure = h("div", { class: "figure" }, image);
  const panel = h("div", { id: "result" });
  const code = h("div", { id: "code" });
  const take = (chosenFile) => {
    if (!chosenFile) return;
    file = chosenFile;
    chosen.textContent = `${file.name} (${Math.round(file.size / 1024)} KB)`;
    image.src = URL.createObjectURL(file);
    image.hidden = false;
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
      if (!file) { status.textContent = "Choose an image first."; picker.focus(); return; }
      const body = new FormData();
      body.append("images", file, file.name);
      body.append("prompt", prompt.value);
      body.append("json_mode", jsonMode.checked ? "true" : "false");
      body.append("scene", scene.value);
      body.append("grounding", "true");
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
        showResult(panel, figure, items[0]);
        const { curl, python } = snippets(location.origin, prompt.value, jsonMode.checked, scene.value, file.name);
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
    run),
  status);
  main.append(h("h1", {}, "Playground"), form,
    h("div", { class: "columns" }, h("section", { "aria-label": "Image" }, figure), h("section", { "aria-label": "Result" }, panel)),
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

async function job(main, id) {
  const summary = h("dl", { class: "summary" });
  const actions = h("div", { class: "row" });
  const body = h("tbody");
  main.append(h("h1", {}, `Job ${id.slice(0, 8)}`), summary, actions,
    h("h2", {}, "Images"),
    h("div", { class: "table" }, h("table", {},
      h("thead", {}, h("tr", {}, ["#", "Name", "Status", "Error", "Result"].map((name) => h("th", { scope: "col" }, name)))),
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
      h("td", {}, item.index), h("td", {}, item.source_name || "—"),
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

async function route() {
  if (timer) { clearInterval(timer); timer = null; }
  const [name, argument] = location.hash.replace(/^#\/?/, "").split("/");
  const signedIn = Boolean(sessionStorage.getItem(KEY));
  const page = signedIn ? (PAGES[name] && name !== "signin" ? name : "playground") : "signin";
  if (page !== name) { location.hash = `#/${page}`; return; }
  document.getElementById("nav").hidden = !signedIn;
  document.querySelectorAll("#nav a").forEach((link) => {
    if (link.getAttribute("href") === `#/${page}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  });
  const main = document.getElementById("main");
  main.replaceChildren();
  document.title = `imageextract: ${page}`;
  try {
    await PAGES[page](main, argument);
  } catch (error) {
    showError(error);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("sign-out").addEventListener("click", signOut);
  window.addEventListener("hashchange", route);
  route();
});
