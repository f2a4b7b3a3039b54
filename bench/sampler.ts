/**
 * Samples a process's RssAnon (and, separately, the sum over its descendants: the ostree children
 * outpost runs) every `intervalMs` from /proc, attributing each sample to the phase the caller
 * says is running. Peaks are per phase; a process that is gone reads as 0.
 */
import { readFileSync } from 'node:fs';

/** Peak figures of one phase. */
export interface PhasePeak {
  phase: string;
  samples: number;
  peakRssAnonKiB: number;
  /** Sum of RssAnon over the process's descendants at the sample where that sum peaked. */
  peakChildrenRssAnonKiB: number;
}

function rssAnonKiB(pid: number): number {
  try {
    return Number(/^RssAnon:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function descendants(pid: number): number[] {
  const out: number[] = [];
  const queue = childrenOf(pid);
  while (queue.length > 0) {
    const next = queue.shift() as number;
    out.push(next);
    queue.push(...childrenOf(next));
  }
  return out;
}

/** A running sampler. */
export interface MemorySampler {
  /** Stops sampling; returns the peaks in the order phases were first seen. */
  stop(): PhasePeak[];
}

/** Starts sampling `pid`; `phase()` names the phase each sample belongs to. */
export function sampleMemory(pid: number, phase: () => string, intervalMs = 100): MemorySampler {
  const peaks = new Map<string, PhasePeak>();
  const sample = (): void => {
    const name = phase();
    const self = rssAnonKiB(pid);
    const children = descendants(pid).reduce((sum, child) => sum + rssAnonKiB(child), 0);
    const peak = peaks.get(name) ?? { phase: name, samples: 0, peakRssAnonKiB: 0, peakChildrenRssAnonKiB: 0 };
    peak.samples += 1;
    peak.peakRssAnonKiB = Math.max(peak.peakRssAnonKiB, self);
    peak.peakChildrenRssAnonKiB = Math.max(peak.peakChildrenRssAnonKiB, children);
    peaks.set(name, peak);
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      return [...peaks.values()];
    },
  };
}
