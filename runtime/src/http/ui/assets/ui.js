// reprise web UI: live regions (SSE with a polling fallback), action buttons, forms built
// from JSON Schemas, login. Plain JavaScript, no framework, no other origin.
"use strict";

(function () {
  const JSON_HEADERS = { "Content-Type": "application/json", "Accept": "application/json" };

  // ---- live regions -------------------------------------------------------------------
  // <div data-live data-fragment="URL" data-stream="SSE URL" data-poll="ms">: its content is
  // re-fetched from data-fragment whenever the stream sends a message, or every data-poll
  // ms when the stream is unavailable. A fragment holding [data-done="true"] ends it.
  function Live(el) {
    this.el = el;
    this.fragment = el.dataset.fragment;
    this.pollMs = parseInt(el.dataset.poll || "2000", 10);
    this.last = null;
    this.timer = null;
    this.pending = false;
    this.stopped = false;
    this.dot = document.querySelector("[data-live-dot]");
    if (this.isDone()) { this.setDot("off", "ended"); return; }
    if (el.dataset.stream && "EventSource" in window) { this.stream(el.dataset.stream); }
    else { this.poll(); }
  }
  Live.prototype.isDone = function () {
    return !!this.el.querySelector('[data-done="true"]');
  };
  Live.prototype.setDot = function (state, title) {
    if (!this.dot) return;
    this.dot.className = "live-dot " + state;
    this.dot.title = title;
    this.dot.dataset.mode = state;
  };
  Live.prototype.stream = function (url) {
    const self = this;
    const es = new EventSource(url);
    this.es = es;
    es.onopen = function () { self.setDot("on", "live (server-sent events)"); };
    const kick = function () { self.schedule(150); };
    es.addEventListener("event", kick);
    es.addEventListener("run", kick);
    es.addEventListener("end", function () { es.close(); self.schedule(0); });
    es.onerror = function () {
      // No stream here (an older server, a proxy that buffers) or it broke: poll instead.
      es.close();
      if (!self.stopped) { self.poll(); }
    };
  };
  Live.prototype.poll = function () {
    const self = this;
    this.setDot("poll", "live (polling every " + this.pollMs + " ms)");
    if (this.interval) return;
    this.interval = setInterval(function () { self.refresh(); }, this.pollMs);
  };
  Live.prototype.stop = function () {
    this.stopped = true;
    if (this.interval) { clearInterval(this.interval); this.interval = null; }
    if (this.es) { this.es.close(); }
    this.setDot("off", "ended");
  };
  Live.prototype.busyForm = function () {
    const now = Date.now();
    return Array.from(this.el.querySelectorAll("form")).some(function (form) {
      return form.contains(document.activeElement) && document.activeElement !== form.querySelector("button[type=submit]")
        || (form.dataset.editedAt && now - Number(form.dataset.editedAt) < 20000);
    });
  };
  Live.prototype.schedule = function (ms) {
    const self = this;
    if (this.timer) return;
    this.timer = setTimeout(function () { self.timer = null; self.refresh(); }, ms);
  };
  Live.prototype.refresh = function (force) {
    const self = this;
    if (this.pending) { this.schedule(200); return Promise.resolve(); }
    // Never replace a form someone is filling in (focused, or edited in the last 20 s):
    // it is tried again in 2 s.
    if (!force && this.busyForm()) { this.schedule(2000); return Promise.resolve(); }
    this.pending = true;
    return fetch(this.fragment, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (r.status === 401 || r.redirected) { location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (text) {
        if (text === null || text === self.last) return;
        self.last = text;
        const open = Array.from(self.el.querySelectorAll("details[open][data-key]")).map(function (d) { return d.dataset.key; });
        self.el.innerHTML = text;
        open.forEach(function (key) {
          const d = self.el.querySelector('details[data-key="' + CSS.escape(key) + '"]');
          if (d) d.open = true;
        });
        self.el.dispatchEvent(new CustomEvent("live:updated", { bubbles: true }));
        if (self.isDone()) self.stop();
      })
      .catch(function () { /* a failed poll: the next one tries again */ })
      .finally(function () { self.pending = false; });
  };

  const lives = [];
  function liveOf(el) {
    const region = el.closest("[data-live]");
    return lives.find(function (l) { return l.el === region; }) || lives[0];
  }
  function refreshAll() {
    // A page without a live region shows what the action changed after a reload.
    if (!lives.length) { location.reload(); return Promise.resolve(); }
    return Promise.all(lives.map(function (l) { return l.refresh(true); }));
  }

  // ---- messages --------------------------------------------------------------------------
  function flash(text, isError) {
    const box = document.getElementById("flash");
    if (!box) { if (isError) alert(text); return; }
    box.innerHTML = "";
    const p = document.createElement("p");
    p.className = isError ? "err" : "ok";
    p.textContent = text;
    box.appendChild(p);
    if (!isError) setTimeout(function () { if (p.parentNode === box) box.removeChild(p); }, 4000);
  }
  function errorText(body, status) {
    if (body && body.error) return body.error;
    return "The server answered " + status + ".";
  }
  function readJson(response) {
    return response.text().then(function (text) {
      try { return text ? JSON.parse(text) : null; } catch (e) { return null; }
    });
  }

  // ---- action buttons ------------------------------------------------------------------
  // <button data-post="/runs/ID/cancel" data-confirm="…" data-then="navigate|refresh">
  function onAction(button) {
    if (button.dataset.confirm && !confirm(button.dataset.confirm)) return;
    button.disabled = true;
    fetch(button.dataset.post, { method: "POST", credentials: "same-origin", headers: JSON_HEADERS })
      .then(function (r) {
        return readJson(r).then(function (body) {
          if (!r.ok) { flash(errorText(body, r.status), true); return; }
          if (button.dataset.then === "navigate" && body && body.run_id) {
            location.href = "/ui/runs/" + encodeURIComponent(body.run_id);
            return;
          }
          flash(button.dataset.done || "Done.", false);
          return refreshAll();
        });
      })
      .catch(function (e) { flash("The request failed: " + e, true); })
      .finally(function () { button.disabled = false; });
  }

  // ---- forms built from JSON Schemas -----------------------------------------------------
  // Each field: <div class="field" data-pointer="/name"> with a control [data-name][data-type]
  // (string, number, integer, boolean, select, json) and a .violations box.
  function fieldError(field, message) {
    field.classList.add("invalid");
    const box = field.querySelector(".violations");
    const line = document.createElement("div");
    line.textContent = message;
    box.appendChild(line);
  }
  function clearErrors(form) {
    form.querySelectorAll(".field").forEach(function (f) {
      f.classList.remove("invalid");
      f.querySelector(".violations").innerHTML = "";
    });
    const general = form.querySelector(".form-error");
    if (general) general.innerHTML = "";
  }
  function generalError(form, message) {
    const general = form.querySelector(".form-error");
    const line = document.createElement("div");
    line.textContent = message;
    general.appendChild(line);
  }
  function collect(form) {
    let payload;
    let ok = true;
    const fields = Array.from(form.querySelectorAll(".field"));
    fields.forEach(function (field) {
      const control = field.querySelector("[data-type]");
      const type = control.dataset.type;
      const name = control.dataset.name;
      const required = control.hasAttribute("data-required");
      let value;
      let present = true;
      if (type === "boolean") {
        value = control.checked;
      } else if (type === "select") {
        if (control.value === "") { present = false; } else { value = JSON.parse(control.value); }
      } else if (type === "number" || type === "integer") {
        if (control.value.trim() === "") { present = false; } else { value = Number(control.value); }
      } else if (type === "json") {
        const text = control.value.trim();
        if (text === "") { present = false; } else {
          try { value = JSON.parse(text); } catch (e) {
            ok = false; fieldError(field, "not valid JSON: " + e.message);
          }
        }
      } else {
        if (control.value === "" && !required) { present = false; } else { value = control.value; }
      }
      if (required && !present && type !== "json") { present = true; value = type === "string" ? "" : null; }
      if (!present) return;
      if (name === undefined) { payload = value; return; }
      if (payload === undefined) payload = {};
      payload[name] = value;
    });
    if (payload === undefined) payload = fields.length && !fields[0].querySelector("[data-type]").dataset.name ? null : {};
    return ok ? payload : undefined;
  }
  function fieldFor(form, pointer) {
    let best = null;
    form.querySelectorAll(".field").forEach(function (field) {
      const p = field.dataset.pointer;
      if (p === pointer || (p !== "" && pointer.indexOf(p + "/") === 0) || p === "") {
        if (!best || p.length > best.dataset.pointer.length) best = field;
      }
    });
    return best;
  }
  function showViolations(form, violations) {
    violations.forEach(function (v) {
      let pointer = v.pointer || "";
      // A missing property is reported at its parent: point at the property's own field.
      const missing = /"([^"]+)" is a required property/.exec(v.message || "");
      if (missing) pointer = (pointer === "/" ? "" : pointer) + "/" + missing[1].replace(/~/g, "~0").replace(/\//g, "~1");
      const field = fieldFor(form, pointer);
      const text = (v.pointer ? v.pointer + ": " : "") + v.message;
      if (field) fieldError(field, text); else generalError(form, text);
    });
  }
  function onSubmit(form) {
    clearErrors(form);
    const payload = collect(form);
    if (payload === undefined) return;
    const button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    fetch(form.dataset.action, {
      method: "POST", credentials: "same-origin", headers: JSON_HEADERS, body: JSON.stringify(payload),
    })
      .then(function (r) {
        return readJson(r).then(function (body) {
          if (!r.ok) {
            if (body && Array.isArray(body.violations) && body.violations.length) {
              showViolations(form, body.violations);
            } else {
              generalError(form, errorText(body, r.status));
            }
            form.dataset.rejected = String(r.status);
            return;
          }
          delete form.dataset.editedAt;
          if (form.dataset.then === "run" && body && body.run_id) {
            location.href = "/ui/runs/" + encodeURIComponent(body.run_id);
            return;
          }
          flash(form.dataset.done || "Sent.", false);
          return refreshAll();
        });
      })
      .catch(function (e) { generalError(form, "The request failed: " + e); })
      .finally(function () { if (button) button.disabled = false; });
  }

  // ---- login -----------------------------------------------------------------------------
  function onLogin(form) {
    const error = form.querySelector(".form-error");
    error.textContent = "";
    fetch("/ui/login", {
      method: "POST", credentials: "same-origin", headers: JSON_HEADERS,
      body: JSON.stringify({ token: form.querySelector("input[name=token]").value }),
    })
      .then(function (r) {
        if (r.ok) { location.href = form.dataset.next || "/ui"; return; }
        return readJson(r).then(function (body) { error.textContent = errorText(body, r.status); });
      })
      .catch(function (e) { error.textContent = "The request failed: " + e; });
  }

  // ---- wiring ----------------------------------------------------------------------------
  document.addEventListener("click", function (e) {
    const button = e.target.closest("button[data-post]");
    if (button) { e.preventDefault(); onAction(button); }
  });
  document.addEventListener("submit", function (e) {
    const form = e.target;
    if (form.matches("form.schema-form")) { e.preventDefault(); onSubmit(form); }
    else if (form.matches("form#login")) { e.preventDefault(); onLogin(form); }
  });
  document.addEventListener("input", function (e) {
    const form = e.target.closest("form.schema-form");
    if (form) form.dataset.editedAt = String(Date.now());
  });
  document.addEventListener("change", function (e) {
    if (e.target.matches("form.filters select[data-autosubmit]")) e.target.form.submit();
  });
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(function (el) { lives.push(new Live(el)); });
    window.repriseLive = lives;
  });
})();
