import type { HwProfile } from './profile.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/**
 * Built-in device classes. Heap budgets are what Ferry gives one app, not the
 * device's whole RAM. Sources name where each hardware figure comes from;
 * where a figure is a Ferry choice rather than a datasheet value it says so.
 */
export const BUILTIN_PROFILES: readonly HwProfile[] = [
  {
    name: 'rpi-zero-2w',
    deviceClass: 'sbc',
    wordBits: 64,
    heapBudgetBytes: 8 * MiB,
    virtualHeapBytes: 256 * MiB,
    cacheLineBytes: 4 * KiB,
    flashWriteBlockBytes: 128 * KiB,
    flashEraseBlockBytes: 4 * MiB,
    flashEnduranceCycles: 3000,
    link: { bandwidthBps: 40_000_000, latencyMs: 3, jitterMs: 2, lossRate: 0.001 },
    services: ['gpio', 'sensor', 'storage'],
    sources: [
      'Raspberry Pi Zero 2 W product brief: 512 MB LPDDR2, quad Cortex-A53 (64-bit), 2.4 GHz 802.11 b/g/n',
      'SD Physical Layer Simplified Spec 9.0, 4.13: SDHC allocation unit (erase) 4 MiB typical',
      'write block 128 KiB: the seed WO 01/95094 figure, within an SD card page group; endurance: typical TLC microSD',
      'heap budget and virtual heap: Ferry choices (1/64 of RAM per app)',
    ],
  },
  {
    name: 'rpi-4b',
    deviceClass: 'sbc',
    wordBits: 64,
    heapBudgetBytes: 64 * MiB,
    virtualHeapBytes: 2 * GiB,
    cacheLineBytes: 4 * KiB,
    flashWriteBlockBytes: 128 * KiB,
    flashEraseBlockBytes: 4 * MiB,
    flashEnduranceCycles: 3000,
    link: { bandwidthBps: 940_000_000, latencyMs: 0.3, jitterMs: 0.1, lossRate: 0 },
    services: ['display', 'gpio', 'camera', 'sensor', 'storage'],
    sources: [
      'Raspberry Pi 4 Model B product brief: 1-8 GB LPDDR4, quad Cortex-A72 (64-bit), Gigabit Ethernet (~940 Mbit/s TCP)',
      'SD Physical Layer Simplified Spec 9.0: SDHC/SDXC allocation unit 4 MiB',
    ],
  },
  {
    name: 'rpi-5',
    deviceClass: 'sbc',
    wordBits: 64,
    heapBudgetBytes: 128 * MiB,
    virtualHeapBytes: 8 * GiB,
    cacheLineBytes: 4 * KiB,
    flashWriteBlockBytes: 128 * KiB,
    flashEraseBlockBytes: 4 * MiB,
    flashEnduranceCycles: 3000,
    link: { bandwidthBps: 940_000_000, latencyMs: 0.2, jitterMs: 0.1, lossRate: 0 },
    services: ['display', 'gpio', 'camera', 'sensor', 'storage'],
    sources: [
      'Raspberry Pi 5 product brief: 4-8 GB LPDDR4X, quad Cortex-A76 (64-bit), Gigabit Ethernet, SDR104 microSD',
    ],
  },
  {
    name: 'android-phone',
    deviceClass: 'phone',
    wordBits: 64,
    heapBudgetBytes: 16 * MiB,
    virtualHeapBytes: 256 * MiB,
    cacheLineBytes: 4 * KiB,
    flashWriteBlockBytes: 128 * KiB,
    flashEraseBlockBytes: 4 * MiB,
    flashEnduranceCycles: 3000,
    link: { bandwidthBps: 20_000_000, latencyMs: 40, jitterMs: 10, lossRate: 0.005 },
    services: ['display', 'camera', 'gps', 'speaker', 'sensor'],
    sources: [
      'heap budget: Android ActivityManager.getMemoryClass() is 16 MiB on baseline devices (CDD, 3.7)',
      'link: typical LTE user throughput and RTT (3GPP TR 36.913 targets, field reports)',
    ],
  },
  {
    name: 'j2me-phone',
    deviceClass: 'kvm-phone',
    wordBits: 32,
    heapBudgetBytes: 128 * KiB,
    virtualHeapBytes: 2 * MiB,
    cacheLineBytes: 1 * KiB,
    flashWriteBlockBytes: 16 * KiB,
    flashEraseBlockBytes: 128 * KiB,
    flashEnduranceCycles: 100_000,
    link: { bandwidthBps: 40_000, latencyMs: 600, jitterMs: 200, lossRate: 0.01 },
    services: ['display', 'speaker'],
    sources: [
      'KVM / CLDC 1.0 spec: target devices with 160-512 KB total memory; 128 KiB heap per the design brief',
      'SLC NAND (Samsung K9F1G08 datasheet): 2 KiB page, 128 KiB erase block, 100,000 P/E cycles; write block = 8 pages',
      'GPRS class 10: ~40 kbit/s, RTT ~600 ms (3GPP TS 45.002 multislot classes, field figures)',
    ],
  },
  {
    name: 'palm-pda',
    deviceClass: 'pda',
    wordBits: 32,
    heapBudgetBytes: 256 * KiB,
    virtualHeapBytes: 4 * MiB,
    cacheLineBytes: 2 * KiB,
    flashWriteBlockBytes: 64 * KiB,
    flashEraseBlockBytes: 128 * KiB,
    flashEnduranceCycles: 100_000,
    link: { bandwidthBps: 433_900, latencyMs: 30, jitterMs: 10, lossRate: 0.005 },
    services: ['display', 'speaker', 'ir'],
    sources: [
      'Palm OS 5 dynamic heap 256 KiB-1 MiB on Tungsten-class devices (Palm OS Programmer\'s Companion)',
      'NOR flash (Intel StrataFlash 28F128J3 datasheet): 128 KiB erase blocks, 100,000 cycles; write block = half a block',
      'Bluetooth 1.1 ACL DM5 symmetric 433.9 kbit/s (Bluetooth Core Spec 1.1, Baseband)',
    ],
  },
];
