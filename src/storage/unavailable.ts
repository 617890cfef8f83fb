import { AppError, StorageUnavailableError } from "../protocol";

/** PostgreSQL's unique_violation (SQLSTATE 23505): a concurrent retry stored the same (from, clientMsgId) first. */
export const UNIQUE_VIOLATION = "23505";

/** Deadlock and serialization failures: the statement can simply run again. */
const RETRYABLE_CODES = new Set(["40P01", "40001"]);
export const isRetryablePgError = (err: unknown): boolean => RETRYABLE_CODES.has(pgCode(err) ?? "");

/**
 * SQLSTATE classes of a statement that failed on the rows it was given (bad data, a
 * constraint, a trigger's refusal), as opposed to the database being unreachable, slow or
 * short of something: only these are worth running again with fewer rows, to find the ones
 * that fail. 09 triggered action, 22 data, 23 integrity, 27 triggered data change, 44 check
 * option, P0 PL/pgSQL raise.
 */
const ROW_ERROR_CLASSES = new Set(["09", "22", "23", "27", "44", "P0"]);
export const isRowDataPgError = (err: unknown): boolean => {
  const code = pgCode(err);
  return code !== undefined && code.length === 5 && ROW_ERROR_CLASSES.has(code.slice(0, 2));
};

const pgCode = (err: unknown): string | undefined => {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
};

/** A refusal (AppError) passes through as it is; any other failure is the database's: UNAVAILABLE. */
export const asStorageError = (err: unknown): unknown => (err instanceof AppError ? err : new StorageUnavailableError(err));

/** Runs a query, turning database failures into StorageUnavailableError. */
export async function unavailableOnDbError<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw asStorageError(err);
  }
}
