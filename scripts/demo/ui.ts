/** Console output for the demo: numbered steps a newcomer can follow. */
let step = 0;

/** Prints a step heading. */
export function heading(text: string): void {
  step += 1;
  process.stdout.write(`\n\x1b[1m== ${step}. ${text}\x1b[0m\n`);
}

/** Prints an indented block (command output, documents). */
export function show(text: string): void {
  process.stdout.write(`${text.trimEnd().split('\n').map((l) => `   ${l}`).join('\n')}\n`);
}

/** Polls `fn` until it returns a value, or fails after `timeoutMs` naming `what`. */
export async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`demo: timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
