export declare const HEAP_CRASH_APP: string;
export declare const HEAP_CRASH_OPTIONS: { budgetBytes: number; maxObjectBytes: number };
export declare function mutate(root: Record<string, unknown>, version: number): 'full' | 'sparse' | null;
export declare function canonical(plain: unknown): string;
export declare function digest(plain: unknown): string;
