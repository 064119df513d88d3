// Behaviours every page may use, declared in the HTML with data attributes rather than inline
// handlers: the Content-Security-Policy allows no inline script.
(function () {
  "use strict";

  // An htmx action answers 204 with a show-message event: say what happened.
  document.addEventListener("show-message", (event) => {
    const box = document.createElement("div");
    box.className = "banner " + (event.detail.ok ? "ok" : "bad");
    box.setAttribute("role", "status");
    box.textContent = event.detail.text;
    document.getElementById("toast").append(box);
    setTimeout(() => box.remove(), 6000);
  });

  // Delegated, so that rows htmx swaps in later behave the same.
  document.addEventListener("change", (event) => {
    const target = event.target;
    if (target.matches("input[type=checkbox][data-select-all]")) {
      target.closest("table").querySelectorAll("tbody input[type=checkbox]")
        .forEach((box) => { box.checked = target.checked; });
    } else if (target.matches("select[data-autosubmit]") && target.form) {
      target.form.requestSubmit();
    }
  });

  // A long job continues on its own, step after step (the button stays for no-JS use).
  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("form[data-autosubmit]").forEach((form) => form.requestSubmit());
  });
})();
