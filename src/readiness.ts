/**
 * A dependency `/readyz` asks about (the database, Redis). Its own module: the parts that
 * provide checks (storage, cluster) need not import the HTTP layer that runs them.
 */
export type ReadinessCheck = { name: string; check: () => Promise<void> };
