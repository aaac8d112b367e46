// After `tsc`: the `ferry` command's file is run through its `#!` line (which gives Node the
// agent's flags, so `ferry start` needs no second process), so it must be executable.
import { chmodSync } from 'node:fs';

chmodSync(new URL('../dist/agent/cli/main.js', import.meta.url), 0o755);
