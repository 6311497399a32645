"""Code shared by two or more services: settings, Kafka clients, Avro serde, logging, metrics, health."""
