(function () {
  // packages.json rows: [name, downloads in the last 30 days, all time, summary,
  // version], most downloaded first; the names offered are ranked the same way,
  // after the name typed in full, if there is such a project.
  var form = document.getElementById("search"), list = document.getElementById("names");
  form.hidden = false;
  fetch("packages.json").then(function (r) { return r.json(); }).then(function (rows) {
    var input = form.q;
    input.addEventListener("input", function () {
      var q = input.value.toLowerCase().replace(/[-_.]+/g, "-"), found = [];
      list.textContent = "";
      for (var i = 0; i < rows.length; i++) {
        if (rows[i][0].indexOf(q) === 0) { found.push(rows[i]); }
      }
      found.sort(function (a, b) {
        return (b[0] === q) - (a[0] === q) || b[1] - a[1] || b[2] - a[2] ||
          (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
      });
      found.slice(0, 20).forEach(function (row) {
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
