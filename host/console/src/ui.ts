// A few DOM helpers. Text always goes in as text nodes, never as HTML, so
// nothing a tenant or guest wrote can become markup.

import { ApiError } from "./api";

type Child = Node | string | number | null | undefined | false | Child[];
type Attrs = Record<string, string | number | boolean | EventListener | undefined | null>;

/** An element with attributes (`on…` are listeners) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value as EventListener);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces `el`'s children. */
export function mount(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

/** A banner for an error: the API's problem detail, title and request id. */
export function errorBanner(e: unknown): HTMLElement {
  if (e instanceof ApiError) {
    const p = e.problem;
    return h(
      "div",
      { class: "banner error", role: "alert" },
      h("strong", {}, p.title ?? `HTTP ${p.status}`),
      p.status ? ` (${p.status})` : "",
      ": ",
      h("span", { class: "detail" }, p.detail ?? ""),
      p.request_id ? h("small", {}, ` request id ${p.request_id}`) : "",
    );
  }
  return h("div", { class: "banner error", role: "alert" }, String(e));
}

/** A banner saying something went well. */
export function okBanner(text: string): HTMLElement {
  return h("div", { class: "banner ok", role: "status" }, text);
}

/** Unix ms as local date and time. */
export function when(ms: number | null | undefined): string {
  if (!ms) return "—";
  const d = new Date(ms);
  return d.toLocaleString(undefined, { hour12: false });
}

/** Microseconds, readably. */
export function duration(us: number): string {
  if (us < 1000) return `${us} µs`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(1)} ms`;
  return `${(us / 1_000_000).toFixed(2)} s`;
}

/** Bytes, readably. */
export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return "no limit";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/** A table of `rows`, one cell per column. */
export function table<T>(
  columns: { title: string; cell: (row: T) => Child }[],
  rows: T[],
  empty: string,
  testid?: string,
): HTMLElement {
  if (rows.length === 0) return h("p", { class: "empty", "data-testid": testid }, empty);
  return h(
    "table",
    { "data-testid": testid },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c.title)))),
    h(
      "tbody",
      {},
      rows.map((r) => h("tr", {}, columns.map((c) => h("td", {}, c.cell(r))))),
    ),
  );
}

/** A labelled input. */
export function field(label: string, input: HTMLElement): HTMLElement {
  return h("label", { class: "field" }, h("span", {}, label), input);
}

/** Runs `work`, showing its error (or `done`'s text) in `status`. */
export async function act(
  status: HTMLElement,
  work: () => Promise<string | void>,
): Promise<boolean> {
  mount(status);
  try {
    const text = await work();
    if (text) mount(status, okBanner(text));
    return true;
  } catch (e) {
    mount(status, errorBanner(e));
    return false;
  }
}
