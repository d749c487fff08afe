(function () {
  // packages.json rows: [name, downloads in the last 30 days, all time, summary],
  // already most downloaded first (publish.pages.packages_json). So the names
  // offered are the first 20 that start with what was typed, in the file's order,
  // found by one scan that stops at the 20th: no sort on a keystroke. The name
  // typed in full, if there is such a project, comes first.
  var LIMIT = 20;
  var form = document.getElementById("search"), list = document.getElementById("names");
  form.hidden = false;
  fetch("packages.json").then(function (r) { return r.json(); }).then(function (rows) {
    var input = form.q, byName = Object.create(null);
    rows.forEach(function (row) { byName[row[0]] = row; });
    input.addEventListener("input", function () {
      var q = input.value.trim().toLowerCase().replace(/[-_.]+/g, "-");
      var exact = byName[q], found = exact ? [exact] : [];
      list.textContent = "";
      for (var i = 0; i < rows.length && found.length < LIMIT; i++) {
        if (rows[i] !== exact && rows[i][0].indexOf(q) === 0) { found.push(rows[i]); }
      }
      found.forEach(function (row) {
        var option = document.createElement("option");
        option.value = row[0];
        option.label = row[0] + " (" + row[1].toLocaleString("en") + " downloads in 30 days)";
        list.appendChild(option);
      });
    });
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var name = form.q.value.trim().toLowerCase().replace(/[-_.]+/g, "-");
    if (name) { window.location.href = "project/" + encodeURIComponent(name) + "/"; }
  });
})();
