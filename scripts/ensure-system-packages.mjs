#!/usr/bin/env node
// Makes sure the Debian packages the test suite needs are installed (Mosquitto,
// the second real broker the transport suite runs against; systemd's tools for the unit file;
// Chromium for the dashboard's browser tests; 7-Zip for the device harness). Installs them with
// apt-get when running as root; otherwise says what to install and fails, so a
// missing broker is never a silently skipped test.
import { execFileSync, spawnSync } from 'node:child_process';

const needed = [
  { bin: 'mosquitto', pkg: 'mosquitto', paths: ['/usr/sbin/mosquitto', '/usr/bin/mosquitto'] },
  { bin: 'mosquitto_pub', pkg: 'mosquitto-clients', paths: ['/usr/bin/mosquitto_pub'] },
  // `systemd-analyze verify` and `systemctl --root` check the unit `ferry service install` writes
  // (test/runtime/service.test.ts); neither needs systemd running as PID 1.
  { bin: 'systemd-analyze', pkg: 'systemd', paths: ['/usr/bin/systemd-analyze'] },
  // The dashboard's tests drive a real browser (test/dashboard/browser.test.ts, through playwright-core).
  { bin: 'chromium', pkg: 'chromium', paths: ['/usr/bin/chromium'] },
  // The device harness rates the host's CPU with 7-Zip's benchmark, as the profiles' CPU figures
  // were rated (test/harness/DESIGN.md).
  { bin: '7z', pkg: 'p7zip-full', paths: ['/usr/bin/7z'] },
];

const has = (n) => n.paths.some((p) => spawnSync('test', ['-x', p]).status === 0) || spawnSync('sh', ['-c', `command -v ${n.bin}`]).status === 0;
const missing = needed.filter((n) => !has(n));
if (missing.length === 0) process.exit(0);

const pkgs = [...new Set(missing.map((n) => n.pkg))];
if (process.getuid?.() !== 0) {
  console.error(`[ferry] the tests need Debian packages: ${pkgs.join(' ')}. Install them with: sudo apt-get install -y ${pkgs.join(' ')}`);
  process.exit(1);
}
console.error(`[ferry] installing Debian packages for the tests: ${pkgs.join(' ')}`);
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
execFileSync('apt-get', ['update', '-q'], { stdio: 'inherit', env });
execFileSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...pkgs], { stdio: 'inherit', env });
