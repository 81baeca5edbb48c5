// Logs in through a real headless Chromium as a person would: opens the gateway's start URL,
// fills the provider's login form, approves consent, and prints the page the gateway's
// /callback answers (JSON) on stdout.
//   node browser-login.mjs <start-url> <login> [screenshot.png]
import { chromium } from 'playwright-core';

const [start, login, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-background-networking'],
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(20000);
  await page.goto(start);
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', 'any password');
  await page.click('button[type=submit]');
  // The login form is gone once the provider has moved on (to consent, or to the callback).
  await page.waitForSelector('input[name=login]', { state: 'detached' });
  if (!page.url().includes('/callback')) {
    await page.click('button[type=submit]'); // consent
  }
  await page.waitForURL(/\/callback/);
  if (screenshot) await page.screenshot({ path: screenshot });
  console.log(await page.innerText('body'));
} finally {
  await browser.close();
}
