/**
 * A tiny command framework over node:util parseArgs: a registry of commands (STYLE 4), `--help`
 * on every command, usage errors exit 64, OutpostErrors exit with their sysexits code.
 */
import { parseArgs } from 'node:util';
import { isOutpostError } from '../errors.js';

/** One option of a command. */
export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  description: string;
  /** Shown in help as the placeholder for a string option's value. */
  valueName?: string;
  /** May be given more than once; the value is then a string[] (string options only). */
  multiple?: boolean;
}

/** What a command's run() gets. */
export interface CommandContext {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  env: NodeJS.ProcessEnv;
  out: (text: string) => void;
  err: (text: string) => void;
}

/** One subcommand, e.g. `outpost config validate`. */
export interface Command {
  /** Space-separated words after the program name. */
  name: string;
  summary: string;
  /** Positional argument synopsis, e.g. "PATH". */
  args?: string;
  positionals?: { min: number; max: number };
  options?: Record<string, OptionSpec>;
  /** Extra help text after the options. */
  details?: string;
  run(ctx: CommandContext): Promise<number>;
}

/** A program: a name, a one-line summary, and its commands. */
export interface Program {
  name: string;
  summary: string;
  commands: readonly Command[];
}

const helpOption: OptionSpec = { type: 'boolean', short: 'h', description: 'show this help' };

function commandHelp(program: Program, command: Command): string {
  const options = { ...command.options, help: helpOption };
  const rows = Object.entries(options).map(([name, spec]) => {
    const flag = `${spec.short ? `-${spec.short}, ` : '    '}--${name}${spec.type === 'string' ? ` ${spec.valueName ?? 'VALUE'}` : ''}`;
    return `  ${flag.padEnd(28)} ${spec.description}${spec.multiple ? ' (repeatable)' : ''}`;
  });
  const synopsis = [program.name, command.name, Object.keys(command.options ?? {}).length > 0 ? '[options]' : '', command.args ?? ''].filter(Boolean).join(' ');
  return [`Usage: ${synopsis}`, '', command.summary, '', 'Options:', ...rows, ...(command.details ? ['', command.details] : [])].join('\n');
}

/** The program's overview, listing every command. */
export function programHelp(program: Program): string {
  const width = Math.max(...program.commands.map((c) => c.name.length)) + 2;
  return [
    `Usage: ${program.name} <command> [options]`,
    '',
    program.summary,
    '',
    'Commands:',
    ...program.commands.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    '',
    `Run '${program.name} <command> --help' for a command's options.`,
  ].join('\n');
}

/** Finds the command whose name is the longest match of the leading words of argv. */
function findCommand(program: Program, argv: string[]): { command: Command; rest: string[] } | undefined {
  const matches = program.commands
    .filter((c) => {
      const words = c.name.split(' ');
      return words.every((w, i) => argv[i] === w);
    })
    .sort((a, b) => b.name.length - a.name.length);
  const command = matches[0];
  return command ? { command, rest: argv.slice(command.name.split(' ').length) } : undefined;
}

/** Parses argv, runs the chosen command, and returns the process exit code. */
export async function runProgram(program: Program, argv: string[], io: Pick<CommandContext, 'env' | 'out' | 'err'>): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    (argv.length === 0 ? io.err : io.out)(programHelp(program));
    return argv.length === 0 ? 64 : 0;
  }
  const found = findCommand(program, argv);
  if (!found) {
    io.err(`${program.name}: unknown command '${argv.join(' ')}'\n\n${programHelp(program)}`);
    return 64;
  }
  const { command, rest } = found;
  let parsed: { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] };
  try {
    const options = Object.fromEntries(
      Object.entries({ ...command.options, help: helpOption }).map(([name, spec]) => [name, { type: spec.type, ...(spec.short ? { short: spec.short } : {}), ...(spec.multiple ? { multiple: true } : {}) }]),
    );
    parsed = parseArgs({ args: rest, options, allowPositionals: true, strict: true }) as typeof parsed;
  } catch (err) {
    io.err(`${program.name} ${command.name}: ${(err as Error).message}\n\n${commandHelp(program, command)}`);
    return 64;
  }
  if (parsed.values.help === true) {
    io.out(commandHelp(program, command));
    return 0;
  }
  const { min, max } = command.positionals ?? { min: 0, max: 0 };
  if (parsed.positionals.length < min || parsed.positionals.length > max) {
    io.err(`${program.name} ${command.name}: expected ${min === max ? min : `${min} to ${max}`} argument(s) (${command.args ?? 'none'}), got ${parsed.positionals.length}\n\n${commandHelp(program, command)}`);
    return 64;
  }
  try {
    return await command.run({ ...io, values: parsed.values, positionals: parsed.positionals });
  } catch (err) {
    if (isOutpostError(err)) {
      io.err(err.message);
      return err.exitCode;
    }
    io.err(`${program.name} ${command.name}: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return 70;
  }
}

/**
 * Runs a program as the process: argv, environment and stdio of this process; adds the common
 * `version` command; exits with the command's status.
 */
export async function runMain(program: Program, version: string): Promise<never> {
  const versionCommand: Command = {
    name: 'version',
    summary: `print the ${program.name} version`,
    run: async ({ out }) => {
      out(version);
      return 0;
    },
  };
  const code = await runProgram({ ...program, commands: [...program.commands, versionCommand] }, process.argv.slice(2), {
    env: process.env,
    out: (text) => process.stdout.write(`${text}\n`),
    err: (text) => process.stderr.write(`${text}\n`),
  });
  process.exit(code);
}
