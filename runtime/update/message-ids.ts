/**
 * Stable journal MESSAGE_IDs of the update outcomes (logs/journal.ts): an operator's alert or
 * `journalctl MESSAGE_ID=…` keeps working across releases. Never change one; add new ones with
 * `systemd-id128 new`. Documented in docs/architecture.md.
 */
export const updateMessageIds = {
  /** An update began (a check, an apply, a bundle). */
  started: 'cbe4b707a38e41718f592c2f624e6d48',
  /** A release passed its trial and is the running system. */
  committed: 'e5ffad0316434fd28472dd494ff6c3e7',
  /** A release was rolled back (failed trial, fallback, or on request). */
  rolledBack: '670ab36464f3488bb8d62fe06a5b3725',
  /** An update ended before its deploy (an error, a refusal, a cancel): the system is unchanged. */
  failed: 'c8a49a62d2564686b4bce2dbe3d22348',
} as const;
