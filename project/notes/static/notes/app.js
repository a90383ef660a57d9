document.addEventListener("DOMContentLoaded", function () {
  var input = document.getElementById("id_text");
  if (input) { input.focus(); }
});
