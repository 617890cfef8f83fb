import { execFileSync } from "node:child_process";
import { chromium, type Browser } from "playwright-core";

/** Debian's chromium (`apt-get install chromium`; .ci/run installs it when missing). */
export function chromiumPath(): string {
  return execFileSync("which", ["chromium"], { encoding: "utf8" }).trim();
}

/** A headless Chromium this test process owns; close() ends it. */
export function launchChromium(): Promise<Browser> {
  const root = process.getuid?.() === 0;
  return chromium.launch({
    executablePath: chromiumPath(),
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
