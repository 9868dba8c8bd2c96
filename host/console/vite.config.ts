import { defineConfig } from "vite";

// Served by the admin listener at /console, under a CSP that allows only
// this origin's files: no inline script, no preload polyfill, no data URIs.
// `npx vite` serves the page with live reloading and passes the API calls
// to the admin listener at SLUICE_ADMIN (default 127.0.0.1:8081).
export default defineConfig({
  base: "/console/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    target: "es2022",
  },
  server: {
    proxy: {
      "/v1": process.env.SLUICE_ADMIN ?? "http://127.0.0.1:8081",
    },
  },
});
