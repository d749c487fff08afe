(function () {
  var form = document.getElementById("search"), list = document.getElementById("names");
  form.hidden = false;
  fetch("packages.json").then(function (r) { return r.json(); }).then(function (rows) {
    var input = form.q;
    input.addEventListener("input", function () {
      var q = input.value.toLowerCase().replace(/[-_.]+/g, "-"), shown = 0;
      list.textContent = "";
      for (var i = 0; i < rows.length && shown < 20; i++) {
        if (rows[i][0].indexOf(q) === 0) {
          var option = document.createElement("option");
          option.value = rows[i][0];
          list.appendChild(option);
          shown++;
        }
      }
    });
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var name = form.q.value.trim().toLowerCase().replace(/[-_.]+/g, "-");
    if (name) { window.location.href = "project/" + encodeURIComponent(name) + "/"; }
  });
})();
