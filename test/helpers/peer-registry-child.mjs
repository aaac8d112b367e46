// Child process of the peer-registry crash test: applies a list of add/remove operations to the
// registry in a loop until killed. After each call returns it writes `ACK <n>` synchronously to
// stdout, so every operation the parent saw acknowledged was written before the ACK left.
// Operation n (1-based) is ops[(n - 1) % ops.length]; the run starts at operation <start>.
// Usage: node peer-registry-child.mjs <registryFile> <selfFingerprint> <opsFile> <start>
import { readFileSync, writeSync } from 'node:fs';
import { PeerRegistry } from '../../dist/agent/bridge/peer-registry.js';

const [file, self, opsFile, start] = process.argv.slice(2);
const ops = JSON.parse(readFileSync(opsFile, 'utf8'));
const registry = PeerRegistry.open(file, self, { create: true });
writeSync(1, `READY ${registry.size}\n`);
for (let n = Number(start); ; n++) {
  const op = ops[(n - 1) % ops.length];
  if (op.kind === 'add') {
    registry.add({
      deviceId: op.id,
      deviceKey: Buffer.from(op.deviceKey, 'hex'),
      staticKey: Buffer.from(op.staticKey, 'hex'),
      profile: op.profile,
      label: op.label,
      pairedAt: op.pairedAt,
    });
  } else {
    registry.remove(op.id);
  }
  writeSync(1, `ACK ${n}\n`);
}
