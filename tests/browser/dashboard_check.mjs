// Headless Chromium against a running berth's dashboard (driven by tests/integration/test_dashboard.py):
// the routers are listed, a router added to the watched dynamic file appears on the open page
// without a reload, the configuration's problems are shown, no console errors, no horizontal
// overflow on a phone, and screenshots of both.
// Usage: node dashboard_check.mjs <settings.json>
//   settings: {url, chromium, dynamicPath, nextDynamic, expectRouters: [...], addedRouter,
//              expectProblem, artifacts}
import { createRequire } from 'node:module';
import { readFileSync, renameSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const settings = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const failures = [];
const check = (ok, what) => {
  console.log((ok ? 'ok   ' : 'FAIL ') + what);
  if (!ok) failures.push(what);
};

// Console errors, uncaught exceptions and failed requests of a page, as text.
function watch(page, label) {
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`${label} console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`${label} exception: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`${label} request failed: ${r.url()} ${r.failure()?.errorText}`));
  return problems;
}

const rowSelector = (name) => `tr[data-router="${name.replace(/"/g, '\\"')}"]`;

const browser = await chromium.launch({
  executablePath: settings.chromium,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  timeout: 30000,
});
try {
  mkdirSync(settings.artifacts, { recursive: true });

  // A laptop.
  const laptop = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await laptop.newPage();
  const laptopProblems = watch(page, 'laptop');
  let navigations = 0;
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations++; });
  await page.goto(settings.url, { waitUntil: 'load' });
  check(new URL(page.url()).pathname.endsWith('/dashboard/'), `the page is the dashboard (${page.url()})`);
  for (const name of settings.expectRouters) {
    await page.waitForSelector(rowSelector(name), { timeout: 10000 });
    check(true, `router ${name} is listed`);
  }
  const problemText = await page.textContent('#problems');
  check(problemText.includes(settings.expectProblem), `the problem "${settings.expectProblem}" is shown`);
  await page.waitForSelector('#live.ok', { timeout: 10000 });
  check(true, 'the page says it is live');

  // A router added to the watched file shows up on the open page, without a reload.
  const tmp = settings.dynamicPath + '.tmp';
  writeFileSync(tmp, settings.nextDynamic);
  renameSync(tmp, settings.dynamicPath);
  const t0 = Date.now();
  await page.waitForSelector(rowSelector(settings.addedRouter), { timeout: 10000 });
  check(true, `router ${settings.addedRouter} appeared after ${Date.now() - t0} ms`);
  check(navigations === 1, `no reload (${navigations} navigation)`);
  // The rates need two polls after traffic; the cells are there either way.
  const cells = await page.$$eval(`${rowSelector(settings.addedRouter)} td`, (tds) => tds.length);
  check(cells === 8, `the added router's row has 8 cells (${cells})`);
  const laptopShot = path.join(settings.artifacts, 'dashboard-laptop.png');
  await page.screenshot({ path: laptopShot, fullPage: true });
  console.log('screenshot ' + laptopShot);
  check(laptopProblems.length === 0, 'no console errors on the laptop' + (laptopProblems.length ? ': ' + laptopProblems.join('; ') : ''));

  // A phone: the tables become cards, nothing is wider than the screen.
  const phone = await browser.newContext({
    viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
  });
  const mobile = await phone.newPage();
  const phoneProblems = watch(mobile, 'phone');
  await mobile.goto(settings.url, { waitUntil: 'load' });
  await mobile.waitForSelector(rowSelector(settings.addedRouter), { timeout: 10000 });
  const widths = await mobile.evaluate(() => ({
    page: document.documentElement.scrollWidth,
    body: document.body.scrollWidth,
    viewport: window.innerWidth,
  }));
  check(widths.page <= widths.viewport && widths.body <= widths.viewport,
    `no horizontal overflow on a phone (${JSON.stringify(widths)})`);
  const phoneShot = path.join(settings.artifacts, 'dashboard-phone.png');
  await mobile.screenshot({ path: phoneShot, fullPage: true });
  console.log('screenshot ' + phoneShot);
  const phoneTop = path.join(settings.artifacts, 'dashboard-phone-screen.png');
  await mobile.screenshot({ path: phoneTop });
  console.log('screenshot ' + phoneTop);
  check(phoneProblems.length === 0, 'no console errors on the phone' + (phoneProblems.length ? ': ' + phoneProblems.join('; ') : ''));
} catch (e) {
  check(false, 'unexpected: ' + (e && e.stack ? e.stack : e));
} finally {
  await browser.close();
}
console.log(failures.length ? `${failures.length} check(s) failed` : 'all checks passed');
process.exit(failures.length ? 1 : 0);
