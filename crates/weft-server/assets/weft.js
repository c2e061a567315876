// weft's dashboard script: JSON bodies for the API's buttons and forms (an htmx extension),
// the bearer token, what an action answered, live refresh over server-sent events, and a
// step's output followed as it is written.
(function () {
  "use strict";

  htmx.defineExtension("json", {
    onEvent: function (name, evt) {
      if (name === "htmx:configRequest") {
        evt.detail.headers["Content-Type"] = "application/json";
      }
    },
    encodeParameters: function (xhr, parameters) {
      xhr.overrideMimeType("text/json");
      var body = {};
      parameters.forEach(function (value, key) {
        if (key === "data") {
          // An event's data is a JSON object; what is not JSON goes as text, and the API
          // says what is wrong with it.
          try { body[key] = JSON.parse(value); } catch (e) { body[key] = value; }
        } else {
          body[key] = value;
        }
      });
      return JSON.stringify(body);
    }
  });

  document.addEventListener("htmx:configRequest", function (evt) {
    var token = sessionStorage.getItem("weft-token");
    if (token && evt.detail.verb !== "get") {
      evt.detail.headers["Authorization"] = "Bearer " + token;
    }
  });

  function toast(text, ok) {
    var el = document.getElementById("toast");
    if (!el) return;
    el.textContent = text;
    el.className = ok ? "ok" : "bad";
    el.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(function () { el.hidden = true; }, 8000);
  }

  function refreshAll() {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      htmx.trigger(el, "refresh");
    });
  }

  document.addEventListener("htmx:afterRequest", function (evt) {
    var config = evt.detail.requestConfig;
    if (!config || config.verb === "get") return;
    var xhr = evt.detail.xhr;
    var message = xhr.statusText || "no answer";
    try {
      var answer = JSON.parse(xhr.responseText);
      message = answer.message || answer.detail || message;
    } catch (e) { /* not JSON: keep the status text */ }
    if (xhr.status === 401) {
      var token = window.prompt("This server needs its token to change anything:");
      if (token) {
        sessionStorage.setItem("weft-token", token);
        message = "token kept for this tab; try again";
      }
    }
    toast(message, xhr.status > 0 && xhr.status < 400);
    refreshAll();
  });

  function live(root) {
    root.querySelectorAll("[data-live]").forEach(function (el) {
      if (el.weftSource) return;
      var source = new EventSource(el.getAttribute("data-live"));
      source.addEventListener("change", function () { htmx.trigger(el, "refresh"); });
      el.weftSource = source;
    });
  }

  function follow(pre) {
    if (pre.weftFollowing) return;
    pre.weftFollowing = true;
    var after = 0;
    var ends = {};
    function add(chunk) {
      var key = [chunk.attempt, chunk.action, chunk.task, chunk.stream].join("/");
      var end = ends[key];
      if (end === undefined && Object.keys(ends).indexOf(key) < 0) {
        var head = document.createElement("div");
        head.className = "log-head";
        head.textContent = "── attempt " + chunk.attempt + (chunk.action === "revert" ? " (revert)" : "") +
          (chunk.task ? " · " + chunk.task : "") + " · " + chunk.stream;
        pre.appendChild(head);
      } else if (chunk.offset > end) {
        var cut = document.createElement("div");
        cut.className = "log-cut";
        cut.textContent = "[… " + (chunk.offset - end) + " bytes cut …]";
        pre.appendChild(cut);
      }
      ends[key] = chunk.offset + new TextEncoder().encode(chunk.text).length;
      var span = document.createElement("span");
      span.className = chunk.stream;
      span.textContent = chunk.text;
      pre.appendChild(span);
    }
    function poll() {
      fetch(pre.getAttribute("data-logs") + "&after=" + after)
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (page) {
          if (page) {
            page.chunks.forEach(add);
            after = page.next;
            pre.classList.toggle("empty", pre.childNodes.length === 0);
          }
        })
        .catch(function () { /* the server is away a moment: try again */ })
        .then(function () { setTimeout(poll, 500); });
    }
    poll();
  }

  function start(root) {
    live(root);
    root.querySelectorAll("[data-logs]").forEach(follow);
  }

  document.addEventListener("DOMContentLoaded", function () { start(document); });
  document.addEventListener("htmx:afterSettle", function (evt) { start(evt.detail.elt); });
})();
