/**
 * The harness parts of a test's devices, made and closed together: a slot (cgroup) per device,
 * and a link emulator per device that reaches the broker through its profile's link.
 */
import { getProfile } from '../../hw-profiles/index.js';
import { startLinkEmulator, type LinkEmulator } from '../../transports/index.js';
import { DeviceSlot } from './device.js';

export class HarnessRig {
  readonly slots: DeviceSlot[] = [];
  readonly links: LinkEmulator[] = [];

  /** A slot with the profile's CPU share and memory cap. */
  async slot(profile: string): Promise<DeviceSlot> {
    const s = await DeviceSlot.open({ profile });
    this.slots.push(s);
    return s;
  }

  /** The broker URL a device of `profile` uses: a link emulator in front of the broker with the profile's link. */
  async link(profile: string, brokerPort: number): Promise<string> {
    const l = await startLinkEmulator({ targetPort: brokerPort, link: getProfile(profile).link });
    this.links.push(l);
    return l.url;
  }

  async close(): Promise<void> {
    for (const l of this.links.splice(0)) await l.close();
    for (const s of this.slots.splice(0)) await s.close();
  }
}
