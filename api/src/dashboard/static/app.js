// certfleet dashboard: the only script. Asks before the "all" actions, and refreshes the
// live part of the Queues page every few seconds without a full reload.
"use strict";

document.addEventListener("click", (ev) => {
  const button = ev.target.closest("[data-confirm]");
  if (button && !window.confirm(button.dataset.confirm)) {
    ev.preventDefault();
  }
});

document.addEventListener("DOMContentLoaded", () => {
  const live = document.querySelector("[data-refresh]");
  if (!live) return;
  const every = Number(live.dataset.every) || 5000;
  const refresh = async () => {
    try {
      const res = await fetch(live.dataset.refresh, { credentials: "same-origin", redirect: "follow" });
      if (res.redirected || res.url.endsWith("/login")) {
        window.location.reload();
        return;
      }
      if (res.ok) live.innerHTML = await res.text();
    } catch (_) {
      // The server is restarting: keep the last numbers and try again.
    }
  };
  window.setInterval(refresh, every);
});
