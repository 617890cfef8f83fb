import type { NodeProcess } from "./processes";

/**
 * Counts a node's warn-and-above log lines by message, from now on (spawnNode keeps only the
 * last 2000 lines): evidence for the report. Also keeps the first few lines of each kind.
 */
export class LogWatch {
  readonly counts = new Map<string, number>();
  readonly samples = new Map<string, string>();
  private buffer = "";

  constructor(readonly node: NodeProcess) {
    for (const line of node.output) if (!/^\s+at /.test(line)) this.line(line);
    const onData = (chunk: Buffer) => {
      this.buffer += chunk.toString();
      const lines = this.buffer.split("\n");
      this.buffer = lines.pop()!;
      lines.forEach((l) => this.line(l));
    };
    node.child.stdout!.on("data", onData);
    // Unstructured lines (libraries writing to the console): one count per line, stack frames skipped.
    node.child.stderr!.on("data", (c: Buffer) =>
      c
        .toString()
        .split("\n")
        .filter((l) => l.trim() && !/^\s+at /.test(l))
        .forEach((l) => this.line(`stderr: ${l}`)),
    );
  }

  private line(line: string): void {
    if (!line.trim() || /^\s+at /.test(line)) return; // stack frames of an unstructured line
    let key: string;
    try {
      const entry = JSON.parse(line) as { level?: number; msg?: string; err?: { message?: string } | string };
      if ((entry.level ?? 0) < 40) return;
      const err = typeof entry.err === "string" ? entry.err : entry.err?.message;
      const level = entry.level === 40 ? "warn" : entry.level === 50 ? "error" : "fatal";
      key = `${level} "${entry.msg}"${err ? ` (${String(err).slice(0, 100)})` : ""}`;
    } catch {
      key = `raw: ${line.slice(0, 160).replace(/\s+/g, " ")}`;
    }
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    if (!this.samples.has(key)) this.samples.set(key, line.slice(0, 2000));
  }

  count(pattern: RegExp): number {
    let n = 0;
    for (const [k, v] of this.counts) if (pattern.test(k)) n += v;
    return n;
  }

  summary(): string {
    const node = this.node;
    const exit = node.child.exitCode ?? node.child.signalCode ?? "running";
    const lines = [...this.counts].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${n}x ${k}`);
    return `node pid=${node.pid} (${exit}): ${lines.length ? lines.slice(0, 15).join("; ") : "no warnings"}`;
  }
}
