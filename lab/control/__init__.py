"""The lab's control API (/_lab/...), kept apart from the emulated Google APIs."""
