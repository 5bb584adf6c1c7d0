// The page: draw on a canvas with Pointer Events, send it as PNG to /api/predict while drawing
// (at most one request in flight, one every THROTTLE_MS) and on release, and show the answer.
"use strict";

const THROTTLE_MS = 150;
const LINE_WIDTH = 18; // in canvas pixels (280 wide): a pen stroke, thick as MNIST's are

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const inputView = document.getElementById("input").getContext("2d");
const digitOut = document.getElementById("digit");
const bars = document.getElementById("bars");
const statusLine = document.getElementById("status");

let drawing = false;
let inked = false;
let last = null;
let inFlight = false;
let pending = false; // a newer drawing waits for the request in flight
let lastSent = 0;
let throttleTimer = null;
let generation = 0; // bumped by every clear: an answer to an earlier drawing is dropped

function clearPad() {
  generation += 1;
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  inked = false;
  pending = false;
  digitOut.textContent = "?";
  showBars(null);
  inputView.clearRect(0, 0, 28, 28);
  setStatus("Waiting for a digit.");
}

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

// -- the bars --------------------------------------------------------------------------------

const rows = [];
for (let d = 0; d < 10; d++) {
  const li = document.createElement("li");
  li.innerHTML =
    `<span class="d">${d}</span><span class="track"><span class="fill"></span></span>` +
    `<span class="pct">–</span>`;
  li.setAttribute("aria-label", `${d}: no answer yet`);
  bars.appendChild(li);
  rows.push(li);
}

function showBars(probabilities) {
  const top = probabilities ? probabilities.indexOf(Math.max(...probabilities)) : -1;
  rows.forEach((li, d) => {
    const p = probabilities ? probabilities[d] : 0;
    li.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
    li.querySelector(".pct").textContent = probabilities ? `${(100 * p).toFixed(1)}%` : "–";
    li.classList.toggle("top", d === top);
    li.setAttribute("aria-label", probabilities ? `${d}: ${(100 * p).toFixed(1)} percent` : `${d}: no answer yet`);
  });
}

function showInput(rowsOf28) {
  const img = inputView.createImageData(28, 28);
  rowsOf28.forEach((row, y) =>
    row.forEach((v, x) => {
      const i = 4 * (28 * y + x);
      img.data[i] = img.data[i + 1] = img.data[i + 2] = Math.round(255 * v);
      img.data[i + 3] = 255;
    }),
  );
  inputView.putImageData(img, 0, 0);
}

// -- asking the server -----------------------------------------------------------------------

function setBusy(busy) {
  document.body.dataset.busy = busy ? "1" : "0"; // for tests: an answer is still to come
}

async function ask(body, type, asked = generation) {
  inFlight = true;
  setBusy(true);
  lastSent = performance.now();
  try {
    const response = await fetch("/api/predict", {
      method: "POST",
      headers: { "Content-Type": type },
      body,
    });
    const answer = await response.json();
    if (asked !== generation) return; // the pad was cleared while this was in flight
    if (!response.ok) {
      setStatus(answer.error || `The server answered ${response.status}.`, true);
      if (response.status === 422) {
        digitOut.textContent = "?";
        showBars(null);
      }
      return;
    }
    digitOut.textContent = String(answer.digit);
    showBars(answer.probabilities);
    showInput(answer.input);
    setStatus(`Read as ${answer.digit} (${(100 * answer.probabilities[answer.digit]).toFixed(1)}%).`);
  } catch (err) {
    setStatus(`No answer from the server: ${err.message}`, true);
  } finally {
    inFlight = false;
    if (pending) {
      pending = false;
      sendDrawing();
    } else {
      setBusy(false);
    }
  }
}

function sendDrawing() {
  if (!inked) return;
  if (inFlight) {
    pending = true;
    return;
  }
  setBusy(true); // from now, not only once toBlob calls back
  const asked = generation; // the drawing as it is now, even if cleared before toBlob calls back
  pad.toBlob((blob) => (blob ? ask(blob, "image/png", asked) : setBusy(false)), "image/png");
}

function sendThrottled() {
  const wait = THROTTLE_MS - (performance.now() - lastSent);
  if (wait <= 0) {
    sendDrawing();
  } else if (!throttleTimer) {
    throttleTimer = setTimeout(() => {
      throttleTimer = null;
      if (drawing) sendDrawing();
    }, wait);
  }
}

// -- drawing ---------------------------------------------------------------------------------

function point(event) {
  const box = pad.getBoundingClientRect();
  return {
    x: ((event.clientX - box.left) * pad.width) / box.width,
    y: ((event.clientY - box.top) * pad.height) / box.height,
  };
}

function stroke(from, to) {
  ctx.strokeStyle = "#000";
  ctx.lineWidth = LINE_WIDTH;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(from.x, from.y);
  ctx.lineTo(to.x, to.y);
  ctx.stroke();
}

pad.addEventListener("pointerdown", (event) => {
  if (event.button !== 0) return;
  pad.setPointerCapture(event.pointerId);
  drawing = true;
  last = point(event);
  stroke(last, last); // a dot for a tap
  inked = true;
  sendThrottled();
});

pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events.length ? events : [event]) {
    const p = point(e);
    stroke(last, p);
    last = p;
  }
  sendThrottled();
});

function endStroke() {
  if (!drawing) return;
  drawing = false;
  sendDrawing(); // always an answer for the finished stroke
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

// -- keys, clearing, photos ------------------------------------------------------------------

document.getElementById("clear").addEventListener("click", () => {
  setBusy(false);
  clearPad();
  pad.focus();
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") {
    setBusy(false);
    clearPad();
  }
});

function sendFile(file) {
  if (!file) return;
  if (!["image/png", "image/jpeg"].includes(file.type)) {
    setStatus(`Send a PNG or JPEG photo. Received: ${file.type || "an unknown type"}.`, true);
    return;
  }
  // show the photo on the pad, scaled to fit, so what was read is what is seen; the pad is
  // cleared first, so an answer still on its way for an earlier drawing is dropped, not this one
  clearPad();
  const url = URL.createObjectURL(file);
  const img = new Image();
  img.onload = () => {
    const s = Math.min(pad.width / img.width, pad.height / img.height);
    const w = img.width * s;
    const h = img.height * s;
    ctx.drawImage(img, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
    URL.revokeObjectURL(url);
  };
  img.src = url;
  setStatus(`Reading ${file.name}…`);
  ask(file, file.type);
}

document.getElementById("file").addEventListener("change", (event) => {
  sendFile(event.target.files[0]);
  event.target.value = "";
});
pad.addEventListener("dragover", (event) => {
  event.preventDefault();
  pad.classList.add("dragging");
});
pad.addEventListener("dragleave", () => pad.classList.remove("dragging"));
pad.addEventListener("drop", (event) => {
  event.preventDefault();
  pad.classList.remove("dragging");
  sendFile(event.dataTransfer.files[0]);
});

setBusy(false);
clearPad();
