/**
 * aedes-persistence's own conformance suite (node_modules/aedes-persistence/abstract.js,
 * written for node:test) against the embedded broker's SQLite store, each test on a new
 * file. Run as `node --import tsx --test <this file>` by test/transports/broker-persistence.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { SqlitePersistence } from '../../transports/broker-persistence.js';

const require = createRequire(import.meta.url);
const abstract = require('aedes-persistence/abstract.js') as (o: { test: typeof test; persistence: () => unknown; testAsync: boolean }) => void;

const dir = mkdtempSync(join(tmpdir(), 'ferry-broker-abstract-'));
process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
let n = 0;
// testAsync: the promise API, the one aedes 1.x calls (the callback API is aedes-persistence's wrapper).
abstract({ test, persistence: () => new SqlitePersistence(join(dir, `broker-${n++}.db`)), testAsync: true });
