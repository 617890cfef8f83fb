let counter = 0;

/** An id no other test, suite or concurrent run uses: users, clientMsgIds, Redis prefixes. */
export const uniqueId = (prefix: string) => `${prefix}-${process.pid}-${++counter}-${Math.random().toString(36).slice(2, 8)}`;
