/**
 * Child of the persistent-space kill test (test/services/space-persist.test.ts),
 * run with `node --import tsx`. Args: store dir, grantor state file, broker url.
 * Opens the device's store, hosts a persistent space, writes entries 0..5 and
 * takes entries 1 and 3, each acknowledged only after its commit returned; then
 * prints one JSON line `{ ready, written, taken }` and waits to be SIGKILLed
 * (the store is never closed, nothing is flushed on exit).
 */
import { LeaseGrantor, SpaceHost } from '../../agent/services/index.js';
import { openStore } from '../../store/index.js';
import { connectBus } from '../../transports/index.js';

const [dir, stateFile, url] = process.argv.slice(2);
if (!dir || !stateFile || !url) throw new Error('usage: space-crash-child <storeDir> <grantorStateFile> <brokerUrl>');
const store = openStore({ dir });
const bus = await connectBus({ url, deviceId: 'crashhost' });
const grantor = await LeaseGrantor.start(bus, { stateFile });
const space = await SpaceHost.start(bus, grantor, { name: 'crash', kind: 'persistent', store });
const written: number[] = [];
for (let i = 0; i < 6; i++) {
  space.write('writer1', { n: i, blob: new Uint8Array(300 + i * 200).fill(i) }, 60_000);
  written.push(i);
}
const taken = [1, 3].map((n) => (space.take({ n }).entry as { n: number }).n);
process.stdout.write(`${JSON.stringify({ ready: true, written, taken })}\n`);
setInterval(() => undefined, 1000);
