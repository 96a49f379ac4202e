"""Runs a user's orchestrators as one member of a versioned worker pool (`durabletask-worker`)."""
