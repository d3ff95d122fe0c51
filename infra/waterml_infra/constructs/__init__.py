"""Reusable parts of the stacks, each with its own props: roles, rollout, alarms, monitoring."""
