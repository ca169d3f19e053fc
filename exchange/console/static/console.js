/* The console's progressive enhancement. Every page works without it; with it:
   - regions marked data-refresh="N" refresh every N seconds (the page is fetched again in
     the background and the region swapped, never while focus is inside it);
   - compose forms add and remove list items and switch kinds at once, and show fields
     that apply only to urgent requests when the request is urgent;
   - the case feed follows the gateway's Server-Sent Events stream.
   It never builds HTML from strings: text goes in with textContent, markup only from the
   server's own (autoescaped) pages through DOMParser. Content-Security-Policy forbids
   inline script, so everything is here. */
(function () {
  "use strict";

  document.documentElement.classList.add("js");

  var INVISIBLE = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ufff9-\ufffb]/g;

  function announce(text) {
    var live = document.getElementById("announce");
    if (live) {
      live.textContent = "";
      window.setTimeout(function () { live.textContent = text; }, 50);
    }
  }

  /* Text from elsewhere, as the server shows it: isolated, hidden controls made visible. */
  function shown(value) {
    var bdi = document.createElement("bdi");
    var text = value === null || value === undefined ? "" : String(value);
    var last = 0;
    text.replace(INVISIBLE, function (ch, at) {
      bdi.appendChild(document.createTextNode(text.slice(last, at)));
      var mark = document.createElement("span");
      var code = ch.charCodeAt(0).toString(16).toUpperCase();
      while (code.length < 4) { code = "0" + code; }
      mark.className = "ctl";
      mark.title = "invisible character U+" + code;
      mark.textContent = "[U+" + code + "]";
      bdi.appendChild(mark);
      last = at + ch.length;
      return ch;
    });
    bdi.appendChild(document.createTextNode(text.slice(last)));
    return bdi;
  }

  /* ---- live refresh of regions ---------------------------------------------------- */

  function refresh(region) {
    var seconds = parseInt(region.getAttribute("data-refresh"), 10);
    if (!(seconds > 0)) { return; }
    var timer = window.setInterval(function () {
      var current = document.getElementById(region.id);
      if (!current || !current.hasAttribute("data-refresh")) {
        window.clearInterval(timer);
        return;
      }
      if (document.hidden || current.contains(document.activeElement)) { return; }
      fetch(window.location.href, {
        headers: { "X-Console-Refresh": "1" },
        credentials: "same-origin",
        cache: "no-store",
        redirect: "error"
      }).then(function (response) {
        if (response.status === 401) {
          window.clearInterval(timer);
          announce("Your session ended: sign in again to see new messages.");
          return null;
        }
        return response.ok ? response.text() : null;
      }).then(function (html) {
        if (html === null || html === undefined) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(region.id);
        var now = document.getElementById(region.id);
        if (!fresh || !now || now.contains(document.activeElement)) { return; }
        var before = ids(now);
        var added = Array.prototype.filter.call(fresh.querySelectorAll("[data-id]"), function (row) {
          return before.indexOf(row.getAttribute("data-id")) < 0;
        });
        now.replaceWith(document.importNode(fresh, true));
        if (added.length && before.length) {
          announce(added.length + (added.length === 1 ? " new item" : " new items"));
        }
      }).catch(function () { /* offline for a moment: the next tick tries again */ });
    }, seconds * 1000);
  }

  function ids(element) {
    return Array.prototype.map.call(element.querySelectorAll("[data-id]"), function (row) {
      return row.getAttribute("data-id");
    });
  }

  /* ---- compose: lists, kinds, conditional fields ---------------------------------- */

  var ATTRIBUTES = ["name", "id", "for", "aria-describedby", "value", "data-item", "data-list",
    "data-template", "data-add", "data-choice"];

  function rename(root, from, to) {
    var elements = [root].concat(Array.prototype.slice.call(root.querySelectorAll("*")));
    elements.forEach(function (element) {
      ATTRIBUTES.forEach(function (attribute) {
        var value = element.getAttribute && element.getAttribute(attribute);
        if (value && value.indexOf(from) >= 0) {
          element.setAttribute(attribute, value.split(from).join(to));
        }
      });
      if (element.tagName === "TEMPLATE") {
        Array.prototype.forEach.call(element.content.children, function (child) {
          rename(child, from, to);
        });
      }
    });
  }

  function childOf(parent, selector) {
    return Array.prototype.filter.call(parent.children, function (child) {
      return child.matches(selector);
    })[0] || null;
  }

  function renumber(list) {
    var items = childOf(list, "ol.list-items");
    if (!items) { return; }
    Array.prototype.forEach.call(items.children, function (li, index) {
      li.querySelectorAll(":scope > fieldset > legend > .n, :scope > fieldset > [data-remove] > .n, " +
        ":scope > .list-scalar > .field > label > .n, :scope > .list-scalar > [data-remove] > .n")
        .forEach(function (span) { span.textContent = String(index + 1); });
    });
  }

  function addItem(button) {
    var path = button.getAttribute("data-add");
    var list = button.closest("[data-list]");
    var template = list && childOf(list, "template[data-template]");
    var items = list && childOf(list, "ol.list-items");
    if (!template || !items) { return false; }
    var next = parseInt(list.getAttribute("data-next"), 10) || 0;
    var item = template.content.firstElementChild.cloneNode(true);
    rename(item, path + ".__new__", path + "." + next);
    list.setAttribute("data-next", String(next + 1));
    items.appendChild(item);
    renumber(list);
    wireConditions(item);
    var first = item.querySelector("input, select, textarea");
    if (first) { first.focus(); }
    announce(list.getAttribute("data-item-label") + " " + items.children.length + " added");
    return true;
  }

  function removeItem(button) {
    var li = button.closest("li[data-item]");
    var list = li && li.closest("[data-list]");
    if (!li || !list) { return false; }
    li.remove();
    renumber(list);
    var add = childOf(list, "[data-add]");
    if (add) { add.focus(); }
    announce(list.getAttribute("data-item-label") + " removed");
    return true;
  }

  function switchKind(select) {
    var choice = select.closest("[data-choice]");
    var current = choice && childOf(choice, ".variant");
    var wanted = choice && childOf(choice, "template[data-variant-template=\"" + select.value + "\"]");
    if (!current || !wanted) { return; }
    var keep = document.createElement("template");
    keep.setAttribute("data-variant-template", current.getAttribute("data-variant"));
    current.replaceWith(keep);
    keep.content.appendChild(current);
    var shown = wanted.content.firstElementChild;
    wanted.replaceWith(shown);
    wireConditions(shown);
    announce("Fields for " + select.options[select.selectedIndex].text);
  }

  function conditionMet(form, name, expected) {
    var allowed = expected.split(" ");
    var controls = form.querySelectorAll("[name=\"" + CSS.escape(name) + "\"]");
    return Array.prototype.some.call(controls, function (control) {
      if (control.type === "radio" || control.type === "checkbox") {
        return control.checked && allowed.indexOf(control.value) >= 0;
      }
      return allowed.indexOf(control.value) >= 0;
    });
  }

  function applyCondition(element) {
    var form = element.closest("form");
    if (!form) { return; }
    var met = conditionMet(form, element.getAttribute("data-when-name"), element.getAttribute("data-when-value"));
    element.hidden = !met;
    element.querySelectorAll("input, select, textarea").forEach(function (control) {
      control.disabled = !met;
    });
  }

  function wireConditions(root) {
    root.querySelectorAll("[data-when-name]").forEach(applyCondition);
  }

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    var add = target && target.closest("[data-add]");
    if (add && addItem(add)) { event.preventDefault(); return; }
    var remove = target && target.closest("[data-remove]");
    if (remove && removeItem(remove)) { event.preventDefault(); }
  });

  document.addEventListener("change", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (!target) { return; }
    if (target.matches("[data-variant-select]")) { switchKind(target); }
    var form = target.closest("form");
    if (form && target.name) {
      form.querySelectorAll("[data-when-name=\"" + CSS.escape(target.name) + "\"]").forEach(applyCondition);
    }
  });

  /* ---- the case feed --------------------------------------------------------------- */

  function when(value) {
    var time = document.createElement("time");
    time.setAttribute("datetime", String(value));
    time.textContent = String(value).slice(0, 19).replace("T", " ") + " UTC";
    return time;
  }

  function updateItem(data) {
    var li = document.createElement("li");
    li.className = "fresh";
    li.setAttribute("data-id", String(data.id));
    var p = document.createElement("p");
    var strong = document.createElement("strong");
    strong.appendChild(shown(data.event));
    p.appendChild(strong);
    p.appendChild(document.createTextNode(" in case "));
    var link = document.createElement("a");
    link.href = "/console/cases/" + encodeURIComponent(String(data["case"]));
    link.appendChild(shown(data["case"]));
    p.appendChild(link);
    p.appendChild(document.createTextNode(" on "));
    p.appendChild(shown(data.network));
    p.appendChild(document.createTextNode(", from "));
    p.appendChild(shown(data.sender));
    p.appendChild(document.createTextNode(", "));
    p.appendChild(when(data.created_at));
    li.appendChild(p);
    var summary = data.update && data.update.summary;
    if (summary !== undefined) {
      var text = document.createElement("p");
      text.className = "v text";
      text.appendChild(shown(summary));
      li.appendChild(text);
    }
    return li;
  }

  function follow(status) {
    var list = document.getElementById("feed");
    if (!list || !window.EventSource) { return; }
    var source = new EventSource(status.getAttribute("data-stream"));
    source.onopen = function () { status.textContent = "Live: new case updates appear at the top."; };
    source.addEventListener("case-update", function (event) {
      var data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      if (list.querySelector("[data-id=\"" + CSS.escape(String(data.id)) + "\"]")) { return; }
      var empty = list.querySelector("li.empty");
      if (empty) { empty.remove(); }
      list.insertBefore(updateItem(data), list.firstChild);
      announce("New case update: " + String(data.event) + " in case " + String(data["case"]));
    });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        status.textContent = "The live feed stopped (your session may have ended): reload the page or sign in again.";
      } else {
        status.textContent = "Reconnecting to the live feed…";
      }
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-refresh][id]").forEach(refresh);
    wireConditions(document);
    var status = document.getElementById("feed-status");
    if (status && status.hasAttribute("data-stream")) { follow(status); }
    var summary = document.getElementById("error-summary");
    if (summary) { summary.focus(); }
  });
})();
