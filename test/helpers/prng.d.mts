/** Deterministic stream of numbers in [0, 1) from a seed. */
export declare function xorshift(seed: number): () => number;
