"""The kopf operator that reconciles WorkerPools into versioned Deployments (`durabletask-operator`)."""
