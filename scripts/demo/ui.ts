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
