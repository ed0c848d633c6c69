// The dashboard's browser scenarios, run by tests/dashboard.rs against real certfleet
// processes: headless Debian Chromium driven by playwright-core. Each scenario prints
// "ok <name>" and saves <name>.png in $SCREENSHOTS; the first failure exits non-zero.
import { createRequire } from "node:module";
import path from "node:path";
import fs from "node:fs";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`missing environment variable ${k}`);
  return v;
};
const require = createRequire(path.join(env("PLAYWRIGHT_DIR"), "package.json"));
const { chromium } = require("playwright-core");

const BASE = env("BASE_URL");
const EXPECT = JSON.parse(env("EXPECT"));
const SHOTS = env("SCREENSHOTS");
// Long enough for a real rotation through the scheduler and a worker; never a timing claim.
const PATIENCE = 90_000;

const profile = env("USER_DATA_DIR");
fs.rmSync(profile, { recursive: true, force: true });
fs.mkdirSync(profile, { recursive: true });
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
  console.log(`ok ${name}`);
}

async function login(page, user) {
  await page.goto(`${BASE}/login`);
  await page.getByLabel("Username").fill(user);
  await page.getByLabel("Password").fill(env("PASSWORD"));
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL(`${BASE}/`);
}

async function logout(page) {
  await page.getByRole("button", { name: "Log out" }).click();
  await page.waitForURL(/\/login/);
}

/** Reloads `url` until `probe(page)` is true. */
async function until(page, url, probe, what) {
  const deadline = Date.now() + PATIENCE;
  for (;;) {
    await page.goto(url);
    if (await probe(page)) return;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await page.waitForTimeout(500);
  }
}

const number = async (page, href) => Number((await page.locator(`a.card[href="${href}"] .n`).innerText()).trim());

const page = browser.pages()[0] ?? (await browser.newPage());
try {
  // 1. ADMIN: the overview's counts are the seeded fleet's.
  await login(page, env("ADMIN_USER"));
  check((await number(page, "/assets")) === EXPECT.total, "total assets");
  for (const state of ["ok", "failed", "dead"]) {
    const shown = await number(page, `/assets?state=${state}`);
    check(shown === EXPECT[state], `${state} count: shown ${shown}, the inventory has ${EXPECT[state]}`);
  }
  await page.click('a.card[href="/assets?state=dead"]');
  check((await page.locator("tbody tr").count()) === EXPECT.dead, "the dead number links to the dead assets");
  await page.goto(`${BASE}/`);
  await shot(page, "overview");

  // 2. Dead letters: retry one, and watch its asset turn ok.
  const retry = env("RETRY_ASSET");
  await page.goto(`${BASE}/dead`);
  const row = (name) => page.locator("tbody tr", { has: page.locator(`a:text-is("${name}")`) });
  await row(retry).locator('input[type="checkbox"]').check();
  await page.getByRole("button", { name: "Retry selected" }).click();
  await page.locator(".notice", { hasText: "Retried 1 dead letter(s)." }).waitFor();
  await until(page, `${BASE}/assets/${retry}`, async (p) => (await p.locator("table.kv .badge").first().innerText()) === "ok",
    `${retry} to turn ok`);
  await shot(page, "retry");

  // 3. Discard another: it is gone from the table.
  const discard = env("DISCARD_ASSET");
  await page.goto(`${BASE}/dead`);
  await row(discard).locator('input[type="checkbox"]').check();
  await page.getByRole("button", { name: "Discard selected" }).click();
  await page.locator(".notice", { hasText: "Discarded 1 dead letter(s)." }).waitFor();
  check((await row(discard).count()) === 0, `${discard} is gone`);
  check((await row(retry).count()) === 0, `${retry} (retried) is no longer pending`);
  await shot(page, "discard");

  // The detail page of a remaining letter: the full reason and the asset's history.
  await page.locator("tbody tr").first().locator("td a").first().click();
  await page.getByRole("heading", { name: "Reason" }).waitFor();
  check((await page.locator('code:text-is("x-certfleet-error-class")').count()) === 1, "the letter's headers are shown");
  await shot(page, "dead-detail");

  // 4. Rotate now: the fingerprint on the detail page changes.
  const rotate = env("ROTATE_ASSET");
  await page.goto(`${BASE}/assets/${rotate}`);
  const before = (await page.locator("#fingerprint").innerText()).trim();
  check(/^[0-9a-f]{64}$/.test(before), `a fingerprint before (${before})`);
  await page.getByRole("button", { name: "Rotate now" }).click();
  await page.locator(".notice", { hasText: "published" }).waitFor();
  await until(page, `${BASE}/assets/${rotate}`, async (p) => {
    const now = (await p.locator("#fingerprint").innerText()).trim();
    return now !== before && /^[0-9a-f]{64}$/.test(now);
  }, `${rotate}'s fingerprint to change`);
  await shot(page, "rotate");

  // 5. A POST without the CSRF token is refused, even with the ADMIN's session.
  const noToken = await page.evaluate(async (name) => {
    const r = await fetch(`/assets/${name}/rotate`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "" });
    return r.status;
  }, rotate);
  check(noToken === 403, `POST without CSRF token: ${noToken}`);
  await shot(page, "csrf");

  // The audit log (ADMIN) has the dashboard's writes, by the same actor as the API's.
  await page.goto(`${BASE}/audit`);
  for (const action of ["dlq.retry", "dlq.discard", "asset.rotate", "login.ok"]) {
    check((await page.locator(`td code:text-is("${action}")`).count()) > 0, `audit row ${action}`);
  }
  await shot(page, "audit");
  await logout(page);

  // 6. DEVELOPER: no write buttons; a forged POST with its session and token gets 403.
  await login(page, env("DEV_USER"));
  await page.goto(`${BASE}/assets/${rotate}`);
  check((await page.getByRole("button", { name: "Rotate now" }).count()) === 0, "no Rotate now for DEVELOPER");
  check((await page.getByRole("button", { name: /certificate validation/ }).count()) === 0, "no validation button");
  await page.goto(`${BASE}/dead`);
  check((await page.getByRole("button", { name: /Retry|Discard/ }).count()) === 0, "no dead-letter buttons");
  const forged = await page.evaluate(async (name) => {
    const csrf = document.querySelector('input[name="csrf"]').value;
    const r = await fetch(`/assets/${name}/rotate`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: `csrf=${encodeURIComponent(csrf)}` });
    return r.status;
  }, rotate);
  check(forged === 403, `forged POST as DEVELOPER: ${forged}`);
  await page.goto(`${BASE}/assets/${rotate}`);
  await shot(page, "developer");

  // 7. Stop a worker: the Queues page, refreshing itself, shows it gone.
  const worker = env("STOP_WORKER");
  await page.goto(`${BASE}/queues`);
  const wrow = page.locator("tbody tr", { has: page.locator(`code:text-is("${worker}")`) });
  await wrow.locator(".badge", { hasText: "alive" }).waitFor({ timeout: PATIENCE });
  await shot(page, "queues");
  process.kill(Number(env("STOP_WORKER_PID")), "SIGTERM");
  // No reload: the page's own 5 s refresh must bring the change.
  await wrow.locator(".badge", { hasText: "gone" }).waitFor({ timeout: PATIENCE });
  await page.setViewportSize({ width: 390, height: 844 });
  await shot(page, "worker-gone");
} catch (e) {
  await page.screenshot({ path: path.join(SHOTS, "failure.png"), fullPage: true }).catch(() => {});
  console.error(String(e?.stack ?? e));
  await browser.close();
  process.exit(1);
}
await browser.close();
