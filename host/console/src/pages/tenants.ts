// Tenants: list and create; one tenant's usage, request rate, quotas and
// token settings; delete.

import { call, enc } from "../api";
import type { Page } from "../main";
import { act, bytes, errorBanner, field, h, mount, table, when } from "../ui";

interface Tenant {
  name: string;
  created_at: number;
  created_by: string;
  rate: { requests_per_second: number; burst?: number | null } | null;
  auth: { keys?: { kid?: string; algorithm: string }[]; jwks_url?: string; issuer?: string[] } | null;
  max_functions: number | null;
  max_stored_bytes: number | null;
  functions?: string[];
  usage?: { functions: number; stored_bytes: number };
}

export async function tenants(page: Page): Promise<void> {
  const status = h("div", { class: "status" });
  const list = h("section", {});
  const name = h("input", { name: "tenant", placeholder: "acme", required: true, pattern: "[a-z0-9][a-z0-9\\-]{0,62}" });
  const form = h(
    "form",
    { class: "inline", "data-testid": "create-tenant" },
    field("New tenant", name),
    h("button", { type: "submit" }, "Create"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void act(status, async () => {
      await call("POST", "/v1/tenants", { name: name.value });
      const created = name.value;
      name.value = "";
      await load();
      return `Tenant ${created} created.`;
    });
  });
  mount(page.main, h("h1", {}, "Tenants"), form, status, list);
  const load = async () => {
    try {
      const { tenants } = await call<{ tenants: Tenant[] }>("GET", "/v1/tenants");
      mount(
        list,
        table(
          [
            { title: "Name", cell: (t) => h("a", { href: `#/tenants/${enc(t.name)}` }, t.name) },
            { title: "Created", cell: (t) => when(t.created_at) },
            { title: "By", cell: (t) => t.created_by },
            { title: "Rate", cell: (t) => (t.rate ? `${t.rate.requests_per_second}/s` : "none") },
            { title: "Own tokens", cell: (t) => (t.auth ? "yes" : "host's") },
            { title: "Functions", cell: (t) => h("a", { href: `#/functions?tenant=${enc(t.name)}` }, "functions") },
          ],
          tenants,
          "No tenants yet.",
          "tenants",
        ),
      );
    } catch (e) {
      mount(list, errorBanner(e));
    }
  };
  await load();
}

export async function tenant(page: Page, name: string): Promise<void> {
  const status = h("div", { class: "status" });
  const body = h("div", {});
  mount(page.main, h("h1", {}, "Tenant ", h("code", {}, name)), status, body);
  const path = `/v1/tenants/${enc(name)}`;
  const load = async () => {
    let t: Tenant;
    try {
      t = await call<Tenant>("GET", path);
    } catch (e) {
      mount(body, errorBanner(e));
      return;
    }
    const rps = h("input", { type: "number", name: "rps", min: "0", step: "any", value: t.rate?.requests_per_second ?? "" });
    const burst = h("input", { type: "number", name: "burst", min: "1", value: t.rate?.burst ?? "" });
    const rate = h("form", { class: "inline", "data-testid": "rate" }, field("Requests per second", rps), field("Burst", burst), h("button", { type: "submit" }, "Set rate"));
    rate.addEventListener("submit", (event) => {
      event.preventDefault();
      void act(status, async () => {
        const value: Record<string, number> = { requests_per_second: Number(rps.value) };
        if (burst.value) value.burst = Number(burst.value);
        await call("PUT", `${path}/rate`, value);
        await load();
        return "Rate set.";
      });
    });
    const clearRate = h("button", { type: "button", class: "secondary" }, "Lift rate");
    clearRate.addEventListener("click", () =>
      void act(status, async () => {
        await call("DELETE", `${path}/rate`);
        await load();
        return "Rate lifted.";
      }),
    );
    const maxFunctions = h("input", { type: "number", name: "max_functions", min: "0", value: t.max_functions ?? "" });
    const maxBytes = h("input", { type: "number", name: "max_stored_bytes", min: "0", value: t.max_stored_bytes ?? "" });
    const quota = h("form", { class: "inline", "data-testid": "quota" }, field("Most functions", maxFunctions), field("Most stored bytes", maxBytes), h("button", { type: "submit" }, "Set quotas"));
    quota.addEventListener("submit", (event) => {
      event.preventDefault();
      void act(status, async () => {
        await call("PUT", `${path}/quota`, {
          max_functions: maxFunctions.value ? Number(maxFunctions.value) : null,
          max_stored_bytes: maxBytes.value ? Number(maxBytes.value) : null,
        });
        await load();
        return "Quotas set (an empty field lifts its quota).";
      });
    });
    const force = h("input", { type: "checkbox", name: "force" });
    const remove = h("button", { type: "button", class: "danger" }, "Delete tenant");
    remove.addEventListener("click", () => {
      if (!confirm(`Delete tenant ${name} with all its documents, blobs and messages?`)) return;
      void act(status, async () => {
        await call("DELETE", `${path}${force.checked ? "?force=true" : ""}`);
        location.hash = "#/tenants";
      });
    });
    const keys = t.auth?.keys ?? [];
    mount(
      body,
      h(
        "dl",
        { class: "facts", "data-testid": "tenant-facts" },
        h("dt", {}, "Created"),
        h("dd", {}, `${when(t.created_at)} by ${t.created_by}`),
        h("dt", {}, "Functions"),
        h("dd", {}, `${t.usage?.functions ?? 0} of ${t.max_functions ?? "no limit"} `, h("a", { href: `#/functions?tenant=${enc(name)}` }, "(show)")),
        h("dt", {}, "Stored documents"),
        h("dd", {}, `${bytes(t.usage?.stored_bytes ?? 0)} of ${bytes(t.max_stored_bytes)}`),
        h("dt", {}, "Request rate"),
        h("dd", {}, t.rate ? `${t.rate.requests_per_second}/s, burst ${t.rate.burst ?? "one second's worth"}` : "none"),
        h("dt", {}, "Concurrency"),
        h("dd", {}, "the host's per-tenant limit ([limits] tenant_concurrency)"),
        h("dt", {}, "Tokens"),
        h(
          "dd",
          {},
          t.auth
            ? [
                keys.map((k) => `${k.algorithm}${k.kid ? ` (${k.kid})` : ""}`).join(", ") || "no keys listed",
                t.auth.jwks_url ? `; JWKS ${t.auth.jwks_url}` : "",
                t.auth.issuer?.length ? `; issuer ${t.auth.issuer.join(", ")}` : "",
              ]
            : "the host's keys ([auth]); set the tenant's own with sluice tenant auth",
        ),
      ),
      h("h2", {}, "Request rate"),
      rate,
      clearRate,
      h("h2", {}, "Quotas"),
      quota,
      h("h2", {}, "Delete"),
      h("p", { class: "hint" }, "Deletes its documents, blobs, messages, dead letters and schedules. With functions deployed, tick the box to remove them too."),
      h("label", { class: "check" }, force, " with its functions"),
      remove,
    );
  };
  await load();
}
