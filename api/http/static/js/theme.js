// Applies the theme chosen with the toggle before the page paints (a classic script in <head>,
// so a dark-mode user never sees a light flash). No choice stored: the system preference rules.
(function () {
  try {
    var chosen = localStorage.getItem("ledgerflow.theme");
    if (chosen === "light" || chosen === "dark") document.documentElement.dataset.theme = chosen;
  } catch (e) { /* storage disabled: follow the system */ }
})();
