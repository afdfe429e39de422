/**
 * Local candidates waiting to be signalled to the portal, per connection. Collected between two
 * drains so the portal gets one sorted, de-duplicated batch per connection, as the reference sends.
 */
export interface CandidateBatch {
  readonly connection: string;
  readonly candidates: readonly string[];
}

export class CandidateSignals {
  private readonly pending = new Map<string, Set<string>>();

  add(connection: string, candidate: string): void {
    let set = this.pending.get(connection);
    if (set === undefined) this.pending.set(connection, (set = new Set()));
    set.add(candidate);
  }

  forget(connection: string): void {
    this.pending.delete(connection);
  }

  take(): CandidateBatch | undefined {
    if (this.pending.size === 0) return undefined;
    const first = this.pending.entries().next();
    if (first.done) return undefined;
    const [connection, set] = first.value;
    this.pending.delete(connection);
    return { connection, candidates: [...set].sort() };
  }
}
