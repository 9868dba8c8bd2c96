// The last hour per tenant, minute by minute (`GET /v1/stats`), as charts,
// and each consumer's queue now. Redrawn every 15 s while shown.

import uPlot from "uplot";
import { call } from "../api";
import type { Page } from "../main";
import { errorBanner, h, mount, table } from "../ui";

interface TenantMinute {
  tenant: string;
  requests: number;
  server_errors: number;
  client_errors: number;
  p50_ms: number | null;
  p99_ms: number | null;
  messages: number;
  message_failures: number;
}
interface Stats {
  minutes: { minute: number; tenants: TenantMinute[] }[];
  queues: { tenant: string; function: string; depth: number; dead_letters: number }[];
}

const palette = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d"];

/** A chart: what it shows, and its value for a tenant's minute (`null`: no
 * figure; a minute the tenant was idle counts as zero where that is true). */
const charts: {
  id: string;
  title: string;
  unit: string;
  value: (m: TenantMinute) => number | null;
  idle: number | null;
}[] = [
  { id: "rps", title: "Requests per second", unit: "req/s", value: (m) => m.requests / 60, idle: 0 },
  {
    id: "errors",
    title: "Error rate (5xx)",
    unit: "%",
    value: (m) => (m.requests ? (100 * m.server_errors) / m.requests : null),
    idle: null,
  },
  { id: "p50", title: "Latency p50", unit: "ms", value: (m) => m.p50_ms, idle: null },
  { id: "p99", title: "Latency p99", unit: "ms", value: (m) => m.p99_ms, idle: null },
  { id: "messages", title: "Messages delivered per minute", unit: "msg", value: (m) => m.messages, idle: 0 },
];

export async function overview(page: Page): Promise<void> {
  const status = h("div", { class: "status" });
  const grid = h("div", { class: "charts" });
  const queues = h("section", {});
  const summary = h("div", { class: "summary" });
  mount(
    page.main,
    h("h1", {}, "Overview"),
    h("p", { class: "hint" }, "The last hour on this node, per minute and per tenant."),
    status,
    summary,
    grid,
    h("h2", {}, "Queues"),
    queues,
  );
  let plots: uPlot[] = [];
  const draw = async () => {
    let stats: Stats;
    try {
      stats = await call<Stats>("GET", "/v1/stats");
      mount(status);
    } catch (e) {
      mount(status, errorBanner(e));
      return;
    }
    for (const p of plots) p.destroy();
    plots = [];
    const tenants = [...new Set(stats.minutes.flatMap((m) => m.tenants.map((t) => t.tenant)))].sort();
    // Every minute of the hour, so idle minutes show as such.
    const last = Math.floor(Date.now() / 60_000) * 60;
    const xs = Array.from({ length: 60 }, (_, i) => last - (59 - i) * 60);
    const byMinute = new Map(stats.minutes.map((m) => [Math.floor(m.minute / 1000), m]));
    const totals = stats.minutes.flatMap((m) => m.tenants);
    const requests = totals.reduce((n, t) => n + t.requests, 0);
    const failed = totals.reduce((n, t) => n + t.server_errors, 0);
    const dead = stats.queues.reduce((n, q) => n + q.dead_letters, 0);
    const depth = stats.queues.reduce((n, q) => n + q.depth, 0);
    mount(
      summary,
      figure("Requests (hour)", requests, "requests"),
      figure("Server errors (hour)", failed, "server-errors"),
      figure("Queued messages", depth, "queued"),
      figure("Dead letters", dead, "dead-letters", dead > 0 ? "#/dead-letters" : undefined),
    );
    grid.replaceChildren();
    if (tenants.length === 0) {
      grid.appendChild(h("p", { class: "empty" }, "No requests in the last hour."));
    }
    for (const chart of tenants.length ? charts : []) {
      const box = h("figure", { class: "chart", "data-testid": `chart-${chart.id}` }, h("figcaption", {}, chart.title));
      grid.appendChild(box);
      const data: uPlot.AlignedData = [
        xs,
        ...tenants.map((t) =>
          xs.map((x) => {
            const row = byMinute.get(x)?.tenants.find((r) => r.tenant === t);
            return row ? chart.value(row) : chart.idle;
          }),
        ),
      ];
      plots.push(
        new uPlot(
          {
            width: Math.max(320, box.clientWidth - 24),
            height: 200,
            series: [
              {},
              ...tenants.map((t, i) => ({
                label: t,
                stroke: palette[i % palette.length],
                width: 2,
                points: { show: true, size: 4 },
                spanGaps: false,
              })),
            ],
            axes: [{}, { label: chart.unit, size: 60 }],
            scales: { x: { time: true, range: [xs[0], xs[59]] }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
          },
          data,
          box,
        ),
      );
    }
    mount(
      queues,
      table(
        [
          { title: "Tenant", cell: (q) => q.tenant },
          { title: "Consumer", cell: (q) => q.function },
          { title: "Queued", cell: (q) => q.depth },
          {
            title: "Dead letters",
            cell: (q) =>
              q.dead_letters
                ? h("a", { href: `#/dead-letters?tenant=${encodeURIComponent(q.tenant)}&function=${encodeURIComponent(q.function)}` }, q.dead_letters)
                : 0,
          },
        ],
        stats.queues,
        "No consumer has queued or dead messages.",
        "queues",
      ),
    );
  };
  await draw();
  const timer = setInterval(() => void draw(), 15_000);
  page.onLeave(() => {
    clearInterval(timer);
    for (const p of plots) p.destroy();
  });
}

function figure(label: string, value: number, id: string, href?: string): HTMLElement {
  const number = href ? h("a", { href }, value) : h("span", {}, value);
  return h("div", { class: "figure", "data-testid": `figure-${id}` }, h("strong", {}, number), h("span", {}, label));
}
