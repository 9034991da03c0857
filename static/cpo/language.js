/* The header's language switcher sends itself when a language is picked; its button stays
 * for keyboards and for browsers without scripts. */
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("language-form");
  const select = document.getElementById("language-select");
  if (form && select) select.addEventListener("change", () => form.requestSubmit());
});
