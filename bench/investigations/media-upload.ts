/**
 * Memory of one node under 20 concurrent 64 MiB uploads (issue 20's bound: RSS growth
 * ≤ 100 MB), then 20 concurrent downloads of those files. The server is a child process (the compiled one, disk store); this process
 * asks for the upload URLs over a socket and streams the bodies from one reused 1 MiB
 * buffer, so its own memory does not count. The server's RSS is read from /proc every
 * 20 ms. Usage: npm run build && node --import tsx bench/investigations/media-upload.ts [--uploads 20] [--mib 64]
 */
import { readFileSync } from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import type { MediaUploadResult } from "../../src/protocol";
import { createTestDatabase } from "../../test/helpers/database";
import { spawnNode } from "../../test/helpers/processes";
import { clientSocket, connectSocket } from "../../test/helpers/socket";

const { values } = parseArgs({ options: { uploads: { type: "string", default: "20" }, mib: { type: "string", default: "64" } } });
const UPLOADS = Number(values.uploads);
const SIZE = Number(values.mib) * 1024 * 1024;
const CHUNK = Buffer.alloc(1024 * 1024, 0x5a);

const rssOf = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;
const mb = (bytes: number) => (bytes / 1e6).toFixed(1);

/** GETs a URL, reading the body as it comes and keeping none of it; resolves with the bytes read. */
function get(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    request(url, (res) => {
      let n = 0;
      res.on("data", (c: Buffer) => (n += c.length));
      res.on("end", () => resolve(n));
      res.on("error", reject);
    })
      .on("error", reject)
      .end();
  });
}

/** Streams SIZE bytes as a PUT, respecting backpressure; resolves with the status. */
function put(url: string, headers: Record<string, string>, size = SIZE): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: "PUT", headers: { ...headers, "content-length": size } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode!));
    });
    req.on("error", reject);
    let sent = 0;
    const pump = () => {
      while (sent < size) {
        const n = Math.min(CHUNK.length, size - sent);
        sent += n;
        if (!req.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) return void req.once("drain", pump);
      }
      req.end();
    };
    pump();
  });
}

async function main() {
  const db = await createTestDatabase();
  const dataDir = await mkdtemp(path.join(tmpdir(), "ticks-media-bench-"));
  const server = await spawnNode({ DATABASE_URL: db.url, DATA_DIR: dataDir, AUTH_MODE: "dev", RATE_LIMIT_EVENTS_PER_SEC: "0" });
  const socket = await connectSocket(clientSocket(server.url, { userId: "bench-uploader" }), { until: "sync:complete" });
  try {
    const ask = async (size: number) =>
      (await socket.timeout(10_000).emitWithAck("media:upload", { mime: "video/mp4", size })) as { ok: true } & MediaUploadResult;
    // Warm-up: one small upload (1 MiB, nothing like the load), so first-use costs are in the baseline.
    const warm = await ask(CHUNK.length);
    await put(server.url + warm.url, warm.headers, CHUNK.length);
    await new Promise((r) => setTimeout(r, 1000));
    const baseline = rssOf(server.pid);
    let peak = baseline;
    const sampler = setInterval(() => (peak = Math.max(peak, rssOf(server.pid))), 20);
    const targets = await Promise.all(Array.from({ length: UPLOADS }, () => ask(SIZE)));
    const started = Date.now();
    const statuses = await Promise.all(targets.map((t) => put(server.url + t.url, t.headers)));
    const seconds = (Date.now() - started) / 1000;
    clearInterval(sampler);
    peak = Math.max(peak, rssOf(server.pid));
    const sizes = await Promise.all(targets.map((t) => stat(path.join(dataDir, "media", t.mediaId.slice(-2), t.mediaId)).then((s) => s.size)));
    const whole = sizes.filter((s) => s === SIZE).length;
    // Downloads of the same 20 files, all at once.
    const urls = await Promise.all(
      targets.map(async (t) => ((await socket.timeout(10_000).emitWithAck("media:url", { mediaId: t.mediaId })) as { url: string }).url),
    );
    await new Promise((r) => setTimeout(r, 1000));
    const downBaseline = rssOf(server.pid);
    let downPeak = downBaseline;
    const downSampler = setInterval(() => (downPeak = Math.max(downPeak, rssOf(server.pid))), 20);
    const downStarted = Date.now();
    const read = await Promise.all(urls.map((u) => get(server.url + u)));
    const downSeconds = (Date.now() - downStarted) / 1000;
    clearInterval(downSampler);
    console.log(
      `FIGURES [media-upload] uploads=${UPLOADS} size=${values.mib}MiB ok=${statuses.filter((s) => s === 200).length} ` +
        `storedWhole=${whole} baselineRssMB=${mb(baseline)} peakRssMB=${mb(peak)} growthMB=${mb(peak - baseline)} ` +
        `seconds=${seconds.toFixed(1)} MBps=${mb((UPLOADS * SIZE) / seconds)}`,
    );
    console.log(
      `FIGURES [media-download] downloads=${UPLOADS} size=${values.mib}MiB whole=${read.filter((n) => n === SIZE).length} ` +
        `baselineRssMB=${mb(downBaseline)} peakRssMB=${mb(downPeak)} growthMB=${mb(downPeak - downBaseline)} ` +
        `seconds=${downSeconds.toFixed(1)} MBps=${mb((UPLOADS * SIZE) / downSeconds)}`,
    );
  } finally {
    socket.disconnect();
    await server.kill();
    await db.drop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
