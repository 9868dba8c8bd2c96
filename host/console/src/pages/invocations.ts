// What ran, newest first, filtered by tenant, function, outcome, status
// and limit; one invocation's record.

import { call, enc, withQuery } from "../api";
import type { Page } from "../main";
import { duration, errorBanner, field, h, mount, table, when } from "../ui";

interface Invocation {
  request_id: string;
  tenant: string;
  function: string;
  route: string;
  status: number;
  outcome: string;
  limit: string | null;
  attempts: number;
  duration_us: number;
  created_at: number;
  stages: { receive?: number; authenticate?: number; validate?: number; process: number } | null;
}

const outcomes = ["ok", "guest-error", "trap", "timeout", "limit", "invalid-response", "conflict", "over-quota", "unavailable", "retry", "give-up", "loop-detected", "replayed", "key-reused"];
const limits = ["timeout_ms", "memory_bytes", "table_elements", "max_wasm_stack_bytes", "fuel", "response_bytes", "writes", "staged_bytes", "blob_bytes", "document_bytes", "messages", "payload_bytes", "log_bytes"];
const filters = ["tenant", "function", "outcome", "status", "limit_hit"] as const;

export async function invocations(page: Page): Promise<void> {
  const p = page.params;
  const input = (name: string, placeholder: string) => h("input", { name, placeholder, value: p.get(name) ?? "" });
  const select = (name: string, values: string[]) =>
    h("select", { name }, h("option", { value: "" }, "any"), values.map((v) => h("option", { value: v, selected: p.get(name) === v }, v)));
  const controls: Record<(typeof filters)[number], HTMLInputElement | HTMLSelectElement> = {
    tenant: input("tenant", "any"),
    function: input("function", "any"),
    outcome: select("outcome", outcomes),
    status: input("status", "e.g. 500"),
    limit_hit: select("limit_hit", limits),
  };
  const form = h(
    "form",
    { class: "inline", "data-testid": "invocation-filters" },
    field("Tenant", controls.tenant),
    field("Function", controls.function),
    field("Outcome", controls.outcome),
    field("Status", controls.status),
    field("Limit hit", controls.limit_hit),
    h("button", { type: "submit" }, "Filter"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = new URLSearchParams();
    for (const name of filters) if (controls[name].value) q.set(name, controls[name].value.trim());
    location.hash = `#/invocations${q.size ? `?${q}` : ""}`;
  });
  const list = h("section", {});
  const more = h("div", {});
  const refresh = h("button", { type: "button", class: "secondary", onclick: () => void first() }, "Refresh");
  mount(page.main, h("h1", {}, "Invocations"), form, refresh, list, more);
  const query: Record<string, string | undefined> = {};
  for (const name of filters) query[name] = p.get(name) ?? undefined;
  const rows: Invocation[] = [];
  const draw = (next: string | null) => {
    mount(
      list,
      table(
        [
          { title: "When", cell: (r) => when(r.created_at) },
          { title: "Tenant", cell: (r) => r.tenant },
          { title: "Function", cell: (r) => r.function },
          { title: "Route", cell: (r) => h("code", {}, r.route) },
          { title: "Status", cell: (r) => h("span", { class: r.status >= 500 ? "bad" : r.status >= 400 ? "warn" : "good" }, r.status) },
          { title: "Outcome", cell: (r) => r.outcome + (r.limit ? ` (${r.limit})` : "") },
          { title: "Attempts", cell: (r) => r.attempts },
          { title: "Took", cell: (r) => duration(r.duration_us) },
          { title: "Request id", cell: (r) => h("a", { href: `#/invocations/${enc(r.request_id)}` }, r.request_id) },
        ],
        rows,
        "No invocations match.",
        "invocations",
      ),
    );
    mount(more, next ? h("button", { type: "button", class: "secondary", onclick: () => void page_(next) }, "Older") : "");
  };
  const page_ = async (before?: string) => {
    try {
      const out = await call<{ invocations: Invocation[]; next: string | null }>(
        "GET",
        withQuery("/v1/invocations", { ...query, before }),
      );
      rows.push(...out.invocations);
      draw(out.next);
    } catch (e) {
      mount(list, errorBanner(e));
    }
  };
  const first = async () => {
    rows.length = 0;
    await page_();
  };
  await first();
}

export async function invocation(page: Page, id: string): Promise<void> {
  mount(page.main, h("h1", {}, "Invocation ", h("code", {}, id)));
  let r: Invocation;
  try {
    r = await call<Invocation>("GET", `/v1/invocations/${enc(id)}`);
  } catch (e) {
    page.main.append(errorBanner(e));
    return;
  }
  page.main.append(
    h(
      "dl",
      { class: "facts", "data-testid": "invocation" },
      h("dt", {}, "Request id"),
      h("dd", {}, h("code", {}, r.request_id), h("small", { class: "hint" }, " — the host's logs and traces carry it as request_id")),
      h("dt", {}, "When"),
      h("dd", {}, when(r.created_at)),
      h("dt", {}, "Function"),
      h("dd", {}, `${r.tenant}/${r.function}`),
      h("dt", {}, "Route"),
      h("dd", {}, h("code", {}, r.route)),
      h("dt", {}, "Status"),
      h("dd", {}, r.status),
      h("dt", {}, "Outcome"),
      h("dd", {}, r.outcome),
      h("dt", {}, "Limit hit"),
      h("dd", {}, r.limit ?? "none"),
      h("dt", {}, "Attempts"),
      h("dd", {}, `${r.attempts}${r.attempts > 1 ? " (re-run after write conflicts)" : ""}`),
      h("dt", {}, "Took"),
      h("dd", {}, `${duration(r.duration_us)} from receive to commit`),
    ),
    h("h2", {}, "Stages"),
    stages(r),
    h("a", { href: `#/invocations?tenant=${enc(r.tenant)}&function=${enc(r.function)}` }, `More of ${r.tenant}/${r.function}`),
  );
}

/** Each stage's time against the whole, as bars. */
function stages(r: Invocation): HTMLElement {
  if (!r.stages) return h("p", { class: "hint" }, "This record is older than per-stage times.");
  const s = r.stages;
  const known = (s.receive ?? 0) + (s.authenticate ?? 0) + (s.validate ?? 0) + s.process;
  const rows: [string, number | undefined][] = [
    ["receive", s.receive],
    ["authenticate", s.authenticate],
    ["validate", s.validate],
    ["process", s.process],
    ["other", Math.max(0, r.duration_us - known)],
  ];
  const total = Math.max(r.duration_us, known, 1);
  return h(
    "table",
    { class: "stages", "data-testid": "stages" },
    h("tbody", {}, rows
      .filter(([, us]) => us !== undefined)
      .map(([name, us]) =>
        h("tr", {}, h("th", {}, name), h("td", {}, duration(us!)), h("td", {}, h("progress", { max: total, value: us! }))),
      )),
    h("tfoot", {}, h("tr", {}, h("th", {}, "total"), h("td", {}, duration(r.duration_us)), h("td", {}, ""))),
  );
}
