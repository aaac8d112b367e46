import { describe, expect, it } from 'vitest';
import { startAedes } from '../helpers/brokers.js';
import { devicePair, pairViaCli } from '../bridge/helpers.js';
import { moved } from './helpers.js';

describe('handoff smoke', () => {
  const s = devicePair(startAedes);

  it('moves counter to the phone and back', async () => {
    await pairViaCli(s.pi, s.phone);
    await s.pi.cli(['install', 'apps/counter.mjs']);
    const ran = await s.pi.cli(['run', 'counter']);
    expect(ran.code, ran.stderr).toBe(0);
    for (let i = 0; i < 5; i++) await s.pi.cli(['call', 'counter', 'increment']);
    const m = await moved(s.pi, 'counter', s.phone.id);
    console.log(JSON.stringify(m));
    console.log(JSON.stringify(s.phone.logs.filter((l) => l.event === 'TIMING')));
    const c = await s.phone.json<{ count: number }>(['call', 'counter', 'increment']);
    expect(c.value.count).toBe(6);
    const back = await moved(s.phone, 'counter', s.pi.id);
    console.log(JSON.stringify(back));
    const c2 = await s.pi.json<{ count: number }>(['call', 'counter', 'increment']);
    expect(c2.value.count).toBe(7);
    const apps = await s.phone.json(['apps']);
    console.log(JSON.stringify(apps.value));
    console.log(JSON.stringify((await s.pi.json(['migrations'])).value));
  }, 120_000);
});
