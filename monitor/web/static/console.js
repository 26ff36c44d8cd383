// The live timeline: new alerts arrive as server-sent events from /events and are added to
// the top of the table. Built with textContent only: alert text is never parsed as HTML.
(function () {
  "use strict";
  var table = document.getElementById("timeline");
  if (!table || !table.dataset.live || !window.EventSource) return;
  var body = table.tBodies[0];
  var rule = table.dataset.rule, severity = table.dataset.severity;
  var source = new EventSource("/events?after=" + encodeURIComponent(table.dataset.live));
  function cell(row, text) {
    var td = row.insertCell(-1);
    td.textContent = text == null ? "" : String(text);
    return td;
  }
  source.addEventListener("alert", function (ev) {
    var a = JSON.parse(ev.data);
    if ((rule && a.rule !== rule) || (severity && a.severity !== severity)) return;
    var empty = body.querySelector("tr.empty");
    if (empty) empty.remove();
    var row = body.insertRow(0);
    row.className = "new sev-" + a.severity;
    cell(row, (a.created_at || "").slice(0, 19).replace("T", " "));
    cell(row, a.rule);
    cell(row, a.severity);
    var link = document.createElement("a");
    link.href = "/alerts/" + a.id;
    link.className = "alert-link";
    link.textContent = a.title || a.url;
    cell(row, "").appendChild(link);
    cell(row, a.feed);
    var td = cell(row, "");
    Object.keys(a.deliveries || {}).sort().forEach(function (k) {
      var span = document.createElement("span");
      span.className = "st st-" + k;
      span.textContent = a.deliveries[k] + " " + k;
      td.appendChild(span);
      td.appendChild(document.createTextNode(" "));
    });
  });
})();
