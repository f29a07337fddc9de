// The upload page: chosen files listed (each removable), files dropped anywhere on the page,
// the server's own checks made before a byte leaves the page, and the upload's progress.
// htmx sends the form, so a refusal swaps in only the errors and the chosen files stay.
// Without this script the form is a plain post and the server says the same things.
(() => {
  "use strict";
  const form = document.getElementById("upload-form");
  if (!form) return;
  // The limits dashboard.forms.ThumbnailJobForm enforces, from settings via the template.
  const limits = JSON.parse(document.getElementById("upload-limits").textContent);
  const input = form.elements.images;
  const list = document.getElementById("file-list");
  const summary = document.getElementById("chosen-summary");
  const progress = document.getElementById("upload-progress");
  const bar = progress.querySelector("[role=progressbar]");
  const status = document.getElementById("upload-status");
  let chosen = []; // input.files always holds exactly these, in this order
  let recheck = false; // after a refusal here, errors follow every change

  form.classList.add("enhanced");
  // Our checks name every problem; the browser's bubble cannot point at the hidden file input.
  form.noValidate = true;

  // jobs.units.byte_size, so both sides word sizes alike.
  function bytes(n) {
    if (n < 1024) return `${n}\u00a0byte${n === 1 ? "" : "s"}`;
    const units = ["KB", "MB", "GB", "TB", "PB"];
    let value = n / 1024;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return `${value.toFixed(1).replace(/\.0$/, "")}\u00a0${units[unit]}`;
  }

  // Why the server would leave this file out, when the browser can already tell.
  function fileProblem(file) {
    // An empty type is a name the browser does not know: the server reads the content.
    if (file.type && !file.type.startsWith("image/")) return `not an image (${file.type}).`;
    if (file.size > limits.max_file_bytes) {
      return `the file is ${bytes(file.size)}; the limit is ${bytes(limits.max_file_bytes)}.`;
    }
    return "";
  }

  // jobs.kinds.thumbnails.parse_box: "256" or "800x600", each side 1..max_edge.
  const BOX = /^\s*(-?[0-9]{1,9})\s*(?:[xX]\s*(-?[0-9]{1,9})\s*)?$/;
  function parseBox(text) {
    const match = BOX.exec(text);
    if (!match) {
      const shown = text.trim().length > 20 ? `${text.trim().slice(0, 20)}…` : text.trim();
      return { error: `'${shown}' is not a size: use 256 or 800x600.` };
    }
    const width = Number(match[1]);
    const height = match[2] === undefined ? width : Number(match[2]);
    const fits = (side) => side >= 1 && side <= limits.max_edge;
    if (!fits(width) || !fits(height)) {
      const range = `between 1 and ${limits.max_edge} pixels`;
      return { error: `Size ${width}x${height}: width and height must be ${range}.` };
    }
    return { box: `${width}x${height}` };
  }

  // The form's clean(), field by field: every problem at once.
  function problems() {
    const found = {};
    const add = (name, message) => (found[name] = found[name] || []).push(message);
    const total = chosen.reduce((sum, file) => sum + file.size, 0);
    if (!chosen.length) add("images", "Choose at least one image.");
    if (chosen.length > limits.max_images) {
      add("images", `${chosen.length} files chosen; at most ${limits.max_images} per job.`);
    }
    if (total > limits.max_job_bytes) {
      const limit = bytes(limits.max_job_bytes);
      add("images", `The files come to ${bytes(total)}; the limit per job is ${limit}.`);
    }
    for (const file of chosen) {
      const problem = fileProblem(file);
      if (problem) add("images", `${file.name}: ${problem}`);
    }
    const presets = Array.from(form.querySelectorAll("input[name=sizes]:checked"), (box) => box.value);
    const texts = [...presets, ...form.elements.custom_sizes.value.split(",")];
    const boxes = new Set();
    for (const text of texts.filter((piece) => piece.trim())) {
      const { box, error } = parseBox(text);
      if (error) add("custom_sizes", error);
      else boxes.add(box);
    }
    if (!found.custom_sizes) {
      if (!boxes.size) add("sizes", "Pick at least one size.");
      else if (boxes.size > limits.max_sizes) {
        add("custom_sizes", `${boxes.size} sizes asked for; at most ${limits.max_sizes} per job.`);
      }
    }
    for (const element of form.elements) { // what the browser checks itself: quality's range
      if (element.name && element !== input && !element.checkValidity()) {
        add(element.name, element.validationMessage);
      }
    }
    return found;
  }

  function element(tag, className, text) {
    const made = document.createElement(tag);
    made.className = className;
    made.textContent = text;
    return made;
  }

  // The alert above the form (or none). Looked up each time: a refusal's swap replaces it.
  function say(text) {
    const notice = document.getElementById("upload-alert");
    notice.replaceChildren();
    if (!text) return;
    const message = element("p", "error-message", text);
    message.setAttribute("role", "alert");
    notice.append(message);
  }

  // Each field's messages in its list, where the server puts its own; true if there are any.
  function showProblems(found) {
    for (const errors of form.querySelectorAll("ul.errors[id^=errors-]")) {
      const messages = found[errors.id.slice("errors-".length)] || [];
      errors.replaceChildren(...messages.map((message) => element("li", "", message)));
    }
    const any = Object.keys(found).length > 0;
    say(any ? "Nothing was uploaded yet: fix what is marked below, then start the job." : "");
    return any;
  }

  function setFiles(files) {
    chosen = files;
    const transfer = new DataTransfer();
    for (const file of files) transfer.items.add(file);
    input.files = transfer.files;
    render();
  }

  function addFiles(files) {
    const key = (file) => `${file.name}\u0000${file.size}\u0000${file.lastModified}`;
    const known = new Set(chosen.map(key));
    setFiles([...chosen, ...Array.from(files).filter((file) => !known.has(key(file)))]);
  }

  function render() {
    document.getElementById("chosen").hidden = chosen.length === 0;
    list.replaceChildren(...chosen.map((file, index) => {
      const problem = fileProblem(file);
      const item = element("li", problem ? "file bad" : "file", "");
      const name = Object.assign(element("span", "name", file.name), { title: file.name });
      const remove = Object.assign(element("button", "link", "Remove"), { type: "button" });
      remove.setAttribute("aria-label", `Remove ${file.name}`);
      remove.addEventListener("click", () => setFiles(chosen.filter((_, other) => other !== index)));
      item.append(name, element("span", "size", bytes(file.size)), remove);
      if (problem) item.append(element("span", "problem", problem));
      return item;
    }));
    const total = chosen.reduce((sum, file) => sum + file.size, 0);
    const count = element("span", "", `${chosen.length} of at most ${limits.max_images} images`);
    count.classList.toggle("over", chosen.length > limits.max_images);
    const size = element("span", "", `${bytes(total)} of ${bytes(limits.max_job_bytes)} in all`);
    size.classList.toggle("over", total > limits.max_job_bytes);
    summary.replaceChildren(count, " · ", size);
    if (recheck) showProblems(problems());
  }

  // Quality matters only for lossy output, the background only for padding, JPEG or "opaque".
  function showWhatApplies() {
    const format = form.elements.format.value;
    const fit = form.elements.fit.value;
    const background = fit === "pad" || format === "JPEG" || form.elements.opaque.checked;
    form.querySelector("[data-applies=quality]").classList.toggle("inactive", format === "PNG");
    form.querySelector("[data-applies=background]").classList.toggle("inactive", !background);
  }

  input.addEventListener("change", () => addFiles(input.files));
  document.getElementById("clear-files").addEventListener("click", () => setFiles([]));
  form.addEventListener("change", (event) => {
    showWhatApplies();
    if (recheck && event.target !== input) showProblems(problems());
  });
  showWhatApplies();
  // Files chosen before this script ran (a quick hand, a slow network) count like any other.
  if (input.files.length) addFiles(input.files);

  // Files dragged over any part of the page light up the drop zone; a drop adds them.
  let depth = 0; // dragenter/dragleave pairs: every child element entered counts
  const carriesFiles = (event) => Array.from(event.dataTransfer?.types || []).includes("Files");
  const dragging = (on) => document.body.classList.toggle("dragging-files", on);
  document.addEventListener("dragenter", (event) => {
    if (!carriesFiles(event)) return;
    depth += 1;
    dragging(true);
  });
  document.addEventListener("dragleave", (event) => {
    if (!carriesFiles(event)) return;
    depth = Math.max(depth - 1, 0);
    if (!depth) dragging(false);
  });
  document.addEventListener("dragover", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault(); // a drop target, not a page the browser navigates to the file
    event.dataTransfer.dropEffect = "copy";
  });
  document.addEventListener("drop", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    depth = 0;
    dragging(false);
    addFiles(event.dataTransfer.files);
  });

  // htmx sends the form: stopped here if our checks fail; its upload shown as it goes.
  form.addEventListener("htmx:beforeRequest", (event) => {
    recheck = showProblems(problems());
    if (recheck) event.preventDefault();
  });
  form.addEventListener("htmx:beforeSend", (event) => {
    const upload = event.detail.xhr.upload;
    const show = (percent, text) => {
      bar.setAttribute("aria-valuenow", percent);
      bar.firstElementChild.style.width = `${percent}%`;
      status.textContent = text;
    };
    progress.hidden = false;
    show(0, "Uploading…");
    // xhr.upload only: htmx's own htmx:xhr:progress also counts the answer's download.
    upload.addEventListener("progress", (progressEvent) => {
      if (!progressEvent.lengthComputable) return;
      const percent = Math.floor((progressEvent.loaded / progressEvent.total) * 100);
      const sent = `${bytes(progressEvent.loaded)} of ${bytes(progressEvent.total)}`;
      show(percent, `Uploading… ${percent}% (${sent})`);
    });
    upload.addEventListener("load", () => show(100, "Uploaded; checking the images…"));
  });
  // The form's refusal (400; 429 for a rate or quota) carries its errors: swap them in (htmx
  // leaves 4xx alone). Another 429 (a proxy's limit) has none and gets the message below.
  const refusedByForm = (xhr) =>
    [400, 429].includes(xhr.status) && xhr.responseText.includes('id="upload-alert"');
  form.addEventListener("htmx:beforeSwap", (event) => {
    if (refusedByForm(event.detail.xhr)) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  form.addEventListener("htmx:afterRequest", (event) => {
    const xhr = event.detail.xhr;
    if (xhr.getResponseHeader("HX-Redirect")) {
      status.textContent = "Uploaded. Opening the job…";
      return;
    }
    progress.hidden = true;
    if (refusedByForm(xhr)) return; // its errors are on the page now
    say(xhr.status
      ? `The server could not take the upload (HTTP ${xhr.status}). Your images are still `
        + "chosen: try again in a moment."
      : "The upload did not reach the server. Your images are still chosen: check the "
        + "connection and try again.");
  });
})();
