/** The fixed set of error codes a client can receive (docs/protocol.md, "Errors"). */
export const ERROR_CODES = [
  "BAD_REQUEST",
  "UNAUTHORIZED",
  "FORBIDDEN",
  "NOT_FOUND",
  "TOO_LARGE",
  "RATE_LIMITED",
  "UNAVAILABLE",
  "INTERNAL",
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/** An error whose code and message are safe to show a client as they are. */
export class AppError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "AppError";
  }
}

/** The database could not store or read: the client may retry; nothing was acknowledged. */
export class StorageUnavailableError extends AppError {
  constructor(override readonly cause: unknown) {
    super("UNAVAILABLE", "storage is unavailable, retry later");
    this.name = "StorageUnavailableError";
  }
}
