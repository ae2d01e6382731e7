// The dashboard's few behaviours, on first load and in every piece of content htmx swaps in:
// charts drawn from the Vega-Lite specs the server embeds (legends laid out for the width at
// hand), Ctrl+Enter on the SQL box and its schema sidebar, the run form's model picker, focus on the first form error,
// and live rows that never show twice.
(function () {
  "use strict";

  var EMBED_OPTIONS = {
    renderer: "svg",
    actions: { export: true, source: false, compiled: false, editor: false },
  };
  var LEGEND_ENTRY_PX = 190;

  // Legends wrap into as many columns as the chart's width holds; narrow charts shorten axis labels.
  function fitted(spec, width) {
    var config = Object.assign({}, spec.config);
    config.legend = Object.assign({}, config.legend, {
      columns: Math.max(1, Math.floor((width - 20) / LEGEND_ENTRY_PX)),
    });
    if (width < 480) {
      config.axis = Object.assign({}, config.axis, { labelLimit: 90 });
      config.legend.labelLimit = Math.min(config.legend.labelLimit || 160, width - 60);
    }
    return Object.assign({}, spec, { config: config });
  }

  function draw(element) {
    var source = document.getElementById(element.getAttribute("data-vega-spec"));
    if (!source || element.getAttribute("data-rendered")) return;
    element.setAttribute("data-rendered", "pending");
    var spec = fitted(JSON.parse(source.textContent), element.clientWidth || 320);
    vegaEmbed(element, spec, EMBED_OPTIONS)
      .then(function (result) {
        element.vegaView = result.view; // for tests and the curious: the drawn view's data
        var menu = element.querySelector("details > summary");
        if (menu) menu.setAttribute("aria-label", "Chart actions: save the chart as SVG or PNG");
        element.setAttribute("data-rendered", "true");
      })
      .catch(function (error) {
        element.setAttribute("data-rendered", "error");
        element.textContent = "This chart could not be drawn: " + error.message;
      });
  }

  // The run form's model picker: find by name or family, and say what is selected.
  function setUpModelPicker(root) {
    var picker = root.querySelector ? root.querySelector(".model-picker") : null;
    if (!picker || picker.getAttribute("data-ready")) return;
    picker.setAttribute("data-ready", "true");
    var search = picker.querySelector("#model-search");
    var summary = picker.querySelector("#models-selected");
    var choices = Array.prototype.slice.call(picker.querySelectorAll(".model-choice"));
    function describe() {
      var chosen = choices.filter(function (choice) { return choice.querySelector("input").checked; })
        .map(function (choice) { return choice.getAttribute("data-model"); });
      summary.textContent = chosen.length
        ? chosen.length + " selected: " + chosen.join(", ")
        : "None selected: the priority's default set.";
    }
    search.addEventListener("input", function () {
      var words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
      choices.forEach(function (choice) {
        var text = choice.textContent.toLowerCase();
        choice.hidden = !words.every(function (word) { return text.indexOf(word) !== -1; });
      });
      picker.querySelectorAll(".model-group").forEach(function (group) {
        group.hidden = !group.querySelector(".model-choice:not([hidden])");
      });
    });
    // Enter in the search box filters; it must not send the form.
    search.addEventListener("keydown", function (event) {
      if (event.key === "Enter") event.preventDefault();
    });
    picker.addEventListener("change", describe);
  }

  // The first field in error takes the focus (a fieldset hands it to its first input).
  function focusFirstError(root) {
    if (!root.querySelector) return;
    var invalid = root.querySelector('[aria-invalid="true"]');
    if (!invalid) return;
    var target = invalid.matches("fieldset") ? invalid.querySelector("input, select, textarea") : invalid;
    if (target) target.focus();
  }

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
    if (!event.target.matches || !event.target.matches("#sql-input")) return;
    event.preventDefault();
    event.target.form.requestSubmit();
  });

  // The SQL page's schema sidebar: a name clicked goes into the query at the cursor (a space
  // added where it would run into the word before or after), and the editor keeps the focus.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("#sql-schema [data-insert]");
    var editor = document.getElementById("sql-input");
    if (!button || !editor) return;
    var text = button.getAttribute("data-insert");
    var start = editor.selectionStart, end = editor.selectionEnd, value = editor.value;
    if (start > 0 && /[\w"]/.test(value.charAt(start - 1))) text = " " + text;
    if (end < value.length && /[\w"]/.test(value.charAt(end))) text = text + " ";
    editor.focus();
    editor.setRangeText(text, start, end, "end");
    editor.dispatchEvent(new Event("input", { bubbles: true }));
  });

  // The sidebar starts open where there is room beside the editor, closed on a phone.
  function openWhereWide(root) {
    if (!root.querySelectorAll || !window.matchMedia("(min-width: 901px)").matches) return;
    root.querySelectorAll("details[data-open-wide]").forEach(function (details) { details.open = true; });
  }

  // A live row the page already shows (rendered with the page, or sent again after a
  // reconnect) is not appended twice.
  document.body.addEventListener("htmx:sseBeforeMessage", function (event) {
    var message = event.detail;
    if (!message || message.type !== "result") return;
    var holder = document.createElement("tbody");
    holder.innerHTML = message.data;
    var row = holder.querySelector("tr[data-key]");
    if (!row) return;
    var key = row.getAttribute("data-key");
    var shown = document.querySelectorAll("#run-results-body tr[data-key]");
    for (var i = 0; i < shown.length; i++) {
      if (shown[i].getAttribute("data-key") === key) { event.preventDefault(); return; }
    }
  });

  htmx.onLoad(function (root) {
    if (root.matches && root.matches("[data-vega-spec]")) draw(root);
    if (root.querySelectorAll) root.querySelectorAll("[data-vega-spec]").forEach(draw);
    setUpModelPicker(root.matches && root.matches(".model-picker") ? root.parentNode : root);
    if (root.querySelector && root.querySelector("#run-form-errors")) focusFirstError(root);
    openWhereWide(root);
  });
})();
