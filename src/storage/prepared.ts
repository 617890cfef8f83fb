import type { Knex } from "knex";
import { rowsOf } from "./rows";

/**
 * A statement the hot path runs many times a second. On PostgreSQL it goes through the
 * `pg` driver as a *named* prepared statement: each pooled connection parses it once, and
 * after a few executions PostgreSQL reuses one generic plan instead of planning every call
 * (Knex's own `raw` never names its statements, so it pays parse and plan every time). On
 * PGlite (one in-process connection) it simply runs through Knex.
 *
 * `text` uses PostgreSQL's `$1…$n` placeholders.
 */
export type Statement = { readonly name: string; readonly text: string };

export const statement = (name: string, text: string): Statement => ({ name: `ticks_${name}`, text });

type PgConnection = { query(q: { name: string; text: string; values: unknown[] }): Promise<{ rows: unknown[] }> };
type PooledClient = {
  acquireConnection(): Promise<PgConnection>;
  releaseConnection(c: PgConnection): Promise<void>;
  config: { client?: unknown };
};

const usesPg = (db: Knex): boolean => (db.client as unknown as PooledClient).config.client === "pg";

/** `$n` placeholders as Knex's `?` bindings, in order of appearance (a `$n` may repeat). */
function forKnex(text: string, values: unknown[]): [string, Knex.RawBinding[]] {
  const bindings: Knex.RawBinding[] = [];
  const sql = text.replace(/\$(\d+)/g, (_m, n: string) => {
    bindings.push(values[Number(n) - 1] as Knex.RawBinding);
    return "?";
  });
  return [sql, bindings];
}

export async function runPrepared<T>(db: Knex, stmt: Statement, values: unknown[]): Promise<T[]> {
  if (!usesPg(db)) {
    const [sql, bindings] = forKnex(stmt.text, values);
    return rowsOf<T>(await db.raw(sql, bindings));
  }
  // Knex's pool hands out the pg client itself; a broken one is discarded by the pool's
  // validation when it is next acquired.
  const client = db.client as unknown as PooledClient;
  const connection = await client.acquireConnection();
  try {
    const result = await connection.query({ name: stmt.name, text: stmt.text, values });
    return result.rows as T[];
  } finally {
    await client.releaseConnection(connection);
  }
}
