import { expect } from "chai";
import { messageIdAt } from "../src/messaging/messageIds";
import { pooledRandomBytes } from "../src/messaging/randomPool";
import { msOfUuid } from "../src/storage/partitions";

/** Message ids (and cursor nonces) draw their randomness from a shared pool: never the same bytes twice. */
describe("pooled random bytes", () => {
  it("hands out bytes once: across many 4 KB blocks no two draws are equal, and a kept draw is never overwritten", () => {
    const first = pooledRandomBytes(16);
    const kept = Buffer.from(first);
    const seen = new Set<string>([first.toString("hex")]);
    for (let i = 0; i < 20_000; i++) seen.add(pooledRandomBytes(i % 2 ? 12 : 16).toString("hex"));
    expect(seen.size).to.equal(20_001);
    expect(first.equals(kept)).to.equal(true);
  });

  it("makes distinct UUIDv7 message ids stamped with the message's own time", () => {
    const at = new Date("2026-12-02T23:59:59.999Z");
    const ids = Array.from({ length: 5_000 }, () => messageIdAt(at));
    expect(new Set(ids).size).to.equal(ids.length);
    for (const id of ids.slice(0, 50)) {
      expect(id).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(msOfUuid(id)).to.equal(at.getTime());
    }
  });
});
