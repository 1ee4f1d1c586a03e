// The verify page's proof of work (ALTCHA, self-hosted; no inline script, so it runs under a strict CSP).
// The widget's "external" build ships without workers: register the PBKDF2 one the service's challenges use,
// before the widget starts solving (auto="onload" waits a timer tick). Once solved, the form is sent again.
import "./altcha/altcha.min.js";

const pbkdf2 = () => new Worker(new URL("./altcha/pbkdf2.js", import.meta.url));
for (const name of ["PBKDF2/SHA-256", "PBKDF2/SHA-384", "PBKDF2/SHA-512"]) {
  globalThis.$altcha.algorithms.set(name, pbkdf2);
}

for (const widget of document.querySelectorAll("altcha-widget")) {
  widget.addEventListener("verified", () => {
    const form = widget.closest("form");
    if (form) {
      form.requestSubmit();
    }
  });
}
