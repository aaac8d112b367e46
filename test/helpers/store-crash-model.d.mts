export declare const CRASH_APP: { id: string; lineSize: number; maxLines: number };
export declare function checkpointPlan(version: number): { writes: number[]; deletes: number[] };
export declare function lineContent(version: number, line: number): Uint8Array;
export declare function stateFor(version: number): Uint8Array;
export declare function expectedVersions(upTo: number): Map<number, Map<number, number>>;
