import { AppError, StorageUnavailableError } from "../protocol";

/** PostgreSQL's unique_violation (SQLSTATE 23505): a concurrent retry stored the same (from, clientMsgId) first. */
export const UNIQUE_VIOLATION = "23505";

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
