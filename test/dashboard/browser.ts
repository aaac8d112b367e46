/**
 * A real browser for the dashboard's tests: Debian's Chromium (installed by the test command's
 * `pretest` step), driven headless by playwright-core. A missing Chromium fails the suite with the
 * reason, never skips it.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

/** Where each page's screenshot goes (`FERRY_TEST_OUTPUT`, else test-output/dashboard in the checkout). */
export const SHOT_DIR = process.env.FERRY_TEST_OUTPUT ?? fileURLToPath(new URL('../../test-output/dashboard/', import.meta.url));

export interface TestBrowser {
  browser: Browser;
  /** A fresh context (its own cookies) with a page that records the page's errors. */
  page(): Promise<{ context: BrowserContext; page: Page; errors: string[] }>;
  /** Closes every context opened so far (their pages' event streams end: the agent takes at most `maxStreams`). */
  closePages(): Promise<void>;
  close(): Promise<void>;
}

export async function launchBrowser(): Promise<TestBrowser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: the browser tests need Debian's chromium (apt-get install chromium; npm test's pretest step installs it when run as root)`);
  // Playwright gives each launch a fresh, temporary profile. As root, Chromium needs --no-sandbox; the background-networking flags keep it from calling out (no network here).
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const contexts: BrowserContext[] = [];
  return {
    browser,
    async page() {
      const context = await browser.newContext({ viewport: { width: 1200, height: 850 } });
      contexts.push(context);
      const page = await context.newPage();
      // Fail at the step that waits, with its locator, well before the test's own timeout.
      page.setDefaultTimeout(15_000);
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      page.on('console', (m) => {
        if (m.type() === 'error' && !/status of (401|403)/.test(m.text())) errors.push(m.text());
      });
      return { context, page, errors };
    },
    async closePages() {
      await Promise.all(contexts.splice(0).map((c) => c.close()));
    },
    async close() {
      await browser.close();
    },
  };
}

/** Saves a full-page screenshot as `<name>.png` in SHOT_DIR; returns its path. */
export async function shot(page: Page, name: string): Promise<string> {
  mkdirSync(SHOT_DIR, { recursive: true });
  const path = join(SHOT_DIR, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}
