// The console: sign in with an operator key, then one page per resource.
// Routing is by the URL's fragment (#/tenants/acme), so the host serves
// one page for every path.

import "uplot/dist/uPlot.min.css";
import "./style.css";
import { call, key, signIn, signOut, whenUnauthenticated, type Problem } from "./api";
import { h, mount } from "./ui";
import { overview } from "./pages/overview";
import { tenants, tenant } from "./pages/tenants";
import { functions } from "./pages/functions";
import { invocations, invocation } from "./pages/invocations";
import { deadLetters, deadLetter } from "./pages/dead-letters";

/** What a page is given: where to draw, and the route's parameters. */
export interface Page {
  main: HTMLElement;
  params: URLSearchParams;
  /** Called when the page is left: stop timers and charts. */
  onLeave: (f: () => void) => void;
}

const sections: [string, string][] = [
  ["overview", "Overview"],
  ["tenants", "Tenants"],
  ["functions", "Functions"],
  ["invocations", "Invocations"],
  ["dead-letters", "Dead letters"],
];

const app = document.getElementById("app")!;
let leaving: (() => void)[] = [];

whenUnauthenticated((problem) => {
  signOut();
  showSignIn(problem);
});

function showSignIn(problem?: Problem): void {
  leave();
  const input = h("input", {
    type: "password",
    name: "key",
    autocomplete: "off",
    placeholder: "sk_…",
    required: true,
    "aria-label": "Operator key",
  });
  const status = h("div", { class: "status" });
  if (problem) {
    status.appendChild(
      h(
        "div",
        { class: "banner error", role: "alert" },
        h("strong", {}, "That key was refused"),
        ": ",
        h("span", { class: "detail" }, problem.detail ?? "the operator key is unknown or revoked"),
      ),
    );
  }
  const form = h(
    "form",
    { class: "sign-in" },
    h("h1", {}, "Sluice console"),
    h(
      "p",
      {},
      "Sign in with an operator key. Make one where the host's data is with ",
      h("code", {}, "sluice key create --name you"),
      ". It is kept in this tab only, and sent with each call to the admin API.",
    ),
    input,
    h("button", { type: "submit" }, "Sign in"),
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    signIn(input.value);
    try {
      await call("GET", "/v1/tenants");
      if (!location.hash || location.hash === "#/") location.hash = "#/overview";
      render();
    } catch {
      // The 401 handler has drawn the sign-in form again with the reason.
      if (key()) render();
    }
  });
  mount(app, form);
  input.focus();
}

function leave(): void {
  for (const f of leaving) f();
  leaving = [];
}

async function render(): Promise<void> {
  if (!key()) {
    showSignIn();
    return;
  }
  leave();
  const [path, query] = (location.hash.replace(/^#\/?/, "") || "overview").split("?");
  const parts = path.split("/").map(decodeURIComponent);
  const params = new URLSearchParams(query ?? "");
  const main = h("main", {});
  const nav = h(
    "nav",
    {},
    h("span", { class: "brand" }, "Sluice"),
    sections.map(([id, title]) =>
      h("a", { href: `#/${id}`, class: parts[0] === id ? "active" : undefined }, title),
    ),
    h(
      "button",
      {
        class: "link sign-out",
        type: "button",
        onclick: () => {
          signOut();
          showSignIn();
        },
      },
      "Sign out",
    ),
  );
  mount(app, nav, main);
  const page: Page = { main, params, onLeave: (f) => leaving.push(f) };
  switch (parts[0]) {
    case "tenants":
      return parts[1] ? tenant(page, parts[1]) : tenants(page);
    case "functions":
      return functions(page);
    case "invocations":
      return parts[1] ? invocation(page, parts[1]) : invocations(page);
    case "dead-letters":
      return parts[1] ? deadLetter(page, parts[1]) : deadLetters(page);
    default:
      return overview(page);
  }
}

window.addEventListener("hashchange", () => void render());
void render();
