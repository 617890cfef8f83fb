/** Assertions on protocol replies whose failure says what the server answered. */
import { AssertionError } from "chai";

type AnyReply = { ok: boolean };
type OkOf<R> = R & { ok: true };

const describe = (reply: unknown) => JSON.stringify(reply)?.slice(0, 300) ?? String(reply);

/** Fails unless `reply` is ok, quoting the error reply (code and message) it got instead. */
export function expectOk<R extends AnyReply>(reply: R, what = "reply"): asserts reply is OkOf<R> {
  if (reply?.ok !== true) throw new AssertionError(`${what}: expected ok, got ${describe(reply)}`);
}

/** `reply` if ok (narrowed), else fails as expectOk does: for use inside an expression. */
export function okReply<R extends AnyReply>(reply: R, what?: string): OkOf<R> {
  expectOk(reply, what);
  return reply;
}

/** Fails unless `reply` is an error with `code`, quoting what came instead. */
export function expectError(reply: unknown, code: string, what = "reply"): void {
  const r = reply as { ok?: unknown; error?: { code?: unknown; message?: unknown } } | null;
  if (r?.ok === false && r.error?.code === code && typeof r.error.message === "string") return;
  throw new AssertionError(`${what}: expected error ${code}, got ${describe(reply)}`);
}
