// Messages whose consumer failed for good: list, inspect, replay one or all.

import { call, enc, withQuery } from "../api";
import type { Page } from "../main";
import { act, errorBanner, field, h, mount, table, when } from "../ui";

interface DeadLetter {
  id: string;
  message_id: string;
  tenant: string;
  function: string;
  topic: string;
  attempts: number;
  last_error: string;
  failed_at: number;
  enqueued_at: number;
  payload: string;
}

export async function deadLetters(page: Page): Promise<void> {
  const tenant = page.params.get("tenant") ?? "";
  const fn = page.params.get("function") ?? "";
  const tenantInput = h("input", { name: "tenant", placeholder: "any", value: tenant });
  const fnInput = h("input", { name: "function", placeholder: "any", value: fn });
  const form = h("form", { class: "inline" }, field("Tenant", tenantInput), field("Consumer", fnInput), h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = withQuery("#/dead-letters", { tenant: tenantInput.value.trim(), function: fnInput.value.trim() });
  });
  const status = h("div", { class: "status" });
  const list = h("section", {});
  mount(page.main, h("h1", {}, "Dead letters"), form, status, list);
  const query = { tenant: tenant || undefined, function: fn || undefined };
  const load = async () => {
    let letters: DeadLetter[];
    try {
      ({ dead_letters: letters } = await call<{ dead_letters: DeadLetter[] }>("GET", withQuery("/v1/dead-letters", { ...query, limit: "200" })));
    } catch (e) {
      mount(list, errorBanner(e));
      return;
    }
    const scope = [tenant && `tenant ${tenant}`, fn && `consumer ${fn}`].filter(Boolean).join(", ") || "every tenant";
    const all = h("button", { type: "button", class: "danger", disabled: letters.length === 0 }, `Replay all (${scope})`);
    all.addEventListener("click", () => {
      if (!confirm(`Queue every dead letter of ${scope} for delivery again?`)) return;
      void act(status, async () => {
        const out = await call<{ replayed: number }>("POST", withQuery("/v1/dead-letters/replay", query));
        await load();
        return `${out.replayed} message(s) queued again.`;
      });
    });
    mount(
      list,
      table(
        [
          { title: "Failed", cell: (d) => when(d.failed_at) },
          { title: "Tenant", cell: (d) => d.tenant },
          { title: "Consumer", cell: (d) => d.function },
          { title: "Topic", cell: (d) => d.topic },
          { title: "Attempts", cell: (d) => d.attempts },
          { title: "Last error", cell: (d) => h("span", { class: "clip" }, d.last_error) },
          { title: "", cell: (d) => [h("a", { href: `#/dead-letters/${enc(d.id)}` }, "inspect"), " ", replayButton(status, d, load)] },
        ],
        letters,
        "No dead letters.",
        "dead-letters",
      ),
      all,
    );
  };
  await load();
}

function replayButton(status: HTMLElement, d: DeadLetter, after: () => Promise<void>): HTMLElement {
  return h(
    "button",
    {
      type: "button",
      class: "secondary",
      onclick: () => {
        if (!confirm(`Queue this ${d.topic} message for ${d.tenant}/${d.function} again?`)) return;
        void act(status, async () => {
          await call("POST", `/v1/dead-letters/${enc(d.id)}/replay`);
          await after();
          return `Message ${d.message_id} queued again.`;
        });
      },
    },
    "replay",
  );
}

export async function deadLetter(page: Page, id: string): Promise<void> {
  const status = h("div", { class: "status" });
  mount(page.main, h("h1", {}, "Dead letter ", h("code", {}, id)), status);
  let d: DeadLetter;
  try {
    d = await call<DeadLetter>("GET", `/v1/dead-letters/${enc(id)}`);
  } catch (e) {
    page.main.append(errorBanner(e));
    return;
  }
  let payload = d.payload;
  try {
    payload = JSON.stringify(JSON.parse(d.payload), null, 2);
  } catch {
    // Not JSON: shown as it is.
  }
  page.main.append(
    h(
      "div",
      {},
      h(
        "dl",
        { class: "facts", "data-testid": "dead-letter" },
        h("dt", {}, "Consumer"),
        h("dd", {}, `${d.tenant}/${d.function}`),
        h("dt", {}, "Topic"),
        h("dd", {}, d.topic),
        h("dt", {}, "Message id"),
        h("dd", {}, h("code", {}, d.message_id)),
        h("dt", {}, "Committed"),
        h("dd", {}, when(d.enqueued_at)),
        h("dt", {}, "Failed"),
        h("dd", {}, `${when(d.failed_at)} after ${d.attempts} attempt(s)`),
        h("dt", {}, "Last error"),
        h("dd", {}, h("pre", { "data-testid": "last-error" }, d.last_error)),
      ),
      h("h2", {}, "Payload"),
      h("pre", { "data-testid": "payload" }, payload),
      replayButton(status, d, async () => {
        location.hash = "#/dead-letters";
      }),
    ),
  );
}
