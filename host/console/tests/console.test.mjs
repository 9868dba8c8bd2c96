// The console in a real browser (Debian's Chromium driven by
// playwright-core) against a real `sluice serve`. Started by the Rust test
// tests/tests/console/main.rs, which starts the host and says where it is:
//
//   CONSOLE_URL   the console (http://127.0.0.1:PORT/console/)
//   PUBLIC_URL    the host's public listener
//   OPERATOR_KEY  a key made with `sluice key create`
//   TENANT_TOKEN  a token for tenant CONSOLE_TENANT
//   CONSOLE_TENANT the tenant to create; DEPLOY_DIR holds sluice.toml,
//                 echo.json and component.wasm to deploy to it
//   SCREENSHOTS   where each page's screenshot goes
//   CHROMIUM      the browser (default /usr/bin/chromium)

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} is not set: run this through \`cargo test --test console\``);
  return value;
};
const consoleUrl = env("CONSOLE_URL");
const publicUrl = env("PUBLIC_URL");
const key = env("OPERATOR_KEY");
const tenantToken = env("TENANT_TOKEN");
const tenant = env("CONSOLE_TENANT");
const deployDir = env("DEPLOY_DIR");
const shots = env("SCREENSHOTS");
mkdirSync(shots, { recursive: true });

let browser;
let page;
const problems = [];

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
  page.setDefaultTimeout(15_000);
  // Every confirmation the console asks for is accepted.
  page.on("dialog", (dialog) => dialog.accept());
  // A CSP violation or a script error is a failure, whatever the page shows.
  page.on("console", (msg) => {
    if (msg.type() === "error" && !/Failed to load resource/.test(msg.text())) problems.push(msg.text());
  });
  page.on("pageerror", (e) => problems.push(String(e)));
});

after(async () => {
  await browser?.close();
});

const shot = (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
const banner = (kind) => page.locator(`.banner.${kind}`).first();
const nav = (name) => page.locator("nav").getByRole("link", { name, exact: true });

test("a bad key is refused with the API's reason", async () => {
  await page.goto(consoleUrl);
  await page.getByLabel("Operator key").fill("sk_nope_nope");
  await page.getByRole("button", { name: "Sign in" }).click();
  const refused = banner("error");
  await refused.waitFor();
  assert.match(await refused.textContent(), /That key was refused.*unknown or revoked/);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, "a refused key is not kept");
  await shot("sign-in-refused");
});

test("signing in shows the overview's charts and queues", async () => {
  await page.getByLabel("Operator key").fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Overview" }).waitFor();
  await page.locator("[data-testid=chart-rps] canvas").waitFor();
  await page.locator("[data-testid=chart-p99] canvas").waitFor();
  const dead = await page.locator("[data-testid=figure-dead-letters] strong").textContent();
  assert.ok(Number(dead) >= 1, `dead letters shown: ${dead}`);
  const queues = await page.locator("[data-testid=queues]").textContent();
  assert.match(queues, /acme.*consumer/);
  // The key is in this tab's session storage, not in a cookie.
  assert.equal(await page.evaluate(() => document.cookie), "");
  await shot("overview");
});

test("an operator creates a tenant, and a refusal shows its detail", async () => {
  await nav("Tenants").click();
  const form = page.locator("[data-testid=create-tenant]");
  await form.locator("input").fill(tenant);
  await form.getByRole("button", { name: "Create" }).click();
  await page.locator("[data-testid=tenants]").getByRole("link", { name: tenant }).waitFor();
  assert.match(await banner("ok").textContent(), new RegExp(`Tenant ${tenant} created`));
  // Again: the API refuses, and the console says why in the API's words.
  await form.locator("input").fill(tenant);
  await form.getByRole("button", { name: "Create" }).click();
  await banner("error").waitFor();
  assert.match(await banner("error").textContent(), new RegExp(`Tenant exists.*409.*tenant "${tenant}" exists already`));
  await shot("tenants");

  await page.locator("[data-testid=tenants]").getByRole("link", { name: tenant }).click();
  const rate = page.locator("[data-testid=rate]");
  await rate.locator("input[name=rps]").fill("50");
  await rate.locator("input[name=burst]").fill("100");
  await rate.getByRole("button", { name: "Set rate" }).click();
  await banner("ok").waitFor();
  const quota = page.locator("[data-testid=quota]");
  await quota.locator("input[name=max_functions]").fill("3");
  await quota.getByRole("button", { name: "Set quotas" }).click();
  await page.getByText("Quotas set").waitFor();
  const facts = await page.locator("[data-testid=tenant-facts]").textContent();
  assert.match(facts, /50\/s, burst 100/);
  assert.match(facts, /0 of 3/);
  await shot("tenant");
});

