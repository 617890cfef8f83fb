import { randomBytes } from "node:crypto";

/**
 * Random bytes for the hot path, drawn from a 4 KB block of the CSPRNG's output. Every
 * message takes 16 for its id (UUIDv7) and every live `message:status` 12 for its cursor's
 * nonce; one synchronous call into OpenSSL for each cost ~3 µs here (crypto.randomBytes,
 * the uuid package's rng: in a CPU profile of the server in the main bench, ~5 % of its busy time), so
 * the pool makes that one call per 4 KB, as Node's own crypto.randomUUID does. A block is
 * never written again once handed out (a new one is allocated), so bytes given out are
 * never given out twice and a caller may keep them.
 */
const BLOCK = 4096;
let block = Buffer.alloc(0);
let offset = 0;

export function pooledRandomBytes(n: number): Buffer {
  if (n > BLOCK) return randomBytes(n);
  if (offset + n > block.length) {
    block = randomBytes(BLOCK);
    offset = 0;
  }
  const bytes = block.subarray(offset, offset + n);
  offset += n;
  return bytes;
}
