"""The Durable Task hub server: gRPC service, dispatcher, stores, metrics, CLI."""
