/**
 * A handler whose code loads on its first run. Its args schema and time limit are given at once,
 * since every command of its type is verified against them; the rest (the run body and what only
 * it imports) stays out of the daemon's memory until an operator first sends that type, which
 * most devices never do.
 */
import type { CommandHandler } from '../service.js';

/** What is checked before a command runs, so it cannot wait for the load. */
export type HandlerSpec<A> = Pick<CommandHandler<A>, 'args' | 'timeoutMs'>;

export function lazyHandler<A>(spec: HandlerSpec<A>, load: () => Promise<CommandHandler<A>>): CommandHandler<A> {
  let loading: Promise<CommandHandler<A>> | undefined;
  return {
    ...spec,
    async run(args, context) {
      // A failed load (a module file unreadable for a moment) is tried again by the next command.
      loading ??= load().catch((err: unknown) => {
        loading = undefined;
        throw err;
      });
      return (await loading).run(args, context);
    },
  };
}
