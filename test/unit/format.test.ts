import { describe, expect, it } from 'vitest';
import { formatHuman } from '../../agent/cli/format.js';

const rows = [
  { deviceId: 'phone-kitchen', fingerprint: '3fa2:91c0:77de:0b1a:5e42', profile: 'android-phone', label: 'A rather long label for a phone', pairedAt: '2026-12-07T00:03:50.382Z', reachable: true },
  { deviceId: 'pi-garage', fingerprint: '02d2:be2e:904c:fe52:07bf', profile: 'rpi-4b', label: 'Garage', pairedAt: '2026-12-06T21:00:00.000Z', reachable: false },
];

describe('human output fits the terminal', () => {
  it('without a width (a pipe) nothing is cut', () => {
    const out = formatHuman(rows);
    expect(out).toContain('A rather long label for a phone');
    expect(out).not.toContain('…');
  });

  it.each([120, 80, 60])('at %i columns every line fits; the widest columns give way, cut cells end in …', (width) => {
    const out = formatHuman(rows, width);
    for (const line of out.split('\n')) expect(line.length).toBeLessThanOrEqual(width);
    expect(out.split('\n')).toHaveLength(3);
    expect(out).toContain('…');
    // The widest column gave way first: at 120 only the long label and the times are cut.
    if (width === 120) for (const whole of ['phone-kitchen', 'android-phone', 'reachable', 'true']) expect(out).toContain(whole);
  });

  it('a table nested in a record (ferry peers) fits with its indent; record lines are cut too', () => {
    const out = formatHuman({ self: { deviceId: 'pi-a', note: 'x'.repeat(200) }, paired: rows }, 70);
    for (const line of out.split('\n')) expect(line.length).toBeLessThanOrEqual(70);
    expect(out).toMatch(/^self: .+…$/m);
  });

  it('columns are never cut below 8 characters, even if the line cannot fit', () => {
    const out = formatHuman(rows, 20);
    const header = out.split('\n')[0]!;
    expect(header).toMatch(/^deviceId {2}/);
  });
});
