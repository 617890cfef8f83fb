/**
 * A child of the idle-sockets scenario: opens IDLE_COUNT authenticated sockets to IDLE_URL
 * (users idle-<tag>-<offset+i>), IDLE_BATCH handshakes at a time, each counted once its
 * `sync:complete` arrived. Reports over IPC, holds the sockets until told to close.
 * Several of these run at once, so no single process hits its open-file limit.
 * With IDLE_TOKEN_SECRET each socket authenticates with an HS256 token instead of a dev-mode
 * userId; IDLE_TOKEN_TTL_S gives the tokens an `exp` that far ahead (unset: no `exp`).
 */
import { SignJWT } from "jose";
import { openSocket } from "./lib/load";

async function authFor(userId: string): Promise<Record<string, unknown>> {
  const secret = process.env.IDLE_TOKEN_SECRET;
  if (!secret) return { userId, deviceId: "bench" };
  const ttl = process.env.IDLE_TOKEN_TTL_S;
  const jwt = new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject(userId);
  if (ttl) jwt.setExpirationTime(`${ttl}s`);
  return { token: await jwt.sign(new TextEncoder().encode(secret)), deviceId: "bench" };
}

type Opened = Awaited<ReturnType<typeof openSocket>>;

async function main(): Promise<void> {
  const url = process.env.IDLE_URL!;
  const count = Number(process.env.IDLE_COUNT);
  const offset = Number(process.env.IDLE_OFFSET ?? 0);
  const batch = Number(process.env.IDLE_BATCH ?? 100);
  const tag = process.env.IDLE_TAG ?? "x";
  const sockets: Opened[] = [];
  let failed = 0;
  let firstError: string | null = null;
  const t0 = performance.now();
  for (let i = 0; i < count; i += batch) {
    const results = await Promise.allSettled(
      Array.from({ length: Math.min(batch, count - i) }, (_, j) =>
        authFor(`idle-${tag}-${offset + i + j}`).then((auth) => openSocket(url, auth, 60_000)),
      ),
    );
    for (const r of results) {
      if (r.status === "fulfilled") sockets.push(r.value);
      else {
        failed++;
        firstError ??= String((r.reason as Error)?.message ?? r.reason);
      }
    }
    process.send?.({ bench: "idle-progress", opened: sockets.length, failed });
  }
  let dropped = 0;
  for (const s of sockets) s.on("disconnect", () => dropped++);
  process.send?.({ bench: "idle-ready", opened: sockets.length, failed, firstError, seconds: (performance.now() - t0) / 1000 });
  process.on("message", (m: { bench?: string }) => {
    if (m?.bench !== "close") return;
    for (const s of sockets) s.disconnect();
    process.send?.({ bench: "idle-closed", dropped }, () => process.exit(0));
  });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
