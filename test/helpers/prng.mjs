// Deterministic xorshift32 stream from a seed: the same workload on every run. Plain JavaScript
// so crash-test children share it without a TypeScript loader.
export function xorshift(seed) {
  let x = (seed * 2654435761 + 0x9e3779b9) >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 2 ** 32;
  };
}
