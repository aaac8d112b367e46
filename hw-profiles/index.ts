import { readFileSync } from 'node:fs';
import { FerryError } from '../core/errors.js';
import { BUILTIN_PROFILES } from './builtin.js';
import { validateProfile, type HwProfile } from './profile.js';

export * from './profile.js';

const byName = new Map(BUILTIN_PROFILES.map((p) => [p.name, validateProfile(p, `profile "${p.name}"`)]));

/** Names of the built-in profiles. */
export function profileNames(): string[] {
  return [...byName.keys()];
}

/** A built-in profile by name; `PROFILE_UNKNOWN` lists the names there are. */
export function getProfile(name: string): HwProfile {
  const p = byName.get(name);
  if (!p) {
    throw new FerryError('PROFILE_UNKNOWN', `profile ${JSON.stringify(name)} is not built in (known: ${profileNames().join(', ')})`, { field: 'profile' });
  }
  return p;
}

/** Loads and validates a custom profile from a JSON file. */
export function loadProfileFile(path: string): HwProfile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new FerryError('PROFILE_INVALID', `profile file ${path} cannot be read: ${(e as Error).message}`, { field: 'path' }, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new FerryError('PROFILE_INVALID', `profile file ${path} is not valid JSON: ${(e as Error).message}`, { field: 'path' }, { cause: e });
  }
  return validateProfile(json, `profile file ${path}`);
}

/** A built-in name, or a path ending in `.json`. */
export function resolveProfile(nameOrPath: string): HwProfile {
  return nameOrPath.endsWith('.json') ? loadProfileFile(nameOrPath) : getProfile(nameOrPath);
}
