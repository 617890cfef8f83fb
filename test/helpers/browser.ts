import { existsSync, readFileSync } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import Chromium from "@sparticuz/chromium";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";

/**
 * The Chromium that `npm install` brought: `@sparticuz/chromium` ships a headless build
 * inside its npm package (brotli-packed; it links only libc, libgcc and libexpat), so the
 * tests need no system browser and no download. It unpacks into the OS temp folder, where
 * it would share `/tmp/chromium` with anything else using the package and could leave a
 * half-written binary if killed mid-way; so each version is unpacked once into its own
 * folder, under a temporary name renamed into place only when complete (about 1.5 s, 210 MB).
 */
export async function chromiumPath(): Promise<string> {
  // Its package.json is not exported: read it beside the entry point (build/index.js).
  const manifest = join(dirname(require.resolve("@sparticuz/chromium")), "..", "package.json");
  const { version } = JSON.parse(readFileSync(manifest, "utf8")) as { version: string };
  const dir = join(tmpdir(), `ticks-chromium-${version}`);
  const binary = join(dir, "chromium");
  if (existsSync(binary)) return binary;
  const partial = `${dir}.${process.pid}.partial`;
  await rm(partial, { recursive: true, force: true });
  await mkdir(partial, { recursive: true });
  // The package unpacks into os.tmpdir(), which reads TMPDIR on each call.
  const savedTmpdir = process.env.TMPDIR;
  process.env.TMPDIR = partial;
  try {
    await Chromium.executablePath();
  } finally {
    if (savedTmpdir === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmpdir;
  }
  // Another test process may have finished first: its copy is as good as ours.
  await rename(partial, dir).catch(() => rm(partial, { recursive: true, force: true }));
  return binary;
}

/** A headless Chromium this test process owns; close() ends it. */
export async function launchChromium(): Promise<Browser> {
  const root = process.getuid?.() === 0;
  return chromium.launch({
    executablePath: await chromiumPath(),
    headless: true,
    args: [
      ...(root ? ["--no-sandbox"] : []),
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}

/**
 * For a describe block: one Chromium, launched before its tests and closed after them.
 * newContext() opens a fresh profile (its own IndexedDB), closed after each test.
 */
export function useChromium() {
  let browser: Browser | undefined;
  const contexts: BrowserContext[] = [];
  before(async () => {
    browser = await launchChromium();
  });
  afterEach(async () => {
    await Promise.all(contexts.splice(0).map((c) => c.close()));
  });
  after(async () => {
    await browser?.close();
  });
  return {
    async newContext(): Promise<BrowserContext> {
      if (!browser) throw new Error("useChromium: only there once the suite's before hook ran");
      const context = await browser.newContext();
      contexts.push(context);
      return context;
    },
  };
}

/** Opens the chat page served at `base` in `page` and connects as `user` (dev mode: by user ID). */
export async function connectAs(page: Page, base: string, user: string): Promise<void> {
  await page.goto(`${base}/`);
  await page.getByLabel("User ID", { exact: true }).fill(user);
  await page.getByRole("button", { name: "Connect" }).click();
  await page.getByText(`Connected as ${user}`).waitFor();
}

/** The chat page's messages, as list items. */
export const messageItems = (page: Page) => page.getByRole("list", { name: "Messages" }).getByRole("listitem");
