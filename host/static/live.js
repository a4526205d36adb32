// Live updates for dynhost ui: polls the store's event cursor once a second
// and, when it moved, fetches this page again and swaps its <main> in place
// (no reload, no framework). Written for dynhost; no third-party code.
(function () {
  let cursor = document.body.dataset.cursor;
  async function tick() {
    try {
      const r = await fetch("/api/cursor", { cache: "no-store" });
      const now = String((await r.json()).cursor);
      if (now !== cursor) {
        const page = await fetch(location.href, { cache: "no-store" });
        const doc = new DOMParser().parseFromString(await page.text(), "text/html");
        const main = doc.getElementById("main");
        if (main) document.getElementById("main").replaceWith(main);
        cursor = now;
        document.body.dataset.cursor = now;
      }
    } catch (e) { /* the server may be restarting; try again */ }
    setTimeout(tick, 1000);
  }
  setTimeout(tick, 1000);
})();
