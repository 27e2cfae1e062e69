// Headless Chromium (Debian's /usr/bin/chromium) driven by playwright-core,
// for postern's browser sign-in tests. It reads one JSON command per line
// on stdin and writes one JSON answer per line on stdout.
//
// Usage: node browser.mjs HOSTNAME
// Every name under HOSTNAME resolves to 127.0.0.1 and every other name
// fails to resolve, so the browser only ever loads loopback addresses.
//
// Commands ({"op": ..., ...}):
//   goto {url}                 navigate; follows redirects
//   login {user}               fill and submit the provider's login form
//   submit {selector}          click a submit button and wait for the page
//   cookies {}                 every cookie of the browser context
//   set_cookies {cookies}      add cookies (playwright's cookie objects)
//   clear_cookies {names?}     remove some or all cookies
// Page answers: {"status", "url", "text"}; errors: {"error"}.

import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const hostname = process.argv[2];
if (!hostname) {
  process.stderr.write('usage: node browser.mjs HOSTNAME\n');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: [
    `--host-resolver-rules=MAP *.${hostname} 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1`,
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-quic',
    '--no-first-run',
    '--no-proxy-server',
  ],
});
const context = await browser.newContext();
const page = await context.newPage();

async function answer(response) {
  return {
    status: response ? response.status() : null,
    url: page.url(),
    text: await page.evaluate(() => document.body?.innerText ?? ''),
  };
}

async function run(command) {
  switch (command.op) {
    case 'goto':
      return answer(await page.goto(command.url, { waitUntil: 'load' }));
    case 'login': {
      await page.fill('input[name="login"]', command.user);
      await page.fill('input[name="password"]', 'any password');
      const [response] = await Promise.all([
        page.waitForNavigation({ waitUntil: 'load' }),
        page.click('button[type="submit"]'),
      ]);
      return answer(response);
    }
    case 'submit': {
      const [response] = await Promise.all([
        page.waitForNavigation({ waitUntil: 'load' }),
        page.click(command.selector),
      ]);
      return answer(response);
    }
    case 'cookies':
      return { cookies: await context.cookies() };
    case 'set_cookies':
      await context.addCookies(command.cookies);
      return { ok: true };
    case 'clear_cookies':
      if (command.names) {
        for (const name of command.names) await context.clearCookies({ name });
      } else {
        await context.clearCookies();
      }
      return { ok: true };
    default:
      throw new Error(`unknown op ${command.op}`);
  }
}

const lines = createInterface({ input: process.stdin });
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
for await (const line of lines) {
  let reply;
  try {
    reply = await run(JSON.parse(line));
  } catch (e) {
    reply = { error: String(e) };
  }
  process.stdout.write(`${JSON.stringify(reply)}\n`);
}
await browser.close();
