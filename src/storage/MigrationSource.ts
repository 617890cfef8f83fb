import { readdirSync } from "node:fs";
import path from "node:path";
import type { Knex } from "knex";

/** migrations/ sits at the same depth from src/storage and from dist/src/storage. */
const MIGRATIONS_DIR = path.resolve(__dirname, "../../migrations");

const MIGRATION_FILE = /^(\d+_[\w-]+)\.(ts|js)$/;

/**
 * Lists migrations by name without extension, so the Knex CLI (loading the .ts files) and
 * the compiled server (loading the .js files) record the same names in knex_migrations.
 */
export class MigrationSource implements Knex.MigrationSource<string> {
  constructor(private readonly dir = MIGRATIONS_DIR) {}

  async getMigrations(): Promise<string[]> {
    const names = new Set<string>();
    for (const file of readdirSync(this.dir)) {
      const match = MIGRATION_FILE.exec(file);
      if (match && !file.endsWith(".d.ts")) names.add(match[1]!);
    }
    return [...names].sort();
  }

  getMigrationName(name: string): string {
    return name;
  }

  async getMigration(name: string): Promise<Knex.Migration> {
    // require() resolves .js when compiled, .ts under ts-node/tsx.
    return require(path.join(this.dir, name)) as Knex.Migration;
  }
}
