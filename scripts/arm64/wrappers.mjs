// The tree's two commands. `bin/node` runs the arm64 Node through qemu-user (without binfmt_misc
// an arm64 binary cannot be executed directly, only handed to the emulator), sets FERRY_NODE to
// itself so Ferry starts Node again through it (agent/runtime/node-command.ts) instead of
// process.execPath (the arm64 binary, which the kernel refuses), and puts itself first on PATH so
// `#!/usr/bin/env node` scripts run on it too. `bin/ferry` is the ferry command on that Node.
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const q = (s) => `'${s.replace(/'/g, `'\\''`)}'`;

export function writeWrappers(dir, { qemu, sysroot, node, tree }) {
  const bin = join(dir, 'bin');
  mkdirSync(bin, { recursive: true });
  const self = join(bin, 'node');
  writeFileSync(
    self,
    [
      '#!/bin/sh',
      '# The ARM64 Node under qemu-user (written by scripts/arm64-tree.mjs).',
      `FERRY_NODE=${q(self)}; export FERRY_NODE`,
      `case ":$PATH:" in *:${q(bin)}:*) ;; *) PATH=${q(bin)}:"$PATH"; export PATH ;; esac`,
      // The Raspberry Pi 4's core (ARMv8.0-A, the default profile's board): faithful, and ~10 % faster
      // to emulate than qemu's default `max` CPU (no pointer authentication to emulate).
      `exec ${q(qemu)} -L ${q(sysroot)} -cpu cortex-a72 ${q(node)} "$@"`,
      '',
    ].join('\n'),
  );
  chmodSync(self, 0o755);
  const ferry = join(bin, 'ferry');
  // The agent's Node flags as main.js's #! line gives them: `ferry start` then runs as one process.
  writeFileSync(
    ferry,
    ['#!/bin/sh', '# The ferry command on the ARM64 Node (written by scripts/arm64-tree.mjs).', `exec ${q(self)} --experimental-vm-modules --disable-warning=ExperimentalWarning ${q(join(tree, 'dist', 'agent', 'cli', 'main.js'))} "$@"`, ''].join('\n'),
  );
  chmodSync(ferry, 0o755);
  return { node: self, ferry };
}
