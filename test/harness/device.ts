/**
 * "A device" for tests and benches (DESIGN.md beside this file): an agent process on a
 * profile, with the profile's CPU share and memory cap enforced by a cgroup, its link to the
 * broker through the link emulator, and its own data directory and identity.
 *
 *   const d = await startDevice({ profile: 'rpi-zero-2w', id: 'zero', brokerPort, dataDir });
 *   await d.agent.control('status');
 *   await d.stop();
 */
import { nodeCommand } from '../../agent/runtime/node-command.js';
import { AGENT_NODE_FLAGS } from '../../agent/runtime/sandbox.js';
import { OptionReader } from '../../core/options.js';
import { FerryError } from '../../core/errors.js';
import { getProfile, validateProfile, type HwProfile } from '../../hw-profiles/index.js';
import { startLinkEmulator, type LinkEmulator } from '../../transports/index.js';
import { FERRY_MAIN, startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { Cgroup, DEFAULT_CGROUP_ROOT } from './cgroups.js';
import { calibratedShare, hostCpu, shareFor, type CpuShare } from './cpu-calibration.js';

/**
 * RAM below which the profile's RAM does not bound the agent: Node and the agent alone take
 * ~80 MiB resident and V8 wants room above it; a J2ME phone (512 KiB) or a Palm (64 MiB) cannot
 * hold them. There the profile's heap budget is the emulation (DESIGN.md, "Memory cap").
 */
export const MIN_CAPPED_RAM_BYTES = 256 * 1024 * 1024;

export interface SlotOptions {
  /** A built-in profile's name, or a profile (validated). Required. */
  profile: string | HwProfile;
  /** Enforce the profile's CPU share. Default true. */
  cpu?: boolean;
  /** Cap the agent's memory at the profile's RAM where that is honest (ramBytes ≥ 256 MiB). Default true. */
  memory?: boolean;
  /** Check the quota with the workload (1–8 s per profile, once per boot: the result is kept). Default true. */
  calibrate?: boolean;
  /** Calibrate again even when a result for this boot is kept (benches). Default false. */
  freshCalibration?: boolean;
  /** cgroup mount point. Default /sys/fs/cgroup. */
  cgroupRoot?: string;
}

export interface DeviceOptions extends SlotOptions {
  /** Device id (`--device-id`). Required. */
  id: string;
  /** Its data directory (made by the caller; the device keeps its files there). Required. */
  dataDir: string;
  /** The broker's port on 127.0.0.1. Required. */
  brokerPort: number;
  /** Reach the broker through the link emulator with the profile's link. Default true. */
  link?: boolean;
  /** More `ferry start` arguments. Default none. */
  args?: string[];
  /** The command that runs Node for the agent (an ARM64 tree's `bin/node`). Default this Node (FERRY_NODE, else execPath). */
  node?: string;
  /** The `ferry` entry point it runs (an ARM64 tree's `dist/agent/cli/main.js`). Default this checkout's build. */
  main?: string;
}

/** The cgroup of one emulated device, before and while its agent runs. */
export class DeviceSlot {
  private constructor(
    readonly profile: HwProfile,
    readonly group: Cgroup | undefined,
    /** The CPU share in force, or undefined when not enforced. */
    readonly cpu: CpuShare | undefined,
    /** The memory cap in force, bytes, or null (not enforced, or not honest for the profile). */
    readonly memoryCapBytes: number | null,
  ) {}

  static async open(options: SlotOptions): Promise<DeviceSlot> {
    const r = new OptionReader(options as unknown as Record<string, unknown>, 'options');
    r.rejectUnknown(['profile', 'cpu', 'memory', 'calibrate', 'freshCalibration', 'cgroupRoot', 'id', 'dataDir', 'brokerPort', 'link', 'args', 'node', 'main']);
    const given = r.raw('profile');
    const profile = typeof given === 'object' && given !== null ? validateProfile(given, 'options.profile') : getProfile(r.string('profile'));
    const wantCpu = r.boolean('cpu', true);
    const wantMemory = r.boolean('memory', true);
    const check = r.boolean('calibrate', true);
    const root = r.string('cgroupRoot', DEFAULT_CGROUP_ROOT);
    if (wantCpu && !profile.cpu) throw new FerryError('HARNESS_NO_FIGURE', `profile "${profile.name}" has no cpu.singleCoreMips: the harness cannot give it a CPU share`, { field: 'profile.cpu' });
    const cap = wantMemory && profile.ramBytes !== undefined && profile.ramBytes >= MIN_CAPPED_RAM_BYTES ? profile.ramBytes : null;
    if (!wantCpu && cap === null) return new DeviceSlot(profile, undefined, undefined, null);
    const group = Cgroup.create(profile.name, { cpu: wantCpu, memory: cap !== null }, root);
    try {
      let cpu: CpuShare | undefined;
      if (wantCpu) {
        const host = await hostCpu();
        const wanted = shareFor(profile.cpu!.singleCoreMips, host);
        if (check) cpu = await calibratedShare(profile.name, group, wanted, host, { fresh: r.boolean('freshCalibration', false) });
        else {
          group.setCpu(wanted.quotaUs, wanted.periodUs);
          cpu = wanted;
        }
      }
      if (cap !== null) group.setMemory(cap);
      return new DeviceSlot(profile, group, cpu, cap);
    } catch (e) {
      await group.remove();
      throw e;
    }
  }

  /** `argv` run inside the slot's group (unchanged when nothing is enforced). */
  wrap(argv: readonly string[]): string[] {
    return this.group ? this.group.wrap(argv) : [...argv];
  }

  async close(): Promise<void> {
    await this.group?.remove();
  }
}

export interface EmulatedDevice {
  readonly id: string;
  readonly profile: HwProfile;
  readonly dataDir: string;
  readonly agent: AgentProcess;
  readonly slot: DeviceSlot;
  /** The device's link emulator (undefined with `link: false`). */
  readonly link: LinkEmulator | undefined;
  /** The broker URL the agent was given (its link emulator's, or the broker's). */
  readonly brokerUrl: string;
  /** Stops the agent (SIGTERM, or `signal`), its link and its group. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts an agent as the profile's device; resolves once its control socket answers. */
export async function startDevice(options: DeviceOptions): Promise<EmulatedDevice> {
  const r = new OptionReader(options as unknown as Record<string, unknown>, 'options');
  const id = r.string('id', undefined, /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/);
  const dataDir = r.string('dataDir');
  const brokerPort = r.number('brokerPort', { min: 1, max: 65535 });
  const useLink = r.boolean('link', true);
  const node = r.string('node', nodeCommand());
  const main = r.string('main', FERRY_MAIN);
  const args = r.raw('args') ?? [];
  if (!Array.isArray(args) || args.some((a) => typeof a !== 'string')) r.fail('args', 'an array of strings', args);
  const slot = await DeviceSlot.open(options);
  let link: LinkEmulator | undefined;
  try {
    link = useLink ? await startLinkEmulator({ targetPort: brokerPort, link: slot.profile.link }) : undefined;
    const brokerUrl = link?.url ?? `mqtt://127.0.0.1:${brokerPort}`;
    const argv = [node, ...AGENT_NODE_FLAGS, main, 'start', '--data', dataDir, '--device-id', id, '--profile', slot.profile.name, '--broker', brokerUrl, ...(args as string[])];
    const agent = startAgentProcess(dataDir, [], { argv: slot.wrap(argv) });
    const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
      await agent.kill(signal);
      await link?.close();
      await slot.close();
    };
    try {
      await agent.ready;
    } catch (e) {
      await stop('SIGKILL');
      throw e;
    }
    return { id, profile: slot.profile, dataDir, agent, slot, link, brokerUrl, stop };
  } catch (e) {
    await link?.close();
    await slot.close();
    throw e;
  }
}
