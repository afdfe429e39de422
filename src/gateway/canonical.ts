/**
 * One shared instance per distinct value, for what thousands of clients receive identically (a resource's id,
 * network and filter list arrive anew in each client's authorization). Only an economy: a value that is not
 * found is simply kept as given. Bounded: it forgets everything once it holds `capacity` values, which costs
 * nothing but the sharing.
 */
export class Canonical<V> {
  private readonly values = new Map<string, V>();

  constructor(private readonly capacity: number) {}

  /** The shared instance of the value `key` names, `value` itself the first time. */
  of(key: string, value: V): V {
    const known = this.values.get(key);
    if (known !== undefined) return known;
    if (this.values.size >= this.capacity) this.values.clear();
    this.values.set(key, value);
    return value;
  }
}
