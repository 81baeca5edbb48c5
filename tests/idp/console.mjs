// Uses the operations console in a real headless Chromium as a person would, finding
// everything by its accessible role and name: logs in through the tenant's provider,
// submits a job and watches it finish, submits one that dies and watches it reach the dead
// letters, then (once the test has fixed the function) replays it and watches it succeed.
// Steps are JSON lines on stdout; after `{"step":"dead"}` it waits for a line on stdin.
//   node console.mjs <gateway-url> <tenant> <login> <screenshot-prefix>
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const [gateway, tenant, login, shots] = process.argv.slice(2);
const origin = new URL(gateway).origin;
const say = (step) => console.log(JSON.stringify(step));
const stdin = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => stdin.once('line', resolve));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-background-networking'],
});
const problems = [];
const foreign = new Set();
let loggedIn = false;
let page;
try {
  page = await browser.newPage();
  page.setDefaultTimeout(30000);
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // The provider's pages are not ours; from the console on, no error is acceptable.
    if (loggedIn && m.type() === 'error') problems.push(`console error: ${m.text()}`);
  });
  page.on('request', (r) => {
    // Once logged in, everything comes from the gateway: no CDN, no third party.
    if (loggedIn && !r.url().startsWith(origin) && !r.url().startsWith(origin.replace('http', 'ws'))) {
      foreign.add(r.url());
    }
  });

  // Log in. Nobody is logged in yet: there is nothing to log out of.
  await page.goto(`${gateway}/console`);
  if (await page.getByRole('button', { name: 'Log out' }).isVisible()) {
    problems.push('"Log out" is shown before anyone logged in');
  }
  await page.getByRole('link', { name: `Log in with ${tenant}` }).click();
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', 'any password');
  await page.click('button[type=submit]');
  await page.waitForSelector('input[name=login]', { state: 'detached' });
  if (!page.url().startsWith(`${gateway}/`)) {
    await page.click('button[type=submit]'); // consent
  }
  await page.waitForURL(`${gateway}/console`);
  loggedIn = true;
  await page.getByRole('status').filter({ hasText: 'Live' }).waitFor();
  const who = await page.locator('#who').innerText();
  say({ step: 'logged-in', who, url: page.url() });

  // Every control has an accessible name.
  const unnamed = await page.evaluate(() =>
    [...document.querySelectorAll('input, select, textarea')]
      .filter((e) => !e.closest('[hidden]') && e.labels.length === 0)
      .map((e) => e.id || e.name));
  if (unnamed.length) problems.push(`controls without a label: ${unnamed.join(', ')}`);

  // Submit a job and watch it finish.
  const submitted = new Set();
  const submitJob = async (fn, input) => {
    await page.getByLabel('Function', { exact: true }).selectOption(fn);
    await page.getByLabel('Input (JSON)', { exact: true }).fill(input);
    await page.getByRole('button', { name: 'Submit', exact: true }).click();
    // The page says which job it accepted: wait for one it has not said before.
    const text = await page.waitForFunction((seen) => {
      const m = /^Job (\S+) accepted/.exec(document.querySelector('#submit-result').textContent);
      return m && !seen.includes(m[1]) ? m[1] : null;
    }, [...submitted]);
    const id = await text.jsonValue();
    submitted.add(id);
    return id;
  };
  const jobState = (id) => page.locator(`#jobs tr[data-job="${id}"] .state`);
  const echo = await submitJob('echo', '{"from": "the console"}');
  await jobState(echo).filter({ hasText: 'succeeded' }).waitFor();
  say({ step: 'completed', job: echo });

  // A job the console did not submit arrives live, whole: with when it was created.
  const outside = await page.evaluate(async () => {
    const { token } = JSON.parse(sessionStorage.getItem('surge.console'));
    const r = await fetch('/jobs/echo', {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', prefer: 'respond-async' },
      body: '{"from": "elsewhere"}',
    });
    return (await r.json()).id;
  });
  await jobState(outside).filter({ hasText: 'succeeded' }).waitFor();
  const created = await page.locator(`#jobs tr[data-job="${outside}"] td`).nth(4).innerText();
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(created)) {
    problems.push(`a job that arrived live has no Created time: ${JSON.stringify(created)}`);
  }

  // A job that dies (the function's timeout is shorter than the work) shows in the dead letters.
  const doomed = await submitJob('sleep', '{"ms": 1000}');
  await jobState(doomed).filter({ hasText: 'dead' }).waitFor();
  const replay = page.getByRole('button', { name: `Replay job ${doomed} of sleep` });
  await replay.waitFor();
  const reason = await page.locator(`#dead tr[data-job="${doomed}"] td.error`).innerText();
  await page.screenshot({ path: `${shots}-dead.png`, fullPage: true });
  say({ step: 'dead', job: doomed, reason });

  // The test fixes the function; replay, and watch the job succeed and leave the dead letters.
  await nextLine();
  await replay.click();
  await page.locator('#dead-result').filter({ hasText: 'queued again' }).waitFor();
  await jobState(doomed).filter({ hasText: 'succeeded' }).waitFor();
  await page.locator(`#dead tr[data-job="${doomed}"]`).waitFor({ state: 'detached' });
  await page.getByText('No dead jobs.').waitFor();
  const sleepRow = page.locator('#functions tr[data-function="sleep"]');
  await sleepRow.locator('.succeeded').filter({ hasText: /^[1-9]/ }).waitFor();
  // The queue figures follow the broker live: one replica of each function consumes.
  for (const fn of ['echo', 'sleep']) {
    await page.locator(`#functions tr[data-function="${fn}"] .replicas`).filter({ hasText: /^1$/ }).waitFor();
  }
  const figures = {};
  for (const fn of ['echo', 'sleep']) {
    const row = page.locator(`#functions tr[data-function="${fn}"]`);
    figures[fn] = Object.fromEntries(await Promise.all(
      ['ready', 'unacked', 'replicas', 'succeeded', 'failed', 'p50', 'p95', 'dead'].map(
        async (c) => [c, await row.locator(`.${c}`).innerText()])));
  }
  await page.screenshot({ path: `${shots}-replayed.png`, fullPage: true });
  say({ step: 'replayed', job: doomed, figures, problems, foreign: [...foreign] });
  // "Log out" ends the login token everywhere, not only in this tab.
  await page.locator('#logout').click();
  await page.locator('#login').waitFor();
  say({ step: 'logged-out' });
} catch (e) {
  // What the page showed and said when it went wrong, for the test's failure message.
  if (page) await page.screenshot({ path: `${shots}-failed.png`, fullPage: true }).catch(() => {});
  console.error(`${e.stack ?? e}\npage problems: ${JSON.stringify(problems)}\nscreenshot: ${shots}-failed.png`);
  process.exitCode = 1;
} finally {
  stdin.close();
  await browser.close();
}
