// Functions of a tenant: live version, routes, topics, schedules; their
// versions with who deployed each when; deploy, roll back, remove.

import { call, enc, withQuery } from "../api";
import type { Page } from "../main";
import { act, bytes, errorBanner, field, h, mount, table, when } from "../ui";

interface Function {
  tenant: string;
  name: string;
  origin: string;
  version: number | null;
  versions: number | null;
  activated_at: number | null;
  activated_by: string | null;
  routes: string[];
  topics: string[];
  schedules: string[];
}
interface Version {
  version: number;
  active: boolean;
  deployed_at: number;
  deployed_by: string;
  deployed_by_name: string | null;
  component_sha256: string;
  component_bytes: number;
}

export async function functions(page: Page): Promise<void> {
  const status = h("div", { class: "status" });
  const list = h("section", {});
  const tenantSelect = h("select", { name: "tenant", "aria-label": "Tenant" }, h("option", { value: "" }, "every tenant"));
  const chosen = page.params.get("tenant") ?? "";
  try {
    const { tenants } = await call<{ tenants: { name: string }[] }>("GET", "/v1/tenants");
    for (const t of tenants) tenantSelect.appendChild(h("option", { value: t.name, selected: t.name === chosen }, t.name));
  } catch (e) {
    mount(page.main, errorBanner(e));
    return;
  }
  tenantSelect.addEventListener("change", () => {
    location.hash = tenantSelect.value ? `#/functions?tenant=${enc(tenantSelect.value)}` : "#/functions";
  });
  mount(
    page.main,
    h("h1", {}, "Functions"),
    h("form", { class: "inline" }, field("Tenant", tenantSelect)),
    status,
    list,
    deployForm(status, chosen, () => load()),
  );
  const load = async () => {
    let fns: Function[];
    try {
      ({ functions: fns } = await call<{ functions: Function[] }>("GET", withQuery("/v1/functions", { tenant: chosen })));
    } catch (e) {
      mount(list, errorBanner(e));
      return;
    }
    mount(
      list,
      table(
        [
          { title: "Function", cell: (f) => h("strong", {}, `${f.tenant}/${f.name}`) },
          { title: "Live", cell: (f) => (f.version ? `v${f.version}` : f.origin) },
          { title: "Deployed", cell: (f) => (f.activated_at ? `${when(f.activated_at)} by ${f.activated_by}` : `from ${f.origin}`) },
          { title: "Routes", cell: (f) => h("ul", { class: "plain" }, f.routes.map((r) => h("li", {}, h("code", {}, r)))) },
          { title: "Topics", cell: (f) => f.topics.join(", ") || "—" },
          { title: "Schedules", cell: (f) => f.schedules.join(", ") || "—" },
          {
            title: "",
            cell: (f) => [
              h("a", { href: `#/invocations?tenant=${enc(f.tenant)}&function=${enc(f.name)}` }, "invocations"),
              f.origin === "directory"
                ? h("small", { class: "hint" }, " (from a functions directory)")
                : [" ", versionsButton(status, f, () => load())],
            ],
          },
        ],
        fns,
        chosen ? `Tenant ${chosen} has no functions.` : "No functions are live.",
        "functions",
      ),
    );
  };
  await load();
}

/** A button that opens a function's versions, with rollback and removal. */
function versionsButton(status: HTMLElement, f: Function, reload: () => Promise<void>): HTMLElement {
  const box = h("div", { class: "versions" });
  const base = `/v1/tenants/${enc(f.tenant)}/functions/${enc(f.name)}`;
  const show = async () => {
    let versions: Version[];
    try {
      ({ versions } = await call<{ versions: Version[] }>("GET", `${base}/versions`));
    } catch (e) {
      mount(box, errorBanner(e));
      return;
    }
    const remove = h("button", { type: "button", class: "danger" }, `Remove ${f.name}`);
    remove.addEventListener("click", () => {
      if (!confirm(`Take ${f.tenant}/${f.name} down and delete its versions?`)) return;
      void act(status, async () => {
        await call("DELETE", base);
        await reload();
        return `${f.tenant}/${f.name} removed.`;
      });
    });
    mount(
      box,
      table(
        [
          { title: "Version", cell: (v) => `v${v.version}${v.active ? " (live)" : ""}` },
          { title: "Deployed", cell: (v) => `${when(v.deployed_at)} by ${v.deployed_by_name ?? v.deployed_by}` },
          { title: "Component", cell: (v) => [h("code", {}, v.component_sha256.slice(0, 12)), ` ${bytes(v.component_bytes)}`] },
          {
            title: "",
            cell: (v) =>
              v.active
                ? ""
                : h(
                    "button",
                    {
                      type: "button",
                      class: "secondary",
                      onclick: () =>
                        void act(status, async () => {
                          await call("POST", `${base}/rollback`, { version: v.version });
                          await reload();
                          return `${f.tenant}/${f.name} is back on v${v.version}.`;
                        }),
                    },
                    `Roll back to v${v.version}`,
                  ),
          },
        ],
        versions,
        "No versions.",
        `versions-${f.name}`,
      ),
      remove,
    );
  };
  const button = h("button", { type: "button", class: "secondary", onclick: () => void show() }, "versions");
  return h("div", {}, button, box);
}

/** Deploys a component with its manifest and schemas (multipart, as `sluice deploy` sends). */
function deployForm(status: HTMLElement, tenant: string, reload: () => Promise<void>): HTMLElement {
  const tenantInput = h("input", { name: "deploy-tenant", required: true, value: tenant, placeholder: "demo" });
  const name = h("input", { name: "deploy-name", required: true, placeholder: "todo" });
  const manifest = h("input", { type: "file", name: "manifest", accept: ".toml", required: true });
  const component = h("input", { type: "file", name: "component", accept: ".wasm", required: true });
  const schemas = h("input", { type: "file", name: "schemas", accept: ".json", multiple: true });
  const form = h(
    "form",
    { class: "deploy", "data-testid": "deploy" },
    h("h2", {}, "Deploy"),
    h("p", { class: "hint" }, "A new version goes live at once; requests in flight finish on the old one. Schema files are matched to the paths the manifest names by file name."),
    field("Tenant", tenantInput),
    field("Function", name),
    field("Manifest (sluice.toml)", manifest),
    field("Component (.wasm)", component),
    field("Schemas (.json)", schemas),
    h("button", { type: "submit" }, "Deploy"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void act(status, async () => {
      const text = await manifest.files![0].text();
      const data = new FormData();
      data.append("manifest", new Blob([text], { type: "application/toml" }), "sluice.toml");
      data.append("component", component.files![0], "component.wasm");
      // The manifest names schemas by path (schemas/x.json); the browser
      // gives only file names, so each file takes the path that ends in it.
      const paths = [...text.matchAll(/["']([^"']+\.json)["']/g)].map((m) => m[1].replace(/^\.\//, ""));
      for (const file of Array.from(schemas.files ?? [])) {
        const path = paths.find((p) => p === file.name || p.endsWith(`/${file.name}`)) ?? file.name;
        data.append("schema", file, path);
      }
      const out = await call<{ version: number }>(
        "POST",
        `/v1/tenants/${enc(tenantInput.value)}/functions/${enc(name.value)}/versions`,
        data,
      );
      await reload();
      return `${tenantInput.value}/${name.value} v${out.version} is live.`;
    });
  });
  return form;
}
