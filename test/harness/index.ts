/** The device harness for tests and benches (DESIGN.md beside this file). */
export { Cgroup, findCgroups, DEFAULT_CGROUP_ROOT, type CgroupLayout } from './cgroups.js';
export { calibrate, calibratedShare, hostCpu, parseSevenZipRating, periodFor, runWorkload, shareFor, type CpuShare, type HostCpu } from './cpu-calibration.js';
export { DeviceSlot, MIN_CAPPED_RAM_BYTES, startDevice, type DeviceOptions, type EmulatedDevice, type SlotOptions } from './device.js';
export { HarnessRig } from './rig.js';
