// Live updates: every element with data-poll="<url>" is refreshed from that server-rendered fragment
// every data-every milliseconds. A job fragment marked data-final ends the poll and reloads the page
// once, to show the final timeline.
(function () {
  "use strict";
  document.querySelectorAll("[data-poll]").forEach(function (el) {
    var url = el.getAttribute("data-poll");
    var every = parseInt(el.getAttribute("data-every") || "3000", 10);
    var busy = false;
    var timer = setInterval(function () {
      if (busy || document.hidden) return;
      busy = true;
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
        .then(function (html) {
          el.innerHTML = html;
          if (el.id === "live" && el.querySelector("[data-final]")) {
            clearInterval(timer);
            location.reload(); // the job moved on: show its final timeline
          }
        })
        .catch(function () { /* keep the last view; try again next tick */ })
        .finally(function () { busy = false; });
    }, every);
  });
})();
