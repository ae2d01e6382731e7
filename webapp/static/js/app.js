// Draws the Vega-Lite specs the server embeds in pages, on first load and in every piece of
// content htmx swaps in (filters, sorting, live run updates, SQL results).
(function () {
  "use strict";

  var EMBED_OPTIONS = {
    renderer: "svg",
    actions: { export: true, source: false, compiled: false, editor: false },
  };

  function draw(element) {
    var source = document.getElementById(element.getAttribute("data-vega-spec"));
    if (!source || element.getAttribute("data-rendered")) return;
    element.setAttribute("data-rendered", "pending");
    vegaEmbed(element, JSON.parse(source.textContent), EMBED_OPTIONS)
      .then(function () { element.setAttribute("data-rendered", "true"); })
      .catch(function (error) {
        element.setAttribute("data-rendered", "error");
        element.textContent = "This chart could not be drawn: " + error.message;
      });
  }

  htmx.onLoad(function (root) {
    if (root.matches && root.matches("[data-vega-spec]")) draw(root);
    if (root.querySelectorAll) root.querySelectorAll("[data-vega-spec]").forEach(draw);
  });
})();
