// A little progressive enhancement: the pages work without it.
document.addEventListener("submit", function (ev) {
  var b = ev.submitter || ev.target.querySelector("[data-confirm]");
  var text = b && b.getAttribute && b.getAttribute("data-confirm");
  if (text && !window.confirm(text)) { ev.preventDefault(); }
});
