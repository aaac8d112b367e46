/**
 * What the runtime tells a watcher of its mailboxes (the ops endpoint's metrics): an optional
 * object given as `AgentOptions.observer`. Without one, every report is an optional call on
 * `undefined` that evaluates none of its arguments, so an agent with no endpoint pays nothing.
 * Each method is called on the agent's thread in the middle of a flush: it must be quick and
 * must not throw (nothing catches it there): keep it to counting.
 */
export interface RunnerObserver {
  /**
   * A call of a handler has run (a mailbox request, `ferry call`, a timer tick, a service reply):
   * `ok` or `error` by its outcome, `repeat` for a request id applied before (nothing ran, the
   * recorded outcome or APP_ALREADY_APPLIED stands in).
   */
  called(instance: string, outcome: 'ok' | 'error' | 'repeat'): void;
  /** A mailbox message ran nothing: too large, malformed, expired or a bad request (acknowledged). */
  dropped(instance: string): void;
  /** A group commit of `calls` calls (hooks included) took `seconds` (the checkpoint, synced when durability is `full`). */
  committed(instance: string, calls: number, seconds: number): void;
}
