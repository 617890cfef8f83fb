/**
 * The `next` / `before` of a paged `conversation:list`: where the last conversation of a
 * page stands (its activity time in microseconds, exact, and its id), as an opaque string.
 * It is not sealed: it names a position in the caller's own list and nothing else, and a
 * made-up one only moves where that caller's page starts. A string that is not one the
 * server could have made is BAD_REQUEST.
 */
import { AppError } from "../protocol";
import { UUID } from "../protocol/ids";
import type { ListPosition } from "./ports";

export function encodeListCursor(p: ListPosition): string {
  return Buffer.from(`${p.activeUs}/${p.id}`, "utf8").toString("base64url");
}

export function decodeListCursor(cursor: string): ListPosition {
  const [activeUs, id, ...rest] = Buffer.from(cursor, "base64url").toString("utf8").split("/");
  if (rest.length || !activeUs || !/^-?\d{1,19}$/.test(activeUs) || !id || !UUID.test(id)) {
    throw new AppError("BAD_REQUEST", "before: not a cursor this server gave (use `next` from the page before)");
  }
  return { activeUs, id };
}
