/**
 * Knex CLI configuration, so `npx knex migrate:latest` works as operators expect (the CLI
 * loads this file through ts-node). Reads DATABASE_URL like the server; without it, the
 * embedded PGlite database under DATA_DIR (stop the server first: PGlite is one process).
 */
import { loadDatabaseConfig } from "./src/config";
import { knexConfig } from "./src/storage/database";

module.exports = knexConfig(loadDatabaseConfig());
