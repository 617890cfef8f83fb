import { expect } from "chai";
import { v4 as uuidv4 } from "uuid";
import { tryConnect, type HandshakeOutcome } from "./handshake";

/** The handshake was refused exactly as every token refusal is: nothing about why. */
export function expectRefused(outcome: HandshakeOutcome, what: string): void {
  if (outcome.connected) {
    outcome.socket.disconnect();
    expect.fail(`${what}: the handshake was accepted`);
  }
  expect(outcome.error.message, what).to.equal("unauthorized");
  expect(outcome.error.data, what).to.deep.equal({ code: "UNAUTHORIZED" });
}

export async function refuses(url: string, token: unknown, what: string): Promise<void> {
  expectRefused(await tryConnect(url, { token }), what);
}

/** The handshake succeeds and the server acts as `sub` (a message is stored from it). */
export async function accepts(url: string, token: string, sub: string, what: string): Promise<void> {
  const outcome = await tryConnect(url, { token });
  if (!outcome.connected) expect.fail(`${what}: refused with ${outcome.error.message}`);
  try {
    const reply = (await outcome.socket
      .timeout(10_000)
      .emitWithAck("message:send", { clientMsgId: uuidv4(), to: "someone-else", content: what })) as {
      ok: boolean;
      message?: { from: string };
    };
    expect(reply.ok, what).to.equal(true);
    expect(reply.message?.from, what).to.equal(sub);
  } finally {
    outcome.socket.disconnect();
  }
}

/** Tries the handshake until it is accepted (a recovering JWKS endpoint), or fails after `timeoutMs`. */
export async function acceptedEventually(url: string, token: string, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const outcome = await tryConnect(url, { token });
    if (outcome.connected) {
      outcome.socket.disconnect();
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  expect.fail(`${what}: still refused after ${timeoutMs} ms`);
}
