/**
 * The link's observable connection status and its listeners, kept apart from the MQTT logic so
 * the API and health domains can depend on the shape without knowing about mqtt.js.
 */

/** Where the link is. `offline` covers both "waiting to retry" and "never connected yet". */
export type LinkState = 'connecting' | 'connected' | 'offline' | 'stopped';

/** A snapshot of the link's status; a new frozen object on every change. */
export interface LinkStatus {
  readonly state: LinkState;
  /** When `state` was entered (ISO 8601). */
  readonly since: string;
  /**
   * Why the last connection attempt failed or the last connection ended. Kept after a successful
   * reconnect on purpose: "connected, last dropped because X" is what an operator wants to see.
   */
  readonly lastError?: string;
  /** Successful connects since start. */
  readonly connects: number;
}

/** Called on every status change. */
export type LinkStatusListener = (status: LinkStatus) => void;

/** Holds the current status and notifies listeners; a listener that throws cannot break the link. */
export class StatusBox {
  #status: LinkStatus;
  readonly #listeners = new Set<LinkStatusListener>();
  readonly #now: () => Date;
  readonly #onListenerError: (err: unknown) => void;

  constructor(now: () => Date, onListenerError: (err: unknown) => void) {
    this.#now = now;
    this.#onListenerError = onListenerError;
    this.#status = Object.freeze({ state: 'offline', since: now().toISOString(), connects: 0 });
  }

  /** The current snapshot. */
  get current(): LinkStatus {
    return this.#status;
  }

  /** Applies a change; `since` moves only when the state itself changes. */
  update(change: { state?: LinkState; lastError?: string; connected?: boolean }): void {
    const prev = this.#status;
    const state = change.state ?? prev.state;
    const lastError = change.lastError ?? prev.lastError;
    const next: LinkStatus = Object.freeze({
      state,
      since: state === prev.state ? prev.since : this.#now().toISOString(),
      ...(lastError === undefined ? {} : { lastError }),
      connects: prev.connects + (change.connected === true ? 1 : 0),
    });
    if (next.state === prev.state && next.lastError === prev.lastError && next.connects === prev.connects) return;
    this.#status = next;
    for (const listener of [...this.#listeners]) {
      try {
        listener(next);
      } catch (err) {
        this.#onListenerError(err);
      }
    }
  }

  /** Registers a listener; returns the function that removes it. */
  subscribe(listener: LinkStatusListener): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }
}
