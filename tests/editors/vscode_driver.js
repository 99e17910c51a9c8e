// Drives code-server (VS Code in a browser) with headless Chromium through playwright-core:
// opens a file, types, waits for DeepShiva's ghost text, accepts it with Tab, reads the status
// bar, and takes a screenshot. Called by tests/editors/test_vscode.py.
//
// Usage: node vscode_driver.js '<json>' with
//   {url, file, type, screenshot, timeoutMs, playwright (path of playwright-core), chromium,
//    trust ('yes' | 'no': the answer to VS Code's workspace-trust question at start-up)}
// Prints one JSON line: {ok, ghost, statusText, before, after, steps, error}.
'use strict';

const cfg = JSON.parse(process.argv[2]);
const { chromium } = require(cfg.playwright);

const result = { ok: false, steps: [] };
const step = (name) => result.steps.push(`${((Date.now() - t0) / 1000).toFixed(1)}s ${name}`);
const t0 = Date.now();

async function editorText(page) {
  // The text of the visible lines, without ghost text (which is rendered inside the lines).
  return page.evaluate(() => {
    const lines = [...document.querySelectorAll('.monaco-editor .view-lines .view-line')];
    const sorted = lines
      .map((el) => {
        const copy = el.cloneNode(true);
        copy.querySelectorAll('[class*="ghost-text"]').forEach((g) => g.remove());
        return { top: parseFloat(el.style.top || '0'), text: copy.textContent };
      })
      .sort((a, b) => a.top - b.top);
    return sorted.map((l) => l.text.replace(/\u00a0/g, ' ')).join('\n');
  });
}

async function statusText(page) {
  return page.evaluate(() => {
    const items = [...document.querySelectorAll('.statusbar-item')];
    const mine = items.find((el) => /DeepShiva/.test(el.textContent || '') || /DeepShiva/.test(el.getAttribute('aria-label') || ''));
    return mine ? (mine.textContent || '').trim() || mine.getAttribute('aria-label') : null;
  });
}

(async () => {
  const browser = await chromium.launch({
    executablePath: cfg.chromium,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    timeout: 60000,
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  try {
    page.setDefaultTimeout(cfg.timeoutMs);
    await page.goto(cfg.url, { waitUntil: 'domcontentloaded' });
    step('page loaded');
    await page.waitForSelector('.monaco-workbench', { timeout: cfg.timeoutMs });
    step('workbench');
    if (cfg.trust) {
      // Workspace trust is on (VS Code's default): answer its start-up question as a user would.
      const label = cfg.trust === 'yes' ? /Yes, I trust/ : /No, I don.t trust/;
      const button = page.locator('.monaco-dialog-box a.monaco-button, .monaco-dialog-box .monaco-button', { hasText: label }).first();
      await button.waitFor({ state: 'visible', timeout: cfg.timeoutMs });
      await button.click();
      step(`workspace trust: ${cfg.trust}`);
      result.restricted = await page
        .waitForFunction(() => /Restricted Mode/.test(document.querySelector('.statusbar')?.textContent || ''), null, { timeout: 5000 })
        .then(() => true)
        .catch(() => false);
    }
    // Wait for the extension to start and its status bar item to say "ready".
    await page.waitForFunction(
      () => [...document.querySelectorAll('.statusbar-item')].some((el) => /DeepShiva: ready/.test(el.textContent || '')),
      null,
      { timeout: cfg.timeoutMs },
    ).catch(() => undefined);
    result.statusBefore = await statusText(page);
    step(`status: ${result.statusBefore}`);

    // Open the file with Quick Open.
    await page.locator('.monaco-workbench').click({ position: { x: 600, y: 300 } }).catch(() => undefined);
    await page.keyboard.press('Control+P');
    await page.waitForSelector('.quick-input-widget input', { state: 'visible' });
    await page.keyboard.type(cfg.file, { delay: 20 });
    await page.waitForSelector('.quick-input-list .monaco-list-row', { state: 'visible' });
    await page.keyboard.press('Enter');
    await page.waitForSelector('.monaco-editor .view-lines', { state: 'visible' });
    step('file open');
    await page.locator('.monaco-editor .view-lines').first().click();
    await page.keyboard.press('Control+End');
    result.before = await editorText(page);

    await page.keyboard.type(cfg.type, { delay: 40 });
    step('typed');
    await page.waitForSelector('.ghost-text-decoration, .ghost-text-decoration-preview', {
      state: 'attached',
      timeout: cfg.timeoutMs,
    });
    // The decoration can be attached a frame before its text is rendered (seen once under a
    // loaded full suite: an empty ghost): wait for the text itself.
    const ghostText = () => {
      const clean = (t) => (t || '').replace(/\u00a0/g, ' ');
      // First line: the decorations after the cursor; further lines: the ghost view zone.
      const first = [...document.querySelectorAll('.view-line .ghost-text-decoration')]
        .map((el) => clean(el.textContent)).join('');
      const more = [...document.querySelectorAll('.ghost-text .view-line, .ghost-text > div > div')]
        .map((el) => clean(el.textContent));
      return [first, ...more].join('\n');
    };
    await page
      .waitForFunction(`(${ghostText})().trim().length > 0`, null, { timeout: cfg.timeoutMs })
      .catch(() => {}); // an empty ghost is then reported as it is
    result.ghost = await page.evaluate(ghostText);
    result.ghostHtml = await page.evaluate(() =>
      [...document.querySelectorAll('.ghost-text-decoration, .ghost-text')].map((el) => el.outerHTML).join('\n').slice(0, 4000));
    step(`ghost: ${JSON.stringify(result.ghost)}`);
    await page.screenshot({ path: cfg.screenshot });
    if (cfg.acceptWordFirst) {
      // VS Code's own "accept next word" (Ctrl+Right while a suggestion shows).
      await page.keyboard.press('Control+ArrowRight');
      await page.waitForTimeout(500);
      result.afterWord = await editorText(page);
      step('accepted a word');
      await page.waitForSelector('.ghost-text-decoration', { state: 'attached', timeout: cfg.timeoutMs });
    }
    const beforeAccept = await editorText(page);
    result.beforeAccept = beforeAccept;
    await page.keyboard.press('Tab');
    await page.waitForFunction(
      () => document.querySelectorAll('.ghost-text-decoration').length === 0,
      null,
      { timeout: 5000 },
    ).catch(() => undefined);
    await page.waitForTimeout(300);
    result.after = await editorText(page);
    step('accepted');
    result.statusText = await statusText(page);
    await page.screenshot({ path: cfg.screenshot.replace(/\.png$/, '-accepted.png') });
    if (cfg.toggle) {
      // A click on the status bar item turns suggestions off (and says so).
      await page.locator('.statusbar-item', { hasText: 'DeepShiva' }).first().click();
      await page.waitForFunction(
        () => [...document.querySelectorAll('.statusbar-item')].some((el) => /DeepShiva: off/.test(el.textContent || '')),
        null,
        { timeout: 10000 },
      );
      result.statusAfterToggle = await statusText(page);
      step('toggled off');
    }
    result.ok = true;
  } catch (err) {
    result.error = String(err && err.stack ? err.stack : err);
    result.statusText = await statusText(page).catch(() => null);
    await page.screenshot({ path: cfg.screenshot.replace(/\.png$/, '-failed.png') }).catch(() => undefined);
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(result) + '\n');
})().catch((err) => {
  result.error = String(err && err.stack ? err.stack : err);
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
});
