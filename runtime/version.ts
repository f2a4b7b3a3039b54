/** The package root and version, found from this module's location (works from runtime/ and dist/runtime/). */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function readManifest(path: string): { name?: unknown; version?: unknown } | undefined {
  try {
    const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
    return typeof parsed === 'object' && parsed !== null ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/** The directory holding outpost's own package.json (not a dependency's), or undefined. */
export function packageRoot(from: string = dirname(fileURLToPath(import.meta.url))): string | undefined {
  for (let dir = from; ; dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && readManifest(manifest)?.name === 'outpost') return dir;
    if (dirname(dir) === dir) return undefined;
  }
}

function readVersion(): string {
  const root = packageRoot();
  const version = root === undefined ? undefined : readManifest(join(root, 'package.json'))?.version;
  return typeof version === 'string' ? version : '0.0.0-unknown';
}

/** outpost's own version string. */
export const outpostVersion: string = readVersion();