test("an operator deploys a function, sees a refusal, and rolls back", async () => {
  await nav("Functions").click();
  await page.getByLabel("Tenant").first().selectOption(tenant);
  await page.waitForURL(/functions\?tenant=/);
  const deploy = async (manifest) => {
    const form = page.locator("[data-testid=deploy]");
    await form.locator("input[name=deploy-tenant]").fill(tenant);
    await form.locator("input[name=deploy-name]").fill("echo");
    await form.locator("input[name=manifest]").setInputFiles(join(deployDir, manifest));
    await form.locator("input[name=component]").setInputFiles(join(deployDir, "component.wasm"));
    await form.locator("input[name=schemas]").setInputFiles(join(deployDir, "echo.json"));
    await form.getByRole("button", { name: "Deploy" }).click();
  };
  await deploy("sluice.toml");
  await page.getByText(`${tenant}/echo v1 is live`).waitFor();
  await deploy("sluice.toml");
  await page.getByText(`${tenant}/echo v2 is live`).waitFor();
  const row = await page.locator("[data-testid=functions]").textContent();
  assert.match(row, new RegExp(`GET /${tenant}/echo/\\{a\\}`));
  assert.match(row, /v2/);

  // A manifest the host refuses: the banner carries the API's detail.
  await deploy("broken.toml");
  await banner("error").waitFor();
  assert.match(await banner("error").textContent(), /Invalid manifest \(422\)/);
  await shot("functions");

  await page.getByRole("button", { name: "versions" }).click();
  await page.getByRole("button", { name: "Roll back to v1" }).click();
  await page.getByText(`${tenant}/echo is back on v1`).waitFor();
  await shot("function-versions");
});

test("a request's invocation appears, with its detail", async () => {
  const answer = await fetch(`${publicUrl}/${tenant}/echo/hello`, {
    headers: { authorization: `Bearer ${tenantToken}` },
  });
  assert.equal(answer.status, 200, await answer.text());
  const id = answer.headers.get("x-request-id");
  assert.ok(id, "the response has a request id");

  await nav("Invocations").click();
  const filters = page.locator("[data-testid=invocation-filters]");
  await filters.locator("input[name=tenant]").fill(tenant);
  await filters.locator("select[name=outcome]").selectOption("ok");
  await filters.getByRole("button", { name: "Filter" }).click();
  // Records are committed in batches: refresh until it is there.
  const link = page.getByRole("link", { name: id });
  for (let i = 0; i < 50 && !(await link.count()); i++) {
    await page.waitForTimeout(200);
    await page.getByRole("button", { name: "Refresh" }).click();
  }
  await link.waitFor();
  assert.match(await page.locator("[data-testid=invocations]").textContent(), new RegExp(`GET /${tenant}/echo/\\{a\\}`));
  await shot("invocations");
  await link.click();
  const detail = await page.locator("[data-testid=invocation]").textContent();
  assert.match(detail, new RegExp(id));
  assert.match(detail, /Status200/);
  assert.match(detail, /Outcomeok/);
  assert.match(detail, /Attempts1/);
  const stages = await page.locator("[data-testid=stages]").textContent();
  for (const stage of ["receive", "authenticate", "validate", "process", "total"]) {
    assert.match(stages, new RegExp(stage), stages);
  }
  await shot("invocation");
});

test("an operator inspects a dead letter and replays it", async () => {
  await nav("Dead letters").click();
  const table = page.locator("[data-testid=dead-letters]");
  await table.waitFor();
  assert.match(await table.textContent(), /acme.*consumer.*jobs/);
  await shot("dead-letters");
  await table.getByRole("link", { name: "inspect" }).first().click();
  assert.match(await page.locator("[data-testid=payload]").textContent(), /hopeless/);
  assert.match(await page.locator("[data-testid=last-error]").textContent(), /cannot handle/);
  await shot("dead-letter");
  await page.getByRole("button", { name: "replay" }).click();
  await page.getByRole("heading", { name: "Dead letters" }).waitFor();
  await page.locator("[data-testid=dead-letters], p.empty").first().waitFor();
});

test("no script error and no CSP violation on any page", () => {
  assert.deepEqual(problems, []);
});
