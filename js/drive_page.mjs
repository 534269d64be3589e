#!/usr/bin/env node
// node js/drive_page.mjs URL QUERY_JSON SCREENSHOT.png
//
// Opens a tfrec web demo (export/webdemo.py) in headless Debian chromium through
// playwright-core, waits for the model to load, enters the query
// ({"user": "ID", "exclude_seen": true} or {"session": "ID,ID,..."}), presses
// "Top 10", reads the shown items back and saves a screenshot. Prints one JSON
// line: {"items": [{rank, index, id, title, score}], "status", "meta",
// "console", "seconds"}. Exits 1 when the page reports an error.

import process from 'node:process';

import { chromium } from 'playwright-core';

const CHROMIUM = process.env.TFREC_CHROMIUM || '/usr/lib/chromium/chromium';

async function main([url, queryJson, screenshot]) {
  if (!url || !queryJson || !screenshot) {
    process.stderr.write('usage: node js/drive_page.mjs URL QUERY_JSON SCREENSHOT\n');
    return 2;
  }
  const query = JSON.parse(queryJson);
  const started = performance.now();
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox'],
  });
  const consoleLines = [];
  try {
    const page = await browser.newPage({ viewport: { width: 900, height: 640 } });
    page.on('console', (msg) => consoleLines.push(`${msg.type()}: ${msg.text()}`));
    page.on('pageerror', (err) => consoleLines.push(`pageerror: ${err.message}`));
    await page.goto(url);
    await page.waitForFunction(
      () => ['ready', 'error'].includes(document.body.dataset.state), null, { timeout: 60000 },
    );
    if (await page.evaluate(() => document.body.dataset.state) === 'ready') {
      if (query.user !== undefined) {
        await page.selectOption('#user', { label: String(query.user) });
        await page.setChecked('#exclude-seen', query.exclude_seen !== false);
      } else {
        await page.fill('#session', String(query.session));
      }
      await page.click('#recommend');
      await page.waitForFunction(
        () => ['done', 'error'].includes(document.body.dataset.state), null, { timeout: 60000 },
      );
    }
    const result = await page.evaluate(() => ({
      state: document.body.dataset.state,
      status: document.getElementById('status').textContent,
      meta: document.getElementById('meta').textContent,
      items: Array.from(document.querySelectorAll('#results tr.rec'), (tr) => ({
        rank: Number(tr.dataset.rank),
        index: Number(tr.dataset.itemIndex),
        id: tr.dataset.itemId,
        title: tr.querySelector('td.title').textContent,
        score: Number(tr.dataset.score),
      })),
    }));
    await page.screenshot({ path: screenshot, fullPage: true });
    result.console = consoleLines;
    result.seconds = +((performance.now() - started) / 1000).toFixed(2);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return result.state === 'done' ? 0 : 1;
  } finally {
    await browser.close();
  }
}

process.exitCode = await main(process.argv.slice(2));
