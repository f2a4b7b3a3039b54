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
  /** Rewrites one status line, when stderr is a terminal. */
  progress?: (text: string) => void;
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

/** The program's overview, listing every command, or those of one group (`outpost update`). */
export function programHelp(program: Program, group?: string): string {
  const commands = group === undefined ? program.commands : program.commands.filter((c) => c.name.startsWith(`${group} `));
  const width = Math.max(...commands.map((c) => c.name.length)) + 2;
  const name = group === undefined ? program.name : `${program.name} ${group}`;
  return [
    `Usage: ${name} <command> [options]`,
    '',
    group === undefined ? program.summary : `${program.name} ${group} commands:`,
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    '',
    `Run '${program.name} <command> --help' for a command's options.`,
  ].join('\n');
}

/** The group the leading words of argv name (`update` of `update frobnicate`), if any command is in it. */
function groupOf(program: Program, argv: string[]): string | undefined {
  const group = argv[0];
  return group !== undefined && program.commands.some((c) => c.name.startsWith(`${group} `)) ? group : undefined;
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
export async function runProgram(program: Program, argv: string[], io: Pick<CommandContext, 'env' | 'out' | 'err' | 'progress'>): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    (argv.length === 0 ? io.err : io.out)(programHelp(program));
    return argv.length === 0 ? 64 : 0;
  }
  if (argv[0] === '--version') return runProgram(program, ['version', ...argv.slice(1)], io);
  const found = findCommand(program, argv);
  const group = groupOf(program, argv);
  const helpAsked = argv.length === 2 && (argv[1] === '--help' || argv[1] === '-h');
  if (!found && group !== undefined && (argv.length === 1 || helpAsked)) {
    io.out(programHelp(program, group));
    return 0;
  }
  if (!found) {
    io.err(`${program.name}: unknown command '${argv.join(' ')}'\n\n${programHelp(program, group)}`);
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
      // A program asked for JSON gets its failure as JSON too, not an empty stdout.
      if (parsed.values.json === true) io.out(JSON.stringify({ error: { code: err.code, message: err.message, exitCode: err.exitCode } }));
      return err.exitCode;
    }
    io.err(`${program.name} ${command.name}: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return 70;
  }
}

/** `program` with the common `version` command (also reached as `--version`). */
export function withVersion(program: Program, version: string): Program {
  const versionCommand: Command = {
    name: 'version',
    summary: `print the ${program.name} version (also --version)`,
    run: async ({ out }) => {
      out(version);
      return 0;
    },
  };
  return { ...program, commands: [...program.commands, versionCommand] };
}

/**
 * Runs a program as the process: argv, environment and stdio of this process; adds the common
 * `version` command; exits with the command's status.
 */
export async function runMain(program: Program, version: string): Promise<never> {
  const code = await runProgram(withVersion(program, version), process.argv.slice(2), {
    env: process.env,
    out: (text) => process.stdout.write(`${text}\n`),
    err: (text) => process.stderr.write(`${text}\n`),
    ...(process.stderr.isTTY ? { progress: (text: string) => void process.stderr.write(`\r\x1b[K${text}`) } : {}),
  });
  process.exit(code);
}
