import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findConfig, readConfig } from '../../agent/cli/config.js';
import { caught } from '../helpers/ferry-error.js';

/** Where ferry.config.json is looked for: --config, $FERRY_CONFIG, the working directory, /etc/ferry. */
describe('the config file search', () => {
  const root = mkdtempSync(join(tmpdir(), 'ferry-config-'));
  const system = join(root, 'etc-ferry');
  const work = join(root, 'work');
  const cwd = process.cwd();
  beforeAll(() => {
    for (const [d, profile] of [[system, 'system'], [work, 'work']] as const) {
      mkdirSync(d);
      writeFileSync(join(d, 'ferry.config.json'), JSON.stringify({ profile }));
    }
    writeFileSync(join(root, 'named.json'), JSON.stringify({ profile: 'named' }));
    writeFileSync(join(root, 'env.json'), JSON.stringify({ profile: 'env' }));
    process.chdir(work);
  });
  afterAll(() => {
    process.chdir(cwd);
    rmSync(root, { recursive: true, force: true });
  });

  it('takes --config first, then $FERRY_CONFIG, then ./ferry.config.json, then /etc/ferry', () => {
    expect(readConfig(join(root, 'named.json'), { env: join(root, 'env.json'), systemDir: system }).profile).toBe('named');
    expect(readConfig(undefined, { env: join(root, 'env.json'), systemDir: system }).profile).toBe('env');
    expect(readConfig(undefined, { env: '', systemDir: system }).profile).toBe('work');
    rmSync(join(work, 'ferry.config.json'));
    expect(readConfig(undefined, { systemDir: system }).profile).toBe('system');
    expect(findConfig(undefined, { systemDir: join(root, 'none') })).toBeUndefined();
    expect(readConfig(undefined, { systemDir: join(root, 'none') })).toEqual({});
  });

  it('a file named by --config or $FERRY_CONFIG that does not exist is CONFIG_INVALID naming where it was named', () => {
    const c = caught(() => findConfig(join(root, 'typo.json'), { systemDir: system }));
    expect({ code: c.code, field: c.details.field }).toEqual({ code: 'CONFIG_INVALID', field: '--config' });
    const e = caught(() => findConfig(undefined, { env: join(root, 'typo.json'), systemDir: system }));
    expect({ code: e.code, field: e.details.field }).toEqual({ code: 'CONFIG_INVALID', field: 'FERRY_CONFIG' });
  });
});
